"""What fingerprinting inputs by content costs: hash throughput, and a folder by stat vs by content.

Throughput: one file of ``--mb`` MiB, read once before measuring so it is in the page cache (the
numbers are the hash's speed, not the disk's): a plain read in 1 MiB blocks (the baseline),
luisy's BLAKE2b checksum (:func:`luisy.digests.file_digest`), and hashlib's SHA-256 and MD5 for
reference.

Folder: ``--files`` files of ``--kb`` KiB listed as a directory task's input items, fingerprinted
by size and mtime (the default), by content with nothing cached (the first run), and by content
with the (size, mtime, inode) cache filled (every later run).
Usage: ``python benchmarks/content.py [--mb 512] [--files 2000] [--kb 64]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from luisy import cachefiles, config  # noqa: E402
from luisy.digests import file_digest  # noqa: E402
from luisy.directory.inputs import list_files, source_items  # noqa: E402
from luisy.fingerprint import content  # noqa: E402


def _plain_read(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def _hashlib(name: str):
    def run(path: Path) -> None:
        h = hashlib.new(name)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)

    return run


def _best(func, *args, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(root: Path, mb: int) -> None:
    path = root / "big.bin"
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    _plain_read(path)
    print(f"hash throughput, {mb} MiB file in the page cache (best of 3):")
    print(f"  {'way':<28} {'MB/s':>8} {'vs plain read':>14}")
    base = _best(_plain_read, path)
    for name, func in [("plain read (baseline)", _plain_read), ("BLAKE2b (luisy)", file_digest),
                       ("SHA-256", _hashlib("sha256")), ("MD5", _hashlib("md5"))]:
        seconds = base if func is _plain_read else _best(func, path)
        print(f"  {name:<28} {mb * 1.048576 / seconds:>8.0f} {seconds / base:>13.1f}×")


def folder(root: Path, files: int, kb: int) -> None:
    data = root / "working" / "raw"
    data.mkdir(parents=True)
    old = time.time() - 3600
    for i in range(files):
        path = data / f"f{i:06d}.bin"
        path.write_bytes(os.urandom(kb << 10))
        os.utime(path, (old, old))
    listed = list_files(str(data))

    def by_stat() -> None:
        source_items(str(data), listed, str)

    def by_content() -> None:
        source_items(str(data), listed, str, by_content=lambda f: content.digests(str(data), f, "*"))

    def cold() -> None:
        shutil.rmtree(root / "working" / cachefiles.CACHE_DIR, ignore_errors=True)
        by_content()

    run = config.Run.resolve(working_dir=root / "working", new_id=True)  # a run writes the cache
    with config.running(run):
        stat_s = _best(by_stat)
        cold_s = _best(cold)
        by_content()
        warm_s = _best(by_content)
    print(f"\n{files} input files of {kb} KiB (best of 3):")
    print(f"  {'fingerprint':<34} {'ms':>9} {'µs/file':>9} {'vs stat':>9}")
    for name, seconds in [("size + mtime (default)", stat_s), ("content, first run (hash all)", cold_s),
                          ("content, cached (unchanged files)", warm_s)]:
        print(f"  {name:<34} {1e3 * seconds:>9.1f} {1e6 * seconds / files:>9.1f} {seconds / stat_s:>8.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="luisy-content-"))
    try:
        throughput(root, args.mb)
        folder(root, args.files, args.kb)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
