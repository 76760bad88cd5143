"""Reruns of a 3-stage pipeline over many items: directory task → directory task → reduce.

N input files (a number each) → ``Doubled`` (a directory task) → ``Tripled`` (a directory task
over it) → ``Total`` (a ``ReduceTask`` summing it). Each case runs in a fresh process (time and
peak RSS measured there), on one working directory:

* ``first run``: the three stages from scratch (with ``--make``);
* ``list + stat (floor)``: ``os.scandir`` of the input folder and a ``stat`` of each file, in a
  plain loop: what any tool that notices edited files by size and modification time pays before
  it can say "nothing to do"; reruns are compared with it;
* ``no-op rerun``: ``luisy.build`` of the complete pipeline;
* ``+10 files``: the same after adding ten input files; the difference to the no-op is what the
  change costs (aim: under 1 s at a million items);
* ``… write-once``: the same with ``input_fingerprint = "write-once"`` on the input folder, which
  is listed again only when its modification time changed. ``+10`` runs moments after the files
  came, so its listing is not remembered and each run compares all files added since the no-op;
  ``+10 …, later`` runs 2.5 s after them, and remembers its listing, as a run that comes later
  does.

Each rerun case runs ``--repeat`` times (default 3; each ``+10`` adds ten more files) and the
median is shown with the range: these machines are noisy, and one run of a few seconds can be
off by half a second.

Usage: ``python benchmarks/incremental.py --items 1000000 --dir DIR`` (the first run makes DIR;
later runs with the same DIR measure the reruns only; ``--first-run`` removes the outputs and
luisy's own files from DIR first and measures the first run again, by default and with
write-once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PROJECT = '''
import luisy


@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Numbers(luisy.ExternalTask):
    def get_folder_name(self):
        return "numbers"


@luisy.interim
@luisy.requires(Numbers)
class Doubled(luisy.DirectoryTask):
    def process(self, name, text):
        return int(text) * 2


@luisy.interim
@luisy.requires(Doubled)
class Tripled(luisy.DirectoryTask):
    def process(self, name, value):
        return value * 3


@luisy.final
@luisy.requires(Tripled)
@luisy.json_output
class Total(luisy.ReduceTask):
    def initial(self):
        return {"n": 0, "sum": 0}

    def fold(self, state, name, value):
        return {"n": state["n"] + 1, "sum": state["sum"] + value}

    def unfold(self, state, name, value):
        return {"n": state["n"] - 1, "sum": state["sum"] - value}
'''

CASE = '''
import os, resource, sys, time, json
sys.path.insert(0, {root!r})
start = time.perf_counter()
case = {case!r}
if case == "floor":
    folder = {folder!r}
    names = sorted(entry.name for entry in os.scandir(folder))
    fd = os.open(folder, os.O_RDONLY)
    found = [(s.st_size, s.st_mtime_ns) for s in (os.stat(name, dir_fd=fd) for name in names)]
    os.close(fd)
else:
    import luisy
    import incremental_tasks as tasks
    if "write-once" in case:
        tasks.Numbers.input_fingerprint = "write-once"
    summary = luisy.execution.run([tasks.Total()], working_dir={data!r}, log_level="ERROR")
    assert summary.ok, summary.lines()
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
'''


def run_case(root: Path, case: str) -> dict[str, float]:
    os.sync()  # the previous case's writes go to disk now, not during this one
    code = CASE.format(root=str(root), case=case, folder=str(root / "data" / "incremental_tasks" / "raw" / "numbers"),
                       data=str(root / "data"))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_files(folder: Path, count: int = 10) -> None:
    start = sum(1 for _ in os.scandir(folder))
    for i in range(start, start + count):
        (folder / f"m{i:07d}.txt").write_text(str(i))


def clear_outputs(data: Path) -> None:
    """Remove everything the pipeline wrote under ``data``: all but the input folder."""
    layer = data / "incremental_tasks"
    for path in [*(p for p in data.iterdir() if p != layer), *(p for p in layer.iterdir() if p.name != "raw")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    """The median run (by time) of ``results``, with the range of the times."""
    ordered = sorted(results, key=lambda result: result["seconds"])
    middle = dict(ordered[len(ordered) // 2])
    middle["low"], middle["high"] = ordered[0]["seconds"], ordered[-1]["seconds"]
    middle["rss_mb"] = max(result["rss_mb"] for result in results)
    return middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, required=True, help="made by the first run; kept")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each rerun case (the median is shown)")
    parser.add_argument("--first-run", action="store_true",
                        help="remove the outputs from DIR and measure the first run again, by default and write-once")
    args = parser.parse_args()
    root = args.dir
    folder = root / "data" / "incremental_tasks" / "raw" / "numbers"
    rows = []
    if not folder.exists():
        folder.mkdir(parents=True)
        (root / "incremental_tasks.py").write_text(textwrap.dedent(PROJECT))
        for i in range(args.items):
            (folder / f"n{i:07d}.txt").write_text(str(i))
        rows.append(("first run, 3 stages", run_case(root, "first")))
    elif args.first_run:
        for label, case in (("first run, 3 stages", "first"), ("first run, write-once", "first write-once")):
            clear_outputs(root / "data")
            rows.append((label, run_case(root, case)))
    run_case(root, "no-op")  # untimed: the file system's caches warm, as for the floor

    def repeated(case: str, change: bool = False, settle: bool = False) -> dict[str, float]:
        results = []
        for _ in range(args.repeat):
            if change:
                add_files(folder)
            if settle:
                time.sleep(2.5)  # past the racy window: the run remembers its listing
            results.append(run_case(root, case))
        return median_of(results)

    rows.append(("list + stat (floor)", repeated("floor")))
    rows.append(("no-op rerun", repeated("no-op")))
    rows.append(("+10 files", repeated("plus10", change=True)))
    time.sleep(2.5)  # past the racy window: a write-once listing is remembered from now on
    run_case(root, "no-op write-once")
    rows.append(("no-op rerun, write-once", repeated("no-op write-once")))
    rows.append(("+10 files, write-once", repeated("plus10 write-once", change=True)))
    rows.append(("+10 files, write-once, later", repeated("plus10 write-once later", change=True, settle=True)))
    items = sum(1 for _ in os.scandir(folder))
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores; {items} input files at the end; "
          f"each case in a fresh process; reruns: median of {args.repeat} (range), peak RSS the highest")
    results = dict(rows)
    floor = results["list + stat (floor)"]["seconds"]
    for label, result in rows:
        ratio = f"{result['seconds'] / floor:6.2f}x floor" if "floor" not in label and "first" not in label else ""
        spread = f"({result['low']:.2f}-{result['high']:.2f})" if "low" in result else ""
        print(f"  {label:<28} {result['seconds']:8.2f} s {spread:<13} {ratio:<14} peak RSS {result['rss_mb']:6.0f} MB")
    for mode, no_op in (("", ""), (", write-once", ", write-once"), (", write-once, later", ", write-once")):
        extra = results[f"+10 files{mode}"]["seconds"] - results[f"no-op rerun{no_op}"]["seconds"]
        print(f"  +10 files over the no-op{mode or ', default'}: {extra:.2f} s")


if __name__ == "__main__":
    main()
