"""How to keep the run journal: the cost of journaling N task runs (a START and its end each), five ways.

* ``file per process`` (luisy within a build, :func:`luisy.history.journal.one_file_per_process`): each
  process creates one file with ``O_CREAT | O_EXCL`` under a unique name, keeps it open, and
  appends every event to it.
* ``file per task run`` (luisy outside a build, :func:`luisy.history.journal.append`): the START creates
  a new file with ``O_CREAT | O_EXCL`` under a unique name; the end is appended to that file by
  the same process.
* ``file per event``: each event a new file (``O_EXCL``), two per task run.
* ``file per event, rename``: each event written to a temporary name, then renamed into place.
* ``shared O_APPEND log``: one JSON line per event appended to one shared file (one ``write``
  under ``PIPE_BUF``). Atomic on a local file system; over NFS the client appends at the size it
  last saw, so writers on two machines overwrite each other's lines. A reference only.
* ``plain write``: the baseline: ``open(path, "w").write(...)`` of a new small file per event.

Each way journals N task runs (events of about 500 bytes, like real ones) from ``--writers``
processes at once (each writer times its own loop), then one reader reads them all back; every
way must find all 2N events. Times are µs per task run.
Best of ``--repeat`` tries. Usage: ``python benchmarks/journal.py [--sizes 1000 10000] [--writers 2]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from luisy.history import journal  # noqa: E402


def _event(writer: int, i: int) -> journal.Event:
    return journal.Event(event=journal.START, id=f"{writer:02d}{i:014x}", run="r" * 32,
                         task_id=f"Part_2026_01_{i:05d}_0123456789", task=f"Part(day=2026-01-{i:05d})", family="Part",
                         host="worker-17.cluster", user="analyst", pid=4242, started=time.time(),
                         luisy_version="2.0.0", python_version="3.11.7", outputs=[f"proj/interim/Part_{i:05d}.json"])


def per_run(root: Path, writer: int, count: int) -> None:
    for i in range(count):
        start = _event(writer, i)
        journal.append(root, start)
        journal.append(root, _end(start))


def per_process(root: Path, writer: int, count: int) -> None:
    with journal.one_file_per_process():
        per_run(root, writer, count)


def _end(start: journal.Event) -> journal.Event:
    return journal.Event(**{**start.__dict__, "event": journal.SUCCESS, "ended": time.time()})


def per_event(root: Path, writer: int, count: int) -> None:
    folder = root / "events"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        start = _event(writer, i)
        for event in (start, _end(start)):
            fd = os.open(folder / f"{time.time_ns():020d}.{event.id}.{event.event}.json",
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, (event.to_json() + "\n").encode())
            os.close(fd)


def rename(root: Path, writer: int, count: int) -> None:
    folder = root / "events"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        start = _event(writer, i)
        for event in (start, _end(start)):
            tmp = folder / f".tmp-{os.getpid()}-{event.id}"
            tmp.write_bytes((event.to_json() + "\n").encode())
            os.rename(tmp, folder / f"{time.time_ns():020d}.{event.id}.{event.event}.json")


def append_log(root: Path, writer: int, count: int) -> None:
    for i in range(count):
        start = _event(writer, i)
        for event in (start, _end(start)):
            fd = os.open(root / "journal.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, (event.to_json() + "\n").encode())
            os.close(fd)


def plain(root: Path, writer: int, count: int) -> None:
    folder = root / "plain"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        start = _event(writer, i)
        for event in (start, _end(start)):
            with open(folder / f"{writer}-{i}-{event.event}.json", "w") as f:
                f.write(event.to_json() + "\n")


def read_journal(root: Path) -> int:
    return len(journal.events(root))


def read_files(folder: Path) -> int:
    return sum(1 for path in folder.iterdir() if journal.Event.from_json(path.read_bytes()) is not None)


def read_log(root: Path) -> int:
    return sum(1 for line in (root / "journal.log").read_bytes().splitlines() if journal.Event.from_json(line))


WAYS = {
    "file per process": (per_process, read_journal),
    "file per task run": (per_run, read_journal),
    "file per event": (per_event, lambda root: read_files(root / "events")),
    "file per event, rename": (rename, lambda root: read_files(root / "events")),
    "shared O_APPEND log": (append_log, read_log),
    "plain write": (plain, lambda root: read_files(root / "plain")),
}


def _timed(write: object, root: Path, writer: int, count: int, times: object, go: object) -> None:
    go.wait()  # all writers start together, so they contend
    start = time.perf_counter()
    write(root, writer, count)
    times.put(time.perf_counter() - start)


def measure(way: str, n: int, writers: int) -> tuple[float, float]:
    """Seconds per task run journaled (mean over the writers' own loops) and read back."""
    write, read = WAYS[way]
    root = Path(tempfile.mkdtemp(prefix="luisy-journal-"))
    try:
        each = n // writers
        times, go = multiprocessing.Queue(), multiprocessing.Event()
        procs = [multiprocessing.Process(target=_timed, args=(write, root, w, each, times, go))
                 for w in range(writers)]
        for proc in procs:
            proc.start()
        go.set()
        wrote = sum(times.get() for _ in procs) / writers / each
        for proc in procs:
            proc.join()
        start = time.perf_counter()
        found = read(root)
        got = (time.perf_counter() - start) * 2 / found
        assert found == 2 * each * writers, (way, found)
        return wrote, got
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"writers": args.writers, "best of": args.repeat, "python": sys.version.split()[0]}))
    print(f"{'N':>7}  {'way':<24} {'append µs/run':>14} {'read µs/run':>12} {'append vs plain':>16}")
    for n in args.sizes:
        # Best of --repeat, the ways interleaved: the machine's load changes from minute to minute.
        tries: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
        for _ in range(args.repeat):
            for way in WAYS:
                tries[way].append(measure(way, n, args.writers))
        rows = {way: (min(t[0] for t in found), min(t[1] for t in found)) for way, found in tries.items()}
        base = rows["plain write"][0]
        for way, (wrote, got) in rows.items():
            print(f"{n:>7}  {way:<24} {1e6 * wrote:>14.1f} {1e6 * got:>12.1f} {wrote / base:>15.2f}×")


if __name__ == "__main__":
    main()
