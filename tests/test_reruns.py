"""Reruns driven by fingerprints, end to end through the ``luisy`` command (§6, issue 4).

Each step edits the project or its data, asks ``luisy plan`` why, then runs and checks that
exactly the affected tasks ran.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_luisy, write_project

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
    hash_file = project / "data" / "rr" / ".luisy.hash"
    records = json.loads(hash_file.read_text())
    records["rr/interim/Count.json"] = "0123abcd"  # what luisy 1.x stored
    hash_file.write_text(json.dumps(records))
    assert "Count(): fingerprint recorded by luisy 1.x" in _plan(project)
    run_luisy(["--module", "rr.tasks", "All", "--hash-update-mode", "--no-ask"], cwd=project)
    assert _plan(project).startswith("nothing to run")


def test_two_workers_record_every_task(project):
    assert _ran(project, "--workers", "2") == {"Doubled", "Total", "Count", "Dynamic", "All"}
    records = json.loads((project / "data" / "rr" / ".luisy.hash").read_text())
    assert set(records) == {"rr/interim/Doubled.json", "rr/interim/Total.json", "rr/interim/Count.json",
                            "rr/final/Dynamic.json"}
    assert _plan(project).startswith("nothing to run")
    assert not [p for p in (project / "data").rglob("*") if ".luisy-tmp" in p.name]
