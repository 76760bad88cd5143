"""How long fingerprinting takes: a generated project of 30 modules and 200 tasks.

Each measurement runs in a fresh interpreter after the project is imported (imports are not
counted). Rows:

* plain-Python baseline: read every module and hash its text (what a naive "hash the source"
  scheme costs; it reruns on every comment),
* code fingerprints of all 200 task classes, cold (first time in the process) and warm (cached),
* full task fingerprints (code + parameters + upstream + input data) of all 200 tasks in one
  pass, cold — what ``plan`` and a scheduler pay for the whole graph,
* a no-op ``luisy plan`` of the final task (every task complete), which is what a rerun pays,
* ``complete()`` called on every task separately, code fingerprints already made: each call
  follows its own upstream, so on this deliberately deep project (a chain of 200 tasks) the cost
  grows with depth × tasks; divided by 200 it is the cost of one ``complete()``. luigi only asks
  this of tasks whose downstream is incomplete.

Usage: ``python benchmarks/fingerprint.py [--modules 30] [--tasks 200] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HELPER = '''
from . import {prev} as previous_{i}
from .{prev} import scale_{prev_i}

OFFSET_{i} = {i}
A_{i}, B_{i} = {i}, {i} + 1
TABLE_{i} = {{}}
TABLE_{i}["k"] = {i}


def scale_{i}(x):
    """Scale a value."""
    return scale_{prev_i}(x) + OFFSET_{i} + previous_{i}.OFFSET_{prev_i}
'''

TASK = '''

@luisy.project_name("bench")
@luisy.interim
{requires}@luisy.json_output
class T{i}_{j}(luisy.Task):
    n = luisy.IntParameter(default={j})

    def run(self):
        self.write({{"value": scale_{i}(self.n) + A_{i} + TABLE_{i}["k"]}})
'''


def generate(root: Path, modules: int, tasks: int) -> list[str]:
    """Write the project; return the task class paths in dependency order."""
    pkg = root / "benchproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    raw = '''
import luisy


@luisy.project_name("bench")
@luisy.raw
@luisy.json_output
class Raw(luisy.ExternalTask):
    pass


OFFSET_base = 0


def scale_base(x):
    return x
'''
    (pkg / "base.py").write_text(raw)
    names: list[str] = []
    per_module = -(-tasks // modules)
    previous_task = "Raw"
    for i in range(modules):
        prev = "base" if i == 0 else f"m{i - 1:02d}"
        prev_i = "base" if i == 0 else str(i - 1)
        source = "import luisy\nfrom .base import Raw\n" + HELPER.format(i=i, prev=prev, prev_i=prev_i)
        if i > 0:
            source += f"from .{prev} import *  # noqa: F403\n"
        for j in range(per_module):
            if len(names) == tasks:
                break
            requires = f"@luisy.requires({previous_task})\n" if j == 0 else f"@luisy.requires(T{i}_{j - 1})\n"
            source += TASK.format(i=i, j=j, requires=requires)
            names.append(f"benchproj.m{i:02d}:T{i}_{j}")
            previous_task = f"T{i}_{j}"
        (pkg / f"m{i:02d}.py").write_text(source)
    return names


MEASURE = '''
import importlib, json, sys, time, hashlib, pathlib
sys.path.insert(0, {root!r})
import luisy
luisy.set_working_dir({root!r} + "/data")
names = {names!r}
from luisy.testing import get_all_dependencies
module, _, cls = names[-1].partition(":")
root = getattr(importlib.import_module(module), cls)()
tasks = [t for t in get_all_dependencies(root) if type(t).__name__ != "Raw"]
classes = [type(t) for t in tasks]
from luisy.fingerprint.code import code_fingerprint
from luisy.fingerprint.task import current
case = {case!r}
start = time.perf_counter()
if case == "baseline":
    for path in sorted(pathlib.Path({root!r}, "benchproj").glob("*.py")):
        hashlib.blake2b(path.read_bytes()).hexdigest()
elif case == "code":
    for cls in classes:
        code_fingerprint(cls)
elif case == "code-warm":
    for cls in classes:
        code_fingerprint(cls)
    start = time.perf_counter()
    for cls in classes:
        code_fingerprint(cls)
elif case == "tasks":
    memo = {{}}
    for task in tasks:
        current(task, memo)
elif case == "complete":
    for cls in classes:  # this row is about complete(); the row above times code fingerprints
        code_fingerprint(cls)
    start = time.perf_counter()
    for task in tasks:
        assert task.complete()
elif case == "plan":
    from luisy.plan import plan
    assert plan(root) == []
print(json.dumps(time.perf_counter() - start))
'''

CASES = {
    "baseline": "plain Python: hash every module's text",
    "code": "code fingerprints, 200 classes, cold",
    "code-warm": "code fingerprints, 200 classes, warm",
    "tasks": "task fingerprints, 200 tasks, one pass, cold",
    "plan": "no-op `luisy plan` of the last task",
    "complete": "complete() of each task on its own, code warm",
}


def measure(root: Path, names: list[str], case: str, repeat: int) -> float:
    code = MEASURE.format(root=str(root), names=names, case=case)
    times = [json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                       text=True).stdout) for _ in range(repeat)]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = generate(root, args.modules, args.tasks)
        (root / "data" / "bench" / "raw").mkdir(parents=True)
        (root / "data" / "bench" / "raw" / "Raw.json").write_text("[]")
        build = textwrap.dedent(f"""
            import sys, importlib, luisy
            sys.path.insert(0, {str(root)!r})
            module, _, cls = {names[-1]!r}.partition(":")
            task = getattr(importlib.import_module(module), cls)()
            assert luisy.build([task], working_dir={str(root / 'data')!r}, log_level="ERROR")
        """)
        subprocess.run([sys.executable, "-c", build], check=True)
        results = {case: measure(root, names, case, args.repeat) for case in CASES}
    base = results["baseline"]
    print(f"{args.modules} modules, {len(names)} tasks; median of {args.repeat} fresh processes")
    print(f"{'case':<48} {'seconds':>9} {'× baseline':>11}")
    for case, label in CASES.items():
        print(f"{label:<48} {results[case]:>9.4f} {results[case] / base:>11.1f}")
    print(f"one complete() on average: {results['complete'] / len(names) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
