"""Write sample raw images: PNGs of bright blobs on a noisy background.

Usage: ``python -m examples.images.make_data [--working-dir DIR] [--count N] [--start I] [--every S]``
(default: the luisy working directory, ``./data``; 40 images, ``img_0000.png`` on, all at once).
``--every S`` writes one image every S seconds, as an instrument does: try it while
``luisy watch examples.images.tasks:Everything`` runs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import luisy
from examples.images.tasks import RawImages
from luisy import storage, urls


def make_images(folder: Path, count: int = 40, size: int = 64, seed: int = 0, start: int = 0,
                every: float = 0.0) -> list[Path]:
    """Write ``count`` RGB PNGs of ``size``×``size`` pixels into ``folder`` (a local folder, or one
    in an object store), numbered from ``start``, one every ``every`` seconds; return their paths."""
    import imageio.v3 as iio  # scikit-image's own image I/O

    store = storage.for_path(folder)
    rng = np.random.default_rng(seed)
    store.make_folder(os.fspath(folder))
    yy, xx = np.mgrid[:size, :size]
    written = []
    for i in range(start, start + count):
        if every and i > start:
            time.sleep(every)
        image = rng.normal(0.15, 0.05, (size, size))
        for _ in range(rng.integers(1, 6)):
            cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 8)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += 0.6
        rgb = np.clip(np.stack([image, image * 0.9, image * 0.8], axis=-1), 0, 1)
        path = folder / f"img_{i:04d}.png"
        store.save(os.fspath(path), (rgb * 255).astype(np.uint8),
                   lambda pixels, tmp: iio.imwrite(tmp, pixels, extension=".png"))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--working-dir", help="luisy working directory (default ./data)")
    parser.add_argument("--count", type=int, default=40, help="number of images")
    parser.add_argument("--start", type=int, default=0, help="number of the first image")
    parser.add_argument("--every", type=float, default=0.0, help="seconds between images")
    args = parser.parse_args()
    if args.working_dir:
        luisy.set_working_dir(args.working_dir)
    folder = Path(RawImages().output().path)
    written = make_images(folder, args.count, start=args.start, every=args.every)
    print(f"wrote {len(written)} images to {urls.shown(os.fspath(folder))}")


if __name__ == "__main__":
    main()
