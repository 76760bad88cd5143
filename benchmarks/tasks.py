"""luisy against plain luigi on graphs of many small single-file tasks.

The same graph is written twice into a temporary folder, as two importable packages (so luisy's
code fingerprinting follows real modules): ``bench_luisy`` with ``luisy.Task`` classes
(``@luisy.interim``, ``@luisy.json_output``, ``self.write``), and ``bench_luigi`` with
``luigi.Task`` classes whose ``luigi.LocalTarget`` outputs are written the same way: the same JSON
object, atomically (temporary file, then rename), into the same folder layout. Each task's work
is tiny, so the times are the frameworks' overhead. Every case runs in a fresh process (imports
and caches do not leak between cases); the time is that of the ``luisy.build`` / ``luigi.build``
call alone (local scheduler, ``workers=1``, log level WARNING), imports excluded
(``benchmarks/import_time.py`` measures those). Rows, each with plain luigi's seconds, luisy's
seconds and the ratio luisy / luigi:

* ``first run, wide N``: N tasks ``Leaf(n=0..N-1)``, each writing a small JSON object made
  from its parameter, under one ``WrapperTask``; nothing exists yet. luisy also records each
  task's fingerprint when it succeeds.
* ``no-op, wide N``: the same build again, everything complete. luigi asks each ``Leaf`` whether
  its file exists; luisy also checks that each recorded fingerprint is current (code,
  parameters, library versions).
* ``first run, chain L``: ``Step(n=L-1)``, each ``Step`` requiring ``Step(n-1)`` and writing its
  predecessor's value plus one; nothing exists yet.
* ``no-op, chain L``: the same again, complete. A luisy fingerprint includes the upstream
  fingerprints, so this follows the whole chain.

File-system noise only ever adds time, so cases whose plain-luigi run is short (N ≤ 1000 and the
chain) run ``--repeat`` times and the fastest run is reported, as ``timeit`` does; larger ones
run once. Each case starts after an ``os.sync()``, and the script stops unless the first run
ran every task and the no-op run none.

With ``--profile`` the luisy first run of the wide graph (the smallest size) is also run under
``cProfile`` in a fresh process, and the 15 functions with the largest cumulative time are
printed (then the 15 with the largest own time): where luisy's remaining cost is.

Usage: ``python benchmarks/tasks.py [--sizes 1000 10000] [--chain 200] [--repeat 3] [--quick]
[--profile]``. ``--quick`` is ``--sizes 300 --chain 50``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# --- the two projects ----------------------------------------------------------------------------

LUISY_PROJECT = '''
import luisy


def payload(n):
    return {"n": n, "square": n * n, "name": f"leaf-{n}"}


@luisy.project_name("bench")
@luisy.interim
@luisy.json_output
class Leaf(luisy.Task):
    n = luisy.IntParameter()

    def run(self):
        self.write(payload(self.n))


@luisy.project_name("bench")
class Wide(luisy.WrapperTask):
    size = luisy.IntParameter()

    def requires(self):
        return [Leaf(n=n) for n in range(self.size)]


@luisy.project_name("bench")
@luisy.interim
@luisy.json_output
class Step(luisy.Task):
    n = luisy.IntParameter()

    def requires(self):
        return Step(n=self.n - 1) if self.n > 0 else []

    def run(self):
        previous = self.input().read()["value"] if self.n > 0 else 0
        self.write({"n": self.n, "value": previous + 1})
'''

LUIGI_PROJECT = '''
import json
import os

import luigi

OUT = os.path.join(os.environ["BENCH_WORKING_DIR"], "bench", "interim")


def payload(n):
    return {"n": n, "square": n * n, "name": f"leaf-{n}"}


def write_json(target, obj):
    """As luisy writes: the object to a temporary file in the target's folder, then renamed."""
    with target.temporary_path() as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f)


class Leaf(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(OUT, f"Leaf_n={self.n}.json"))

    def run(self):
        write_json(self.output(), payload(self.n))


class Wide(luigi.WrapperTask):
    size = luigi.IntParameter()

    def requires(self):
        return [Leaf(n=n) for n in range(self.size)]


class Step(luigi.Task):
    n = luigi.IntParameter()

    def requires(self):
        return Step(n=self.n - 1) if self.n > 0 else []

    def output(self):
        return luigi.LocalTarget(os.path.join(OUT, f"Step_n={self.n}.json"))

    def run(self):
        if self.n > 0:
            with self.input().open() as f:
                previous = json.load(f)["value"]
        else:
            previous = 0
        write_json(self.output(), {"n": self.n, "value": previous + 1})
'''

PROJECTS = {"luigi": ("bench_luigi", LUIGI_PROJECT), "luisy": ("bench_luisy", LUISY_PROJECT)}


def write_projects(root: Path) -> None:
    for package, source in PROJECTS.values():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / "tasks.py").write_text(source.lstrip())


# --- one case in a fresh process -----------------------------------------------------------------

CHILD = '''
import json, os, sys, time
sys.path.insert(0, {root!r})
os.environ["BENCH_WORKING_DIR"] = {working_dir!r}
import luigi
import luisy
luisy.set_working_dir({working_dir!r})
from {package}.tasks import Wide, Step
root_task = Wide(size={size}) if {wide!r} else Step(n={size} - 1)
def build():
    if {framework!r} == "luisy":
        # luisy.build's own work, without the summary luisy.execution.run adds for the CLI
        # (luisy.build returns only luigi's flag; the count of tasks run needs luigi's result).
        from luisy.execution import _execute
        return _execute([root_task], False, workers=1, local_scheduler=True, log_level="WARNING")
    return luigi.build([root_task], workers=1, local_scheduler=True, log_level="WARNING",
                       detailed_summary=True)
def tasks_run(result):
    from luigi.execution_summary import _summary_dict
    assert result.scheduling_succeeded and root_task.complete()
    return len(_summary_dict(result.worker)["completed"])
if {profile!r}:
    import cProfile, pstats
    profiler = cProfile.Profile()
    tasks_run(profiler.runcall(build))
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats({top})
    print("--- by own time (tottime) ---", file=sys.stderr)
    stats.sort_stats("tottime").print_stats({top})
else:
    start = time.perf_counter()
    result = build()
    seconds = time.perf_counter() - start
    print(json.dumps({{"seconds": seconds, "ran": tasks_run(result)}}))
'''


def run_case(root: Path, framework: str, shape: str, size: int, expect_ran: int) -> float:
    """Seconds of one build in a fresh process; checks that ``expect_ran`` tasks ran."""
    out = _child(root, framework, shape, size, profile=False)
    result = json.loads(out.strip().splitlines()[-1])
    if result["ran"] != expect_ran:
        sys.exit(f"{framework} {shape} {size}: {result['ran']} tasks ran, expected {expect_ran}")
    return float(result["seconds"])


def profile_case(root: Path, framework: str, shape: str, size: int, top: int) -> str:
    """cProfile's ``top`` functions by cumulative time of one build in a fresh process."""
    return _child(root, framework, shape, size, profile=True, top=top)


def _child(root: Path, framework: str, shape: str, size: int, profile: bool, top: int = 15) -> str:
    working_dir = root / f"data-{framework}-{shape}-{size}"
    code = CHILD.format(root=str(root), working_dir=str(working_dir), package=PROJECTS[framework][0], size=size,
                        wide=shape == "wide", framework=framework, profile=profile, top=top)
    os.sync()  # the previous case's dirty pages are written back now, not during this one
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{framework} {shape} {size} failed:\n{done.stderr}")
    return done.stderr if profile else done.stdout


def clear(root: Path, framework: str, shape: str, size: int) -> Callable[[], None]:
    return lambda: shutil.rmtree(root / f"data-{framework}-{shape}-{size}", ignore_errors=True)


def best_of(repeat: int, run: Callable[[], float], before: Callable[[], None] = lambda: None) -> float:
    """The fastest of ``repeat`` runs (as ``timeit`` reports): file-system noise only ever adds time."""
    times = []
    for _ in range(repeat):
        before()
        times.append(run())
    return min(times)


def bench(root: Path, shape: str, size: int, repeat: int) -> list[tuple[str, float, float]]:
    """(label, luigi seconds, luisy seconds) of the first run and of the no-op rerun."""
    graph = size + 1 if shape == "wide" else size  # the wide graph's WrapperTask runs too
    first: dict[str, float] = {}
    noop: dict[str, float] = {}
    for framework in ("luigi", "luisy"):
        def run(expect_ran: int, framework: str = framework) -> float:
            return run_case(root, framework, shape, size, expect_ran)

        # every first run starts from nothing; the last one's outputs stay for the no-op runs
        first[framework] = best_of(repeat, lambda: run(graph), clear(root, framework, shape, size))
        noop[framework] = best_of(repeat, lambda: run(0))
        clear(root, framework, shape, size)()
    return [(f"first run, {shape} {size}", first["luigi"], first["luisy"]),
            (f"no-op, {shape} {size}", noop["luigi"], noop["luisy"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="tasks in the wide graph")
    parser.add_argument("--chain", type=int, default=200, help="length of the chain")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per case, fastest reported (wide N ≤ 1000 and the chain; larger N run once)")
    parser.add_argument("--quick", action="store_true", help="a fast look: --sizes 300 --chain 50")
    parser.add_argument("--profile", action="store_true",
                        help="also profile luisy's first run of the smallest wide graph (top 15, cumulative)")
    parser.add_argument("--tmp", help="folder for the projects and data (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.chain = [300], 50
    import luigi

    print(f"{datetime.date.today()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"luigi {luigi.__version__}; seconds of the build call, each case in a fresh process")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        write_projects(root)
        print(f"{'case':<24} {'luigi s':>9} {'luisy s':>9} {'luisy/luigi':>12}", flush=True)
        cases = [("wide", n, args.repeat if n <= 1000 else 1) for n in args.sizes]
        cases.append(("chain", args.chain, args.repeat))
        for shape, size, repeat in cases:
            for label, plain, ours in bench(root, shape, size, repeat):
                print(f"{label:<24} {plain:>9.3f} {ours:>9.3f} {ours / plain:>11.2f}×", flush=True)
        if args.profile:
            size = min(args.sizes)
            print(f"\nluisy, first run, wide {size}, under cProfile: top 15 by cumulative time, then by own time")
            clear(root, "luisy", "wide", size)()
            print(profile_case(root, "luisy", "wide", size, top=15).strip())
        else:
            print("\nWhere luisy's time goes: run again with --profile (cProfile of luisy's first wide run).")


if __name__ == "__main__":
    main()
