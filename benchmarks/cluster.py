"""Directory-task items on a local Dask cluster against local item processes and a plain loop.

The cluster is what a user already runs: a ``dask scheduler`` and two ``dask worker`` processes
with one thread each (``--nthreads 1``), started on free loopback ports before each timed run and
not timed; what is timed includes the workers' first imports (scikit-image, luisy, the task's
module), as a local run's item processes import them too. Every case runs in a fresh process
(``luisy.build`` of one directory task); the fastest of ``--repeat`` runs is shown.

Cases:

* ``CPU-bound``: ``Busy`` from ``benchmarks/directory.py`` (a few ms of filtering per 32×32 PNG),
  3 000 items by default: a plain loop and a bare ``multiprocessing.Pool(2)`` (the floor and what
  two processes can gain here at best), luisy with ``processes=1`` and ``=2``, and luisy on the
  Dask cluster.
* ``trivial``: items that cost next to nothing (a short text in, a small JSON out), 10 000 by
  default: a plain loop writing the same files atomically, luisy with ``processes=2``, and luisy
  on the Dask cluster — the executor's own overhead.

Usage: ``python benchmarks/cluster.py [--busy 3000] [--trivial 10000] [--repeat 3]``.

(Not named ``dask.py``: the workers import the task modules from this folder, where a ``dask``
module would hide the real one.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import luisy

HERE = Path(__file__).resolve().parent


@luisy.project_name("bench")
@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Notes(luisy.ExternalTask):
    def get_folder_name(self) -> str:
        return "notes"


@luisy.project_name("bench")
@luisy.interim
@luisy.requires(Notes)
@luisy.directory_output(format="json")
class Trivial(luisy.DirectoryTask):
    """An item that costs next to nothing."""

    def process(self, name: str, obj: Any) -> dict:
        return {"name": name, "length": len(obj)}


def trivial_plain(folder: Path, out: Path) -> None:
    """The trivial items in a ``for`` loop, each file written atomically (temp + rename)."""
    out.mkdir(parents=True)
    for path in sorted(folder.glob("*.txt")):
        tmp = out / f".{path.stem}.tmp"
        tmp.write_text(json.dumps({"name": path.stem, "length": len(path.read_text())}))
        os.replace(tmp, out / f"{path.stem}.json")


def run_case(case: str, working_dir: str, dask_scheduler: str | None) -> None:
    """Run one case in this (fresh) process; print its time as JSON."""
    sys.path.insert(0, str(HERE))
    import directory  # benchmarks/directory.py

    luisy.set_working_dir(working_dir)
    start = time.perf_counter()
    if case.startswith("pool"):
        directory.busy_plain(Path(working_dir, "bench", "raw", "pngs"), Path(working_dir, case), int(case[-1]))
    elif case == "plain":
        trivial_plain(Path(working_dir, "bench", "raw", "notes"), Path(working_dir, "plain"))
    else:
        task = directory.Busy() if case.startswith("busy") else Trivial()
        processes = int(case[-1]) if case[-1].isdigit() else None
        assert luisy.build([task], processes=processes, dask_scheduler=dask_scheduler, log_level="ERROR")
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dask_cluster(root: Path, workers: int = 2) -> Iterator[str]:
    """A scheduler and ``workers`` single-threaded workers on loopback; yields the address."""
    dask = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    log = root / "scheduler.log"
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))]
    processes += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                    "--no-dashboard", "--local-directory", str(root / "scratch")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("Register worker") < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the Dask cluster did not start; see {log}")
            time.sleep(0.1)
        yield address
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


def timed(case: str, working_dir: Path, dask: bool = False) -> float:
    """Seconds of one run of ``case`` in a fresh process (on a fresh Dask cluster if ``dask``)."""
    def child(address: str | None) -> float:
        os.sync()  # the previous case's dirty pages are written back now, not during this one
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import cluster; " \
               f"cluster.run_case({case!r}, {str(working_dir)!r}, {address!r})"
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["seconds"]

    if not dask:
        return child(None)
    with tempfile.TemporaryDirectory() as root, dask_cluster(Path(root)) as address:
        return child(address)


def best_of(repeat: int, run: Callable[[], float], before: Callable[[], None]) -> float:
    """The fastest of ``repeat`` runs (noise on a shared machine only ever adds time)."""
    times = []
    for _ in range(repeat):
        before()
        times.append(run())
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=3000, help="CPU-bound items")
    parser.add_argument("--trivial", type=int, default=10000, help="trivial items")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest is shown")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import directory

    rows: list[tuple[str, int, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        directory.make_pngs(wd / "bench" / "raw" / "pngs", args.busy)
        notes = wd / "bench" / "raw" / "notes"
        notes.mkdir(parents=True)
        for i in range(args.trivial):
            (notes / f"note_{i:06d}.txt").write_text(f"note {i}")

        def clear(*parts: str) -> Callable[[], None]:
            return lambda: shutil.rmtree(wd.joinpath(*parts), ignore_errors=True)

        for kind, n, cases in (
            ("CPU-bound", args.busy, [("pool1", "plain loop (floor)", False), ("pool2", "plain Pool(2)", False),
                                      ("busy1", "luisy processes=1", False), ("busy2", "luisy processes=2", False),
                                      ("busy-dask", "luisy Dask 2×1 thread", True)]),
            ("trivial", args.trivial, [("plain", "plain loop (floor)", False),
                                       ("trivial2", "luisy processes=2", False),
                                       ("trivial-dask", "luisy Dask 2×1 thread", True)]),
        ):
            floor = None
            for case, label, dask in cases:
                output = (case,) if case.startswith(("pool", "plain")) else ("bench", "interim")
                seconds = best_of(args.repeat, lambda case=case, dask=dask: timed(case, wd, dask), clear(*output))
                floor = floor or seconds
                rows.append((kind, n, label, seconds, seconds / floor))
                print(f"{kind:<10} {n:>6} {label:<24} {seconds:>8.2f} s {seconds / floor:>7.2f}× floor", flush=True)

    by_label = {(kind, label): seconds for kind, _, label, seconds, _ in rows}
    dask_busy = by_label[("CPU-bound", "luisy Dask 2×1 thread")]
    print()
    print(f"CPU-bound: Dask is {by_label[('CPU-bound', 'luisy processes=1')] / dask_busy:.2f}× faster than "
          f"processes=1 (aim ≥ 1.6), and takes {dask_busy / by_label[('CPU-bound', 'luisy processes=2')]:.2f}× "
          "the time of processes=2 (aim ≤ 1.10)")
    print(f"trivial:   Dask takes {by_label[('trivial', 'luisy Dask 2×1 thread')] / by_label[('trivial', 'luisy processes=2')]:.2f}× "  # noqa: E501
          "the time of processes=2 (aim ≤ 1.5)")


if __name__ == "__main__":
    main()
