"""Directory tasks against a plain Python loop and against luigi with one task per file.

The work per item: read a 32×32 RGB PNG, convert it to grayscale (scikit-image), save it as
``.npy``. Every case reads the PNGs with the same function, luisy's reader for ``.png`` (Pillow
directly, for images scikit-image would return unconverted), so the cases differ only in how the
work is organised. For each N the script prints one table row per case; each case runs in a fresh
process, and its time and peak RSS (that process and its children) are measured there.

Cases:

* ``plain loop``: the same work in a ``for`` loop, each file written atomically (temp + rename);
  the floor every other case is compared with,
* ``luisy p=1`` / ``luisy p=2``: a ``DirectoryTask`` through ``luisy.build`` with 1 / 2 item
  processes (scheduler, manifest and checksums included),
* ``luigi 1 task/file``: one luigi task per file, as a user without luisy would write it
  (only for N ≤ ``--luigi-max``; luigi slows down quadratically),
* ``no-op rerun, 3 stages``: ``luisy.build`` of a 3-stage pipeline (gray → normalised → stats)
  that is already complete,
* ``+10 files, 3 stages``: the same after adding 10 images,
* ``list + stat (floor)``: ``os.scandir`` of the input folder and ``stat`` of every file
  (relative to the folder's descriptor) in a plain loop, keeping each size and modification
  time: what any tool that notices edited files by size and modification time pays
  before it can say "nothing to do"; the floor of the two rows above,
* ``plan, nothing to do`` / ``status``: ``luisy plan`` and ``luisy status`` of the complete
  pipeline (their Python functions, as the commands call them),
* ``… write-once``: the no-op, plan and status with ``input_fingerprint = "write-once"`` on the
  input folder, which is listed again only when its modification time changed,
* ``CPU-bound``: items that each spend a few ms computing, done by a plain loop, a bare
  ``multiprocessing.Pool(2)`` (what two processes can gain on this machine at best), and luisy
  with 1 and 2 item processes.

File-system noise on shared machines only ever adds time, so the file-bound cases (plain loop,
luisy, no-op, +10) run ``--repeat`` times for N ≤ 10 000 and the fastest run is reported, as
``timeit`` does; each case starts after an ``os.sync()``.

Usage: ``python benchmarks/directory.py [--sizes 1000 3000 10000 100000] [--luigi-max 3000]
[--pngs FOLDER] [--skip-p2]``. ``--pngs`` takes the first N images from a folder made before
(``img_000000.png``...; hard links, so a million images are made once for several runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import luigi
import numpy as np

import luisy
from luisy.cachefiles import RACY_SECONDS

HERE = Path(__file__).resolve().parent


# --- the pipeline ---------------------------------------------------------------------------------

@luisy.project_name("bench")
@luisy.raw
@luisy.directory_input(pattern="*.png")
class Pngs(luisy.ExternalTask):
    def get_folder_name(self) -> str:
        return "pngs"


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    return luisy.formats.for_path(path).read(path)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    return rgb2gray(rgb[..., :3]).astype(np.float32)


@luisy.project_name("bench")
@luisy.interim
@luisy.requires(Pngs)
@luisy.directory_output(format="npy")
class Gray(luisy.DirectoryTask):
    def process(self, name: str, obj: Any) -> np.ndarray:
        return to_gray(obj)


@luisy.project_name("bench")
@luisy.interim
@luisy.requires(Gray)
@luisy.directory_output(format="npy")
class Normalised(luisy.DirectoryTask):
    def process(self, name: str, obj: Any) -> np.ndarray:
        return (obj - obj.mean()) / (obj.std() + 1e-9)


@luisy.project_name("bench")
@luisy.final
@luisy.requires(Normalised)
@luisy.directory_output(format="json")
class Stats(luisy.DirectoryTask):
    def process(self, name: str, obj: Any) -> dict:
        return {"min": float(obj.min()), "max": float(obj.max())}


@luisy.project_name("bench")
@luisy.interim
@luisy.requires(Pngs)
@luisy.directory_output(format="npy")
class Busy(luisy.DirectoryTask):
    """A CPU-bound item: a few ms of filtering."""

    def process(self, name: str, obj: Any) -> np.ndarray:
        from skimage.filters import gaussian

        gray = to_gray(obj)
        for _ in range(80):  # as busy_work()
            gray = gaussian(gray, sigma=1.0)
        return gray


class OnePng(luigi.ExternalTask):
    path = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(self.path)


class OneGray(luigi.Task):
    path = luigi.Parameter()
    out = luigi.Parameter()

    def requires(self) -> OnePng:
        return OnePng(self.path)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(self.out, Path(self.path).stem + ".npy"))

    def run(self) -> None:
        with self.output().temporary_path() as tmp:
            with open(tmp, "wb") as f:
                np.save(f, to_gray(read_png(self.path)))


class AllGray(luigi.WrapperTask):
    folder = luigi.Parameter()
    out = luigi.Parameter()

    def requires(self) -> list[OneGray]:
        return [OneGray(str(p), self.out) for p in sorted(Path(self.folder).glob("*.png"))]


# --- the cases, each run in a fresh process ------------------------------------------------------

def busy_work(path: Path) -> np.ndarray:
    from skimage.filters import gaussian

    gray = to_gray(read_png(path))
    for _ in range(80):
        gray = gaussian(gray, sigma=1.0)
    return gray


def _busy_one(args: tuple[Path, Path]) -> None:
    path, out = args
    np.save(out / (path.stem + ".npy"), busy_work(path))


def busy_plain(folder: Path, out: Path, processes: int) -> None:
    """The CPU-bound work with a bare ``multiprocessing.Pool``: what 2 processes can gain here at best."""
    import multiprocessing

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(p, out) for p in sorted(folder.glob("*.png"))]
    if processes == 1:
        for job in jobs:
            _busy_one(job)
        return
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_busy_one, jobs, chunksize=64)


def plain_loop(folder: Path, out: Path) -> None:
    out.mkdir(parents=True)
    for path in sorted(folder.glob("*.png")):
        final = out / (path.stem + ".npy")
        tmp = out / f".{path.stem}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, to_gray(read_png(path)))
        os.replace(tmp, final)


def run_case(case: str, working_dir: str) -> None:
    import resource

    luisy.set_working_dir(working_dir)
    if case.endswith("-wo"):
        Pngs.input_fingerprint = "write-once"
    folder = Path(working_dir, "bench", "raw", "pngs")
    start = time.perf_counter()
    if case == "plain":
        plain_loop(folder, Path(working_dir, "plain"))
    elif case in ("p1", "p2"):
        assert luisy.build([Gray()], processes=int(case[1]), log_level="ERROR")
    elif case in ("busy1", "busy2"):
        assert luisy.build([Busy()], processes=int(case[-1]), log_level="ERROR")
    elif case in ("pool1", "pool2"):
        busy_plain(folder, Path(working_dir, f"busy-{case}"), int(case[-1]))
    elif case == "luigi":
        assert luigi.build([AllGray(str(folder), str(Path(working_dir, "luigi")))], local_scheduler=True,
                           log_level="ERROR")
    elif case in ("pipeline", "noop", "plus10", "noop-wo"):
        assert luisy.build([Stats()], log_level="ERROR")
    elif case in ("plan", "plan-wo"):
        from luisy.plan import report

        assert report(Stats())[0] == "nothing to run: Stats() is complete"
    elif case in ("status", "status-wo"):
        from luisy.status import status

        assert all(row.complete for row in status(Stats()))
    elif case == "liststat":
        names = sorted(entry.name for entry in os.scandir(folder))
        fd = os.open(folder, os.O_RDONLY)  # each file looked up from the folder: the fastest stat
        sizes_times = [(s.st_size, s.st_mtime_ns) for s in (os.stat(name, dir_fd=fd) for name in names)]
        os.close(fd)
        assert len(set(sizes_times)) > 0
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss}))


def in_fresh_process(case: str, working_dir: Path) -> dict[str, float]:
    os.sync()  # the previous case's dirty pages are written back now, not during this one
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import directory; directory.run_case({case!r}, " \
           f"{str(working_dir)!r})"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def best_of(repeat: int, run: Callable[[], dict[str, float]], before: Callable[[], None] = lambda: None,
            ) -> dict[str, float]:
    """The fastest of ``repeat`` runs (as ``timeit`` reports): file-system noise only ever adds time."""
    results = []
    for _ in range(repeat):
        before()
        results.append(run())
    return min(results, key=lambda result: result["seconds"])


def make_pngs(folder: Path, count: int, start: int = 0, seed: int = 0) -> None:
    from skimage.io import imsave

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + start)
    for i in range(start, start + count):
        imsave(folder / f"img_{i:06d}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), check_contrast=False)


def link_pngs(source: Path, folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.link(source / f"img_{i:06d}.png", folder / f"img_{i:06d}.png")


def bench_size(n: int, luigi_max: int, busy_max: int, repeat: int, root: Path, pngs_from: Path | None = None,
               skip_p2: bool = False, reuse: Path | None = None) -> list[tuple[str, dict[str, float]]]:
    wd = reuse or root / f"n{n}"
    pngs = wd / "bench" / "raw" / "pngs"
    rows: list[tuple[str, dict[str, float]]] = []
    if reuse is None:
        if pngs_from is None:
            make_pngs(pngs, n)
        else:
            link_pngs(pngs_from, pngs, n)
        rows += first_runs(n, wd, luigi_max, repeat, skip_p2)
    in_fresh_process("pipeline", wd)  # build the 3 stages once (not timed)
    # Once more, not timed either: after writing millions of files the file system's caches are
    # cold, and the first rerun would measure that rather than luisy (the floor below runs warm).
    in_fresh_process("noop", wd)
    rows.append(("no-op rerun, 3 stages", best_of(repeat, lambda: in_fresh_process("noop", wd))))
    first_new = sum(1 for _ in os.scandir(pngs))  # a reused folder may have grown in earlier runs
    added = iter(range(first_new, first_new + 10 * repeat, 10))
    rows.append(("+10 files, 3 stages", best_of(repeat, lambda: in_fresh_process("plus10", wd),
                                                lambda: make_pngs(pngs, 10, start=next(added), seed=1))))
    rows.append(("list + stat (floor)", best_of(repeat, lambda: in_fresh_process("liststat", wd))))
    rows.append(("plan, nothing to do", best_of(repeat, lambda: in_fresh_process("plan", wd))))
    rows.append(("status", best_of(repeat, lambda: in_fresh_process("status", wd))))
    # The first run in write-once mode lists the folder and remembers it, once its last change is
    # older than the racy window (the +10 case added files moments ago at small N).
    time.sleep(max(0.0, RACY_SECONDS + 0.1 - (time.time() - pngs.stat().st_mtime)))
    in_fresh_process("noop-wo", wd)
    rows.append(("no-op rerun, write-once", best_of(repeat, lambda: in_fresh_process("noop-wo", wd))))
    rows.append(("plan, write-once", best_of(repeat, lambda: in_fresh_process("plan-wo", wd))))
    rows.append(("status, write-once", best_of(repeat, lambda: in_fresh_process("status-wo", wd))))
    if n <= busy_max and reuse is None:
        for case, label in (("pool1", "CPU-bound plain loop"), ("pool2", "CPU-bound plain Pool(2)"),
                            ("busy1", "CPU-bound luisy p=1"), ("busy2", "CPU-bound luisy p=2")):
            shutil.rmtree(wd / "bench" / "interim" / "Busy", ignore_errors=True)
            rows.append((label, in_fresh_process(case, wd)))
    if reuse is None:
        shutil.rmtree(wd)
    return rows


def first_runs(n: int, wd: Path, luigi_max: int, repeat: int, skip_p2: bool) -> list[tuple[str, dict[str, float]]]:
    """The plain loop, luisy and luigi making the first stage from scratch."""
    def clear(*parts: str) -> Callable[[], None]:
        return lambda: shutil.rmtree(wd.joinpath(*parts), ignore_errors=True)

    rows = [("plain loop (floor)", best_of(repeat, lambda: in_fresh_process("plain", wd), clear("plain")))]
    for case, label in (("p1", "luisy p=1"), ("p2", "luisy p=2"))[:1 if skip_p2 else 2]:
        rows.append((label, best_of(repeat, lambda case=case: in_fresh_process(case, wd), clear("bench", "interim"))))
    if n <= luigi_max:
        rows.append(("luigi 1 task/file", in_fresh_process("luigi", wd)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 100000])
    parser.add_argument("--luigi-max", type=int, default=3000, help="largest N for the luigi baseline")
    parser.add_argument("--busy-max", type=int, default=3000, help="largest N for the CPU-bound cases")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per file-bound case, fastest reported (N ≤ 10 000; larger N run once)")
    parser.add_argument("--tmp", help="folder for the data (default: a temporary folder)")
    parser.add_argument("--pngs", type=Path, help="take the images from this folder (made before)")
    parser.add_argument("--skip-p2", action="store_true", help="leave out luisy p=2 (saves time at large N)")
    parser.add_argument("--reuse", type=Path, help="a working directory this script made before (kept with "
                        "--tmp), with its images in bench/raw/pngs: only the rerun rows, and it is kept")
    args = parser.parse_args()
    if args.reuse is not None and len(args.sizes) != 1:
        parser.error("--reuse measures one size: give it as --sizes N")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        print(f"{'N':>7} {'case':<24} {'seconds':>9} {'× floor':>8} {'peak RSS MB':>12}")
        for n in args.sizes:
            rows = bench_size(n, args.luigi_max, args.busy_max, args.repeat if n <= 10_000 else 1, Path(tmp),
                              args.pngs, args.skip_p2, args.reuse)
            seconds = dict((label, result["seconds"]) for label, result in rows)
            for label, result in rows:
                print(f"{n:>7} {label:<24} {result['seconds']:>9.3f} {_ratio(label, seconds)} "
                      f"{result['rss_mb']:>12.0f}", flush=True)


def _ratio(label: str, seconds: dict[str, float]) -> str:
    """Against the plain loop for a first run, against listing the inputs for a rerun, plan and status."""
    if "CPU" in label or "floor" in label:
        return f"{'':>8}"
    rerun = any(word in label for word in ("rerun", "+10", "plan", "status"))
    floor = seconds["list + stat (floor)"] if rerun else seconds["plain loop (floor)"]
    return f"{seconds[label] / floor:8.2f}"

if __name__ == "__main__":
    main()
