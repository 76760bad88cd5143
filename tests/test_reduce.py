"""``luisy.ReduceTask``: a reduce folds only what changed, and its result always equals a full
recomputation (checked over random sequences of additions, changes, removals and renames)."""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

import luisy
from luisy.tasks.reduce import STATE_DIR


def _expected(folder: Path) -> dict:
    values = {p.stem: json.loads(p.read_text())["value"] for p in folder.glob("*.json")}
    return {"n": len(values), "sum": sum(v * v for v in values.values()), "names": sorted(values)}


def _squares(folder: Path) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["value"] ** 2 for p in folder.glob("*.json")}


def test_random_changes_fold_incrementally_and_equal_a_full_recomputation(red):
    tasks, folder, data = red
    Stats = tasks.Stats  # noqa: N806 - a class
    rng = random.Random(28)
    names = [f"n{i:03d}" for i in range(40)]
    for name in names[:20]:
        (folder / f"{name}.json").write_text(json.dumps({"value": rng.randint(-50, 50)}))
    summary = luisy.execution.run([Stats()], working_dir=data)
    assert summary.ok and summary.reduced == [("Stats()", {"folded": 20, "unfolded": 0, "refolded": "first run"})]
    stats = next(data.rglob("final/Stats.json"))
    assert json.loads(stats.read_text()) == _expected(folder)
    reduced = 0
    for step in range(12):
        before = _squares(folder)
        present = sorted(p.stem for p in folder.glob("*.json"))
        absent = [n for n in names if n not in present]
        for _ in range(rng.randint(1, 4)):
            action = rng.choice(["add", "change", "remove", "rename"])
            if action == "add" and absent:
                name = absent.pop()
                (folder / f"{name}.json").write_text(json.dumps({"value": rng.randint(-50, 50)}))
                present.append(name)
            elif action == "change" and present:
                name = rng.choice(present)
                (folder / f"{name}.json").write_text(json.dumps({"value": rng.randint(51, 99)}))
            elif action == "remove" and len(present) > 1:
                name = present.pop(rng.randrange(len(present)))
                (folder / f"{name}.json").unlink()
                absent.append(name)
            elif action == "rename" and present and absent:
                old, new = present.pop(rng.randrange(len(present))), absent.pop()
                (folder / f"{old}.json").rename(folder / f"{new}.json")
                present.append(new)
                absent.append(old)
        summary = luisy.execution.run([Stats()], working_dir=data)
        assert summary.ok, summary.lines()
        assert json.loads(stats.read_text()) == _expected(folder), step
        after = _squares(folder)
        new = len(after.keys() - before.keys())
        removed = len(before.keys() - after.keys())
        changed = sum(1 for name in after.keys() & before.keys() if after[name] != before[name])
        if new + removed + changed:  # exactly what changed is folded and unfolded, never everything
            reduced += 1
            assert summary.reduced == [("Stats()", {"folded": new + changed, "unfolded": removed + changed,
                                                    "refolded": None})], (step, summary.reduced)
        else:
            assert summary.reduced == []
    assert reduced >= 8


def test_without_unfold_a_removal_folds_everything_again_and_plan_says_why(red):
    tasks, folder, data = red
    FoldOnly = tasks.FoldOnly  # noqa: N806 - a class
    for i in range(5):
        (folder / f"n{i}.json").write_text(json.dumps({"value": i}))
    assert luisy.execution.run([FoldOnly()], working_dir=data).ok
    output = next(data.rglob("final/FoldOnly.json"))
    assert json.loads(output.read_text()) == {"sum": 30}
    (folder / "n5.json").write_text(json.dumps({"value": 5}))
    from luisy.plan import report

    with luisy.working_dir(data):
        lines = "\n".join(report(FoldOnly()))
    assert "fold 1 new, unfold and fold 0 changed, unfold 0 removed items" in lines, lines
    summary = luisy.execution.run([FoldOnly()], working_dir=data)
    assert summary.reduced == [("FoldOnly()", {"folded": 1, "unfolded": 0, "refolded": None})]
    assert json.loads(output.read_text()) == {"sum": 55}
    (folder / "n0.json").unlink()
    with luisy.working_dir(data):
        lines = "\n".join(report(FoldOnly()))
    assert "every item is folded again: items changed or were removed, and it has no unfold()" in lines, lines
    summary = luisy.execution.run([FoldOnly()], working_dir=data)
    assert summary.reduced == [("FoldOnly()", {"folded": 5, "unfolded": 0, "refolded":
                                               "items changed or were removed, and it has no unfold()"})]
    assert json.loads(output.read_text()) == {"sum": 55}
    assert any("reduce: FoldOnly(): 5 folded, 0 unfolded (everything again" in line for line in summary.lines())


PROJECT = {
    "red/__init__.py": "",
    "red/tasks.py": '''
        import os
        import signal

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
        class Total(luisy.ReduceTask):
            def initial(self):
                return 0

            def fold(self, state, name, item):
                if name == os.environ.get("KILL_AT"):
                    os.kill(os.getpid(), signal.SIGKILL)
                return state + item["value"]

            def unfold(self, state, name, item):
                return state - item["value"]

            def finish(self, state):
                return {"total": state}


        @luisy.final
        @luisy.requires(Squared)
        @luisy.json_output
        class Stats(luisy.ReduceTask):
            """Count and sum, with unfold: a change or removal is taken back out."""

            def initial(self):
                return {"n": 0, "sum": 0, "names": []}

            def fold(self, state, name, item):
                return {"n": state["n"] + 1, "sum": state["sum"] + item["value"],
                        "names": sorted([*state["names"], name])}

            def unfold(self, state, name, item):
                names = list(state["names"])
                names.remove(name)
                return {"n": state["n"] - 1, "sum": state["sum"] - item["value"], "names": names}


        @luisy.final
        @luisy.requires(Squared)
        @luisy.json_output
        class FoldOnly(luisy.ReduceTask):
            """Sum without unfold: a change or removal folds everything again."""

            def initial(self):
                return 0

            def fold(self, state, name, item):
                return state + item["value"]

            def finish(self, state):
                return {"sum": state}


        @luisy.final
        @luisy.requires(Squared)
        @luisy.json_output
        class Everywhere(luisy.ReduceTask):
            """A sum whose parts may be folded in other processes: it notes which processes folded."""

            def initial(self):
                return {"sum": 0, "pids": []}

            def fold(self, state, name, item):
                return {"sum": state["sum"] + item["value"], "pids": sorted({*state["pids"], os.getpid()})}

            def combine(self, a, b):
                return {"sum": a["sum"] + b["sum"], "pids": sorted({*a["pids"], *b["pids"]})}
    ''',
}


@pytest.fixture
def red(tmp_path, monkeypatch):
    """The project's tasks, imported here; its input folder (empty) and working directory."""
    write_project(tmp_path, PROJECT)
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks = importlib.import_module("red.tasks")
    folder = tmp_path / "data" / "red" / "raw" / "numbers"
    folder.mkdir(parents=True)
    return tasks, folder, tmp_path / "data"


def test_killed_while_folding_or_between_state_and_output_the_rerun_is_right(tmp_path):
    write_project(tmp_path, PROJECT)
    data = tmp_path / "data"
    folder = data / "red" / "raw" / "numbers"
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"n{i}.json").write_text(json.dumps({"value": i}))
    assert run_luisy(["run", "red.tasks:Total"], cwd=tmp_path).returncode == 0
    total = data / "red" / "final" / "Total.json"
    assert json.loads(total.read_text()) == {"total": 55}
    # Killed in the middle of folding two new items: nothing of that run is published.
    (folder / "n6.json").write_text(json.dumps({"value": 6}))
    (folder / "n7.json").write_text(json.dumps({"value": 7}))
    killed = run_luisy(["run", "red.tasks:Total"], cwd=tmp_path, env={"KILL_AT": "n7"})
    assert killed.returncode != 0
    assert json.loads(total.read_text()) == {"total": 55}
    again = run_luisy(["run", "red.tasks:Total"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(total.read_text()) == {"total": 55 + 36 + 49}
    assert "reduce: Total(): 2 folded, 0 unfolded" in again.stdout
    # The state published and the output not (as if killed between the two): the rerun folds
    # nothing and writes the output from the state.
    state = next((data / "red" / "final" / STATE_DIR).iterdir())
    before = state.read_bytes()
    (folder / "n0.json").write_text(json.dumps({"value": 10}))
    assert run_luisy(["run", "red.tasks:Total"], cwd=tmp_path).returncode == 0
    assert json.loads(total.read_text()) == {"total": 240}
    total.write_text('{"total": 140}')  # the output of the run before
    shutil.rmtree(data / "red" / ".luisy-records")
    assert state.read_bytes() != before
    fixed = run_luisy(["run", "red.tasks:Total"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(total.read_text()) == {"total": 240}
    assert "reduce: Total(): 0 folded, 0 unfolded" in fixed.stdout


def test_the_journal_records_what_a_reduce_folded(tmp_path):
    write_project(tmp_path, PROJECT)
    folder = tmp_path / "data" / "red" / "raw" / "numbers"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps({"value": 3}))
    assert run_luisy(["run", "red.tasks:Total"], cwd=tmp_path).returncode == 0
    (folder / "b.json").write_text(json.dumps({"value": 4}))
    assert run_luisy(["run", "red.tasks:Total"], cwd=tmp_path).returncode == 0
    history = run_luisy(["history", "--json"], cwd=tmp_path)
    runs = [r for r in json.loads(history.stdout) if r["task"] == "Total()"]
    assert sorted(r["items"]["folded"] for r in runs) == [1, 1], runs
    shown = run_luisy(["history"], cwd=tmp_path).stdout
    assert "1 folded, 0 unfolded (all again)" in shown and "1 folded, 0 unfolded" in shown


def test_with_combine_a_first_run_folds_parts_in_item_processes(red):
    tasks, folder, data = red
    Everywhere = tasks.Everywhere  # noqa: N806 - a class
    for i in range(300):
        (folder / f"n{i:03d}.json").write_text(json.dumps({"value": i}))
    summary = luisy.execution.run([Everywhere()], working_dir=data, processes=2)
    assert summary.ok, summary.lines()
    found = json.loads(next(data.rglob("final/Everywhere.json")).read_text())
    assert found["sum"] == sum(i * i for i in range(300))
    assert len(found["pids"]) == 2 and os.getpid() not in found["pids"], found  # two item processes
    # One more item: folded here, into the combined state.
    (folder / "n300.json").write_text(json.dumps({"value": 300}))
    summary = luisy.execution.run([Everywhere()], working_dir=data, processes=2)
    assert summary.reduced == [("Everywhere()", {"folded": 1, "unfolded": 0, "refolded": None})]
    found = json.loads(next(data.rglob("final/Everywhere.json")).read_text())
    assert found["sum"] == sum(i * i for i in range(301)) and os.getpid() in found["pids"]
