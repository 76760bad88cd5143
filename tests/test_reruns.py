"""Reruns driven by fingerprints, end to end through the ``luisy`` command.

Each step edits the project or its data, asks ``luisy plan`` why, then runs and checks that
exactly the affected tasks ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import pytest
from conftest import run_luisy, write_project

from luisy.directory import MANIFEST_NAME
from luisy.directory.manifest import Manifest

PROJECT = {
    "rr/__init__.py": "",
    "rr/helpers.py": '''
        FACTOR = 2


        def double(x):
            return x * FACTOR
    ''',
    "rr/tasks.py": '''
        import luisy
        from rr.helpers import double


        @luisy.raw
        @luisy.json_output
        class Raw(luisy.ExternalTask):
            pass


        @luisy.interim
        @luisy.requires(Raw)
        @luisy.json_output
        class Doubled(luisy.Task):
            """Doubles every value."""

            def run(self):
                self.write([double(v) for v in self.read_input()])


        @luisy.interim
        @luisy.requires(Doubled)
        @luisy.auto_filename(excl_params=["label"])
        @luisy.json_output
        class Total(luisy.Task):
            label = luisy.Parameter(default="a")

            def run(self):
                self.write({"total": sum(self.read_input()), "label": self.label})


        @luisy.interim
        @luisy.requires(Raw)
        @luisy.json_output
        class Count(luisy.Task):
            def run(self):
                self.write({"count": len(self.read_input())})


        @luisy.final
        @luisy.json_output
        class Dynamic(luisy.Task):
            def run(self):
                total = yield Total()
                self.write(total.read())


        class All(luisy.WrapperTask):
            def requires(self):
                return [Total(), Count(), Dynamic()]
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    raw = tmp_path / "data" / "rr" / "raw" / "Raw.json"
    raw.parent.mkdir(parents=True)
    raw.write_text("[1, 2, 3]")
    return tmp_path


def _edit(project, rel, old, new):
    path = project / rel
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _plan(project, *args):
    result = run_luisy(["plan", "rr.tasks:All", *args], cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ran(project, *args):
    """Run All; return the set of task families that ran."""
    result = run_luisy(["run", "rr.tasks:All", "-v", *args], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return set(re.findall(r"\) done\s+(\w+)\(", result.stderr))


def _total(project):
    return json.loads((project / "data" / "rr" / "interim" / "Total.json").read_text())


def test_reruns_exactly_what_changed_and_plan_says_why(project):
    assert _ran(project) == {"Doubled", "Total", "Count", "Dynamic", "All"}
    assert _plan(project).startswith("nothing to run")
    assert _ran(project) == set()

    # A docstring and a comment: nothing reruns.
    _edit(project, "rr/tasks.py", '"""Doubles every value."""', '"""Doubles each value.  # really"""\n')
    assert _plan(project).startswith("nothing to run")

    # A task's code: it and its downstream rerun (Dynamic through its recorded dynamic requirement).
    _edit(project, "rr/tasks.py", "[double(v) for v", "[double(v) + 1 for v")
    plan = _plan(project)
    assert "Doubled(): code changed: rr.tasks:Doubled" in plan
    assert "Total(label=a): upstream changed: Doubled()" in plan
    assert "Dynamic(): upstream changed: Total(label=a)" in plan
    assert "Count()" not in plan
    assert _ran(project) == {"Doubled", "Total", "Dynamic", "All"}
    assert _total(project)["total"] == 15

    # A helper module: its users rerun.
    _edit(project, "rr/helpers.py", "FACTOR = 2", "FACTOR = 3")
    assert "Doubled(): code changed: rr.helpers:FACTOR" in _plan(project)
    assert _ran(project) == {"Doubled", "Total", "Dynamic", "All"}
    assert _total(project)["total"] == 21

    # Raw data: what reads it reruns.
    raw = project / "data" / "rr" / "raw" / "Raw.json"
    raw.write_text("[1, 2, 3, 4]")
    plan = _plan(project)
    assert "Doubled(): input data changed: Raw()" in plan and "Count(): input data changed: Raw()" in plan
    assert _ran(project) == {"Doubled", "Total", "Count", "Dynamic", "All"}

    # A parameter left out of the file name: same output, new value → it reruns.
    assert "Total(label=b): parameters changed: label a → b" in _plan(project, "--Total-label", "b")

    # A refactor accepted with --hash-update-mode reruns nothing, and runs nothing itself.
    _edit(project, "rr/tasks.py", "[double(v) + 1 for v in self.read_input()]",
          "[double(value) + 1 for value in self.read_input()]")
    assert "Doubled(): code changed" in _plan(project)
    before = _total(project)
    accepted = run_luisy(["run", "rr.tasks:All", "--hash-update-mode"], cwd=project)
    assert accepted.returncode == 0 and "nothing was run" in accepted.stdout
    assert _total(project) == before
    assert _plan(project).startswith("nothing to run")
    assert _ran(project) == set()


def test_dry_run_and_plan_write_nothing(project):
    def snapshot():
        return {p: p.stat().st_mtime_ns for p in (project / "data").rglob("*")}

    before = snapshot()
    dry = run_luisy(["run", "rr.tasks:All", "--dry-run"], cwd=project)
    assert dry.returncode == 0 and "Doubled(): no output" in dry.stdout
    assert "Dynamic(): no output" in dry.stdout
    assert snapshot() == before


def test_1x_hash_string_is_reported_and_accepted(project):
    assert _ran(project)
    (project / "data" / "rr" / ".luisy.hash").write_text(json.dumps({"rr/interim/Count.json": "0123abcd"}))
    for record in (project / "data" / "rr" / ".luisy-records").glob("rr~interim~Count.*"):
        record.unlink()  # as if luisy 1.x had made the output
    assert "Count(): fingerprint recorded by luisy 1.x" in _plan(project)
    run_luisy(["--module", "rr.tasks", "All", "--hash-update-mode", "--no-ask"], cwd=project)
    assert _plan(project).startswith("nothing to run")


def _count_record(project):
    return next((project / "data" / "rr" / ".luisy-records").glob("rr~interim~Count.*"))


def test_a_record_of_the_wrong_shape_makes_the_task_run_again(project):
    assert _ran(project)
    path = _count_record(project)
    record = json.loads(path.read_text())
    for field in ("code", "params", "upstream", "versions"):
        path.write_text(json.dumps({**record, "fingerprint": "x", field: [1]}))
        assert "  Count(): no fingerprint recorded" in _plan(project), field
        status = run_luisy(["status", "rr.tasks:All"], cwd=project)
        assert status.returncode == 1 and "Traceback" not in status.stderr, (field, status.stderr)
    # Also where luisy 1.x's hash file holds a record of that shape.
    path.unlink()
    (project / "data" / "rr" / ".luisy.hash").write_text(json.dumps({"rr/interim/Count.json": {
        **record, "fingerprint": "x", "code": [], "params": [1]}}))
    assert "  Count(): no fingerprint recorded" in _plan(project)
    assert _ran(project) == {"Count", "All"}
    assert _plan(project).startswith("nothing to run")


def test_plan_escapes_control_characters_from_a_record(project):
    assert _ran(project)
    path = _count_record(project)
    escapes = "\x1b]0;owned\x07\x1b[2J\x9b1m"
    path.write_text(json.dumps({**json.loads(path.read_text()), "fingerprint": "x",
                                "params": {f"a{escapes}": escapes}, "versions": {f"lu{escapes}": escapes},
                                "code": {f"m{escapes}:X": "y"}}))
    plan = _plan(project)
    assert "\x1b" not in plan and "\x07" not in plan and "\x9b" not in plan, plan
    assert "a\\x1b]0;owned\\x07" in plan and "m\\x1b]0;owned\\x07" in plan and "lu\\x1b]0;" in plan, plan


def test_two_workers_record_every_task(project):
    assert _ran(project, "--workers", "2") == {"Doubled", "Total", "Count", "Dynamic", "All"}
    folder = project / "data" / "rr" / ".luisy-records"
    records = {path.name.split(".")[0] for path in folder.iterdir()}
    assert records == {"rr~interim~Doubled", "rr~interim~Total", "rr~interim~Count", "rr~final~Dynamic"}
    assert all(json.loads(path.read_text())["fingerprint"] for path in folder.iterdir())
    assert _plan(project).startswith("nothing to run")
    assert not [p for p in (project / "data").rglob("*") if ".luisy-tmp" in p.name]


DIRECTORY_PROJECT = {
    "dd/__init__.py": "",
    "dd/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Pages(luisy.ExternalTask):
            def get_folder_name(self):
                return "pages"


        @luisy.interim
        @luisy.requires(Pages)
        @luisy.directory_output(format="json")
        class Counted(luisy.DirectoryTask):
            def process(self, name, obj):
                return {"chars": len(obj)}


        @luisy.raw
        @luisy.text_output
        class Settings(luisy.ExternalTask):
            fingerprint_content = True  # compared by checksum, not by size and mtime


        @luisy.requires(Settings)
        @luisy.text_output
        class Configured(luisy.Task):
            def run(self):
                self.write(self.read_input().upper())


        class Broken(luisy.Task):
            def run(self):
                self.write("half")
                raise RuntimeError("fails after writing")


        @luisy.requires(Counted)
        @luisy.json_output
        class Total(luisy.Task):
            def run(self):
                self.write({"chars": sum(item["chars"] for item in self.input().read())})


        class Chain(luisy.WrapperTask):
            def requires(self):
                return [Total(), Configured()]
    ''',
}


@pytest.fixture
def dir_project(tmp_path):
    write_project(tmp_path, DIRECTORY_PROJECT)
    pages = tmp_path / "data" / "dd" / "raw" / "pages"
    pages.mkdir(parents=True)
    for i in range(4):
        (pages / f"p{i}.txt").write_text("x" * i)
    (tmp_path / "data" / "dd" / "raw" / "Settings.txt").write_text("abc")
    return tmp_path


def _items_written(project):
    result = run_luisy(["run", "dd.tasks:Counted"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return re.search(r"items: Counted\(\): (\d+) processed", result.stdout)


def test_directory_task_reasons_and_code_change_reprocesses_everything(dir_project):
    assert _items_written(dir_project)[1] == "4"
    pages = dir_project / "data" / "dd" / "raw" / "pages"
    (pages / "p9.txt").write_text("new")
    (pages / "p8.txt").write_text("new too")
    (pages / "p1.txt").write_text("changed")
    (pages / "p0.txt").unlink()
    plan = run_luisy(["plan", "dd.tasks:Counted"], cwd=dir_project).stdout
    assert "Counted(): 2 new, 1 changed, 1 removed items" in plan
    assert _items_written(dir_project)[1] == "3"

    _edit(dir_project, "dd/tasks.py", '{"chars": len(obj)}', '{"chars": len(obj), "v": 2}')
    plan = run_luisy(["plan", "dd.tasks:Counted"], cwd=dir_project).stdout
    assert "Counted(): code changed: dd.tasks:Counted; every item is processed again" in plan
    assert _items_written(dir_project)[1] == "5"


def test_content_fingerprint_ignores_touch_but_sees_edits(dir_project):
    assert run_luisy(["run", "dd.tasks:Configured"], cwd=dir_project).returncode == 0
    settings = dir_project / "data" / "dd" / "raw" / "Settings.txt"
    os.utime(settings, ns=(1, 1))  # same content, another mtime
    assert run_luisy(["plan", "dd.tasks:Configured"], cwd=dir_project).stdout.startswith("nothing to run")
    settings.write_text("abd")
    assert "Configured(): input data changed: Settings()" in run_luisy(["plan", "dd.tasks:Configured"],
                                                                         cwd=dir_project).stdout


def test_a_failed_task_records_no_fingerprint(dir_project):
    result = run_luisy(["run", "dd.tasks:Broken"], cwd=dir_project)
    assert result.returncode == 1
    assert not list((dir_project / "data" / "dd").glob(".luisy-records/*Broken*"))
    assert not (dir_project / "data" / "Broken.pkl").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_task_after_a_directory_task_is_complete_after_one_run(dir_project, workers):
    # Within a run, what a task contributes downstream is remembered; a directory task changes
    # its contribution by running, also in another worker process.
    first = run_luisy(["run", "dd.tasks:Chain", "--workers", workers], cwd=dir_project)
    assert first.returncode == 0, first.stdout + first.stderr
    plan = run_luisy(["plan", "dd.tasks:Chain"], cwd=dir_project)
    assert plan.stdout.startswith("nothing to run"), plan.stdout
    (dir_project / "data" / "dd" / "raw" / "pages" / "p9.txt").write_text("new page")
    again = run_luisy(["run", "dd.tasks:Chain", "--workers", workers], cwd=dir_project)
    assert again.returncode == 0 and json.loads((dir_project / "data" / "Total.json").read_text()) == {"chars": 14}
    assert run_luisy(["plan", "dd.tasks:Chain"], cwd=dir_project).stdout.startswith("nothing to run")


STACKED_PROJECT = {
    "st/__init__.py": "",
    "st/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Pages(luisy.ExternalTask):
            def get_folder_name(self):
                return "pages"


        @luisy.interim
        @luisy.requires(Pages)
        @luisy.directory_output(format="json")
        class Up(luisy.DirectoryTask):
            def process(self, name, obj):
                return {"text": obj}


        @luisy.interim
        @luisy.requires(Up)
        @luisy.directory_output(format="json")
        class Down(luisy.DirectoryTask):
            def process(self, name, obj):
                return {"upper": obj["text"].upper()}


        @luisy.final
        @luisy.requires(Down)
        @luisy.json_output
        class Joined(luisy.Task):
            def run(self):
                self.write(sorted(item["upper"] for item in self.input().read()))
    ''',
}


@pytest.mark.parametrize("root", ["Down", "Joined"])
@pytest.mark.parametrize("how", ["deleted", "repaired"])
def test_a_lost_upstream_output_is_made_again_before_the_downstream(tmp_path, root, how):
    # A missing input makes a directory task complete only where nobody can make the input (an
    # external folder); an upstream task's output that went away is made again, and what is made
    # from it follows in the same run.
    write_project(tmp_path, STACKED_PROJECT)
    pages = tmp_path / "data" / "st" / "raw" / "pages"
    pages.mkdir(parents=True)
    (pages / "a.txt").write_text("one")
    first = run_luisy(["run", f"st.tasks:{root}"], cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    up = tmp_path / "data" / "st" / "interim" / "Up"
    if how == "deleted":
        shutil.rmtree(up)
    else:  # a manifest luisy verify --repair removes as corrupt
        (up / MANIFEST_NAME).write_text("not a manifest")
        repaired = run_luisy(["verify", f"st.tasks:{root}", "--repair"], cwd=tmp_path)
        assert repaired.returncode == 0 and "repaired" in repaired.stdout, repaired.stdout + repaired.stderr
    (pages / "a.txt").write_text("two")
    plan = run_luisy(["plan", f"st.tasks:{root}"], cwd=tmp_path)
    assert "Down()" in plan.stdout and "Up()" in plan.stdout, plan.stdout
    again = run_luisy(["run", f"st.tasks:{root}"], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    down = tmp_path / "data" / "st" / "interim" / "Down"
    item = Manifest.read(down).items["a"].file  # a new name while readers may hold the old one
    assert json.loads((down / item).read_text()) == {"upper": "TWO"}
    if root == "Joined":
        assert json.loads((tmp_path / "data" / "st" / "final" / "Joined.json").read_text()) == ["TWO"]
    assert run_luisy(["plan", f"st.tasks:{root}"], cwd=tmp_path).stdout.startswith("nothing to run")


NOTE_PROJECT = {
    "nt/__init__.py": "",
    "nt/tasks.py": '''
        import luigi

        import luisy

        CALLS = []


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Pages(luisy.ExternalTask):
            def get_folder_name(self):
                return "pages"


        @luisy.interim
        @luisy.requires(Pages)
        @luisy.directory_output(format="json")
        class Counted(luisy.DirectoryTask):
            note = luigi.Parameter(default="a", significant=False)

            def process(self, name, obj):
                return {"chars": len(obj)}


        @luisy.requires(Counted)
        @luisy.json_output
        class Total(luisy.Task):
            note = luigi.Parameter(default="a", significant=False)

            def run(self):
                self.write({"chars": sum(item["chars"] for item in self.input().read())})
    ''',
}


@pytest.mark.parametrize("task", ["Counted", "Total"])
def test_an_insignificant_parameter_reruns_nothing(tmp_path, task):
    write_project(tmp_path, NOTE_PROJECT)
    pages = tmp_path / "data" / "nt" / "raw" / "pages"
    pages.mkdir(parents=True)
    (pages / "p.txt").write_text("abc")
    first = run_luisy(["run", f"nt.tasks:{task}", "--note", "a"], cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    plan = run_luisy(["plan", f"nt.tasks:{task}", "--note", "b"], cwd=tmp_path)
    assert plan.stdout.startswith("nothing to run"), plan.stdout
    again = run_luisy(["run", f"nt.tasks:{task}", "--note", "b"], cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("nothing to run"), again.stdout + again.stderr


def test_a_manifest_that_recorded_insignificant_parameters_stays_complete(tmp_path, monkeypatch):
    # luisy before 2.0 recorded every parameter in a directory output's manifest.
    write_project(tmp_path, NOTE_PROJECT)
    pages = tmp_path / "data" / "nt" / "raw" / "pages"
    pages.mkdir(parents=True)
    (pages / "p.txt").write_text("abc")
    assert run_luisy(["run", "nt.tasks:Counted"], cwd=tmp_path).returncode == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    from nt.tasks import Counted

    task = Counted(note="b")
    task.output().place.restamp(lambda manifest: dataclasses.replace(manifest, params={"note": "a"}))
    assert Manifest.read(task.output().folder).params == {"note": "a"}
    assert task.complete()


def test_plan_json_gives_each_reason_as_data(dir_project):
    assert _items_written(dir_project)[1] == "4"
    pages = dir_project / "data" / "dd" / "raw" / "pages"
    (pages / "p9.txt").write_text("new")
    (pages / "p1.txt").write_text("changed")

    def steps():
        data = json.loads(run_luisy(["plan", "dd.tasks:Counted", "--json"], cwd=dir_project).stdout)
        return {step["task"]: step["reasons"] for step in data["steps"]}

    assert steps() == {"Counted()": [{"kind": "items", "counts": {"new": 1, "changed": 1, "removed": 0},
                                      "text": "1 new, 1 changed, 0 removed items"}]}
    _edit(dir_project, "dd/tasks.py", '{"chars": len(obj)}', '{"chars": len(obj), "v": 2}')
    assert steps() == {"Counted()": [
        {"kind": "code", "names": ["dd.tasks:Counted"], "text": "code changed: dd.tasks:Counted"},
        {"kind": "every_item", "text": "every item is processed again"}]}


def test_why_in_detail_agrees_with_complete_in_every_state(dir_project, monkeypatch):
    monkeypatch.syspath_prepend(str(dir_project))
    monkeypatch.chdir(dir_project)
    from dd.tasks import Chain, Configured, Counted, Total

    from luisy.plan import reasons

    pages = dir_project / "data" / "dd" / "raw" / "pages"
    states = [lambda: None,
              lambda: run_luisy(["run", "dd.tasks:Chain"], cwd=dir_project),
              lambda: (pages / "p7.txt").write_text("seven"),
              lambda: (dir_project / "data" / "dd" / "raw" / "Settings.txt").write_text("other"),
              lambda: run_luisy(["run", "dd.tasks:Chain"], cwd=dir_project)]
    seen = set()
    for change in states:
        change()
        for task in (Counted(), Total(), Configured(), Chain()):
            complete = task.complete()
            assert (not reasons(task)) == complete, (task, reasons(task))
            seen.add(complete)
    assert seen == {True, False}
