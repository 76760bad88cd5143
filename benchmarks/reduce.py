"""A reduce over a directory task's items: ``luisy.ReduceTask`` against a plain loop and a plain task.

The pipeline: N input files (JSON numbers) → a directory task that squares each (JSON items) →
a reduce that sums the squares. Cases, each in a fresh process (time and peak RSS measured there):

* ``plain loop``: read every item file of the directory output and sum (``json.load`` per file);
  the floor the reduce's first run is compared with (aim: within 1.15×);
* ``ReduceTask, first run`` / ``Task reading every item, first run``: ``luisy.build`` of the
  reduce once the directory output is complete: all of its items folded, and the same sum written
  by a plain ``luisy.Task`` that reads ``self.input().items()``;
* ``+10 files``: ten new input files, then ``luisy.build`` of each variant: the directory task
  processes ten items either way; the ``ReduceTask`` folds ten, the plain task reads all again.

Each row gives the whole case (luisy's import and ``build``: the directory task is checked,
its inputs listed) and the task's own ``run()`` as the journal timed it; the ratio compares the
``run()`` with the plain loop.

Usage: ``python benchmarks/reduce.py [--sizes 10000 100000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROJECT = '''
import luisy


@luisy.raw
@luisy.directory_input(pattern="*.json")
class Numbers(luisy.ExternalTask):
    def get_folder_name(self):
        return "numbers"


@luisy.interim
@luisy.requires(Numbers)
@luisy.directory_output(format="json")
class Squared(luisy.DirectoryTask):
    def process(self, name, number):
        return {"value": number["value"] ** 2}


@luisy.final
@luisy.requires(Squared)
@luisy.json_output
class Sum(luisy.ReduceTask):
    def initial(self):
        return 0

    def fold(self, state, name, item):
        return state + item["value"]

    def unfold(self, state, name, item):
        return state - item["value"]

    def finish(self, state):
        return {"sum": state}


@luisy.final
@luisy.requires(Squared)
@luisy.json_output
class PlainSum(luisy.Task):
    def run(self):
        self.write({"sum": sum(item["value"] for _, item in self.input().items())})
'''

# Run in a fresh process: prints the seconds the case took and its peak RSS.
CASE = '''
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[2])
case, data = sys.argv[1], sys.argv[3]
begin = time.perf_counter()
if case == "plain":
    folder = next(p for p in __import__("pathlib").Path(data, "bench", "interim").iterdir() if p.is_dir())
    total = 0
    for entry in os.scandir(folder):
        if entry.name.endswith(".json") and not entry.name.startswith("_luisy"):  # not the manifest
            with open(entry.path) as f:
                total += json.load(f)["value"]
else:
    import luisy
    from bench.tasks import PlainSum, Squared, Sum
    from luisy.history.runs import runs_of
    task = {"squared": Squared, "reduce": Sum, "plain-task": PlainSum}[case]()
    assert luisy.build([task], working_dir=data), case
    run = max(runs_of(data, task.task_id), key=lambda r: r.started)  # its run(), as the journal timed it
print(json.dumps({"seconds": time.perf_counter() - begin, "run": 0.0 if case == "plain" else run.duration,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def _case(case: str, project: Path, data: Path) -> dict[str, float]:
    os.sync()
    done = subprocess.run([sys.executable, "-c", CASE, case, str(project), str(data)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _inputs(data: Path, start: int, count: int) -> None:
    folder = data / "bench" / "raw" / "numbers"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"n{i:07d}.json").write_text(json.dumps({"value": i % 1000}))


def measure(count: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="luisy-reduce-bench-") as tmp:
        project, data = Path(tmp) / "project", Path(tmp) / "data"
        (project / "bench").mkdir(parents=True)
        (project / "bench" / "__init__.py").write_text("")
        (project / "bench" / "tasks.py").write_text(textwrap.dedent(PROJECT))
        _inputs(data, 0, count)
        _case("squared", project, data)
        plain = _case("plain", project, data)
        reduce_first = _case("reduce", project, data)
        task_first = _case("plain-task", project, data)
        _inputs(data, count, 10)
        reduce_more = _case("reduce", project, data)  # the directory task processes the ten
        _inputs(data, count + 10, 10)
        _case("squared", project, data)
        _inputs(data, count + 20, 10)
        task_more = _case("plain-task", project, data)
        reduce_again = _case("reduce", project, data)  # folds twenty: both batches since its last run
        # The plain task's +10 includes the directory task's ten; so does the reduce's.
    rows = [
        ("plain loop: json.load every item, sum", plain, None),
        ("ReduceTask, first run", reduce_first, plain),
        ("Task reading every item, first run", task_first, plain),
        ("+10 files: ReduceTask (folds 10)", reduce_more, None),
        ("+10 files: Task reading every item", task_more, None),
        ("+10+10 files: ReduceTask (folds 20)", reduce_again, None),
    ]
    out = [f"{count} items:{'':33s} whole     the task's run()   peak RSS"]
    for label, found, floor in rows:
        ratio = f"   ({found['run'] / floor['seconds']:.2f}x the plain loop)" if floor else ""
        own = f"{found['run']:8.2f} s" if found["run"] else " " * 10
        out.append(f"  {label:40s} {found['seconds']:7.2f} s   {own}   {found['rss']:6.0f} MiB{ratio}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores; one run per case, each in a fresh process; "
          "'whole' includes importing luisy")
    for count in args.sizes:
        print("\n".join(measure(count)), flush=True)


if __name__ == "__main__":
    main()
