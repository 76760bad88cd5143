"""What a new user meets in the first hour, through the real ``luisy`` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import run_luisy, status_rows, write_project

PROJECT = {
    "fh/__init__.py": "",
    "fh/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.csv_output(sep=";")
        class Export(luisy.ExternalTask):
            def get_file_name(self):
                return "export"


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Export)
        class Cleaned(luisy.Task):
            min_units = luisy.IntParameter(default=1)

            def run(self):
                df = self.read_input()
                self.write(df[df["units"] >= self.min_units])


        @luisy.final
        @luisy.requires(Cleaned)
        @luisy.json_output
        class Report(luisy.Task):
            def run(self):
                self.write({"units": int(self.read_input()["units"].sum())})


        @luisy.requires(Notes, Export)
        class Both(luisy.Task):
            def run(self):
                self.write(1)
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    (tmp_path / "data").mkdir()
    return tmp_path


def _raw(project):
    raw = project / "data" / "fh" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "export.csv").write_text("product;units\na;1\nb;5\n")


@pytest.mark.slow
def test_missing_inputs_are_named_with_the_path_they_are_expected_at(project):
    export = project / "data" / "fh" / "raw" / "export.csv"
    notes = project / "data" / "fh" / "raw" / "notes"
    run = run_luisy(["run", "fh.tasks:Both"], cwd=project)
    assert run.returncode == 1
    assert f"missing input: Export() (expected at {export})" in run.stdout
    assert f"missing input: Notes() (expected at {notes})" in run.stdout
    plan = run_luisy(["plan", "fh.tasks:Both"], cwd=project).stdout.splitlines()
    assert plan[0] == "1 task(s) would run, upstream first:", "inputs that cannot run are not counted"
    assert f"missing input: Export() (expected at {export})" in plan
    rows = status_rows(run_luisy(["status", "fh.tasks:Both"], cwd=project).stdout)
    assert rows["Notes()"]["fingerprint"] == f"missing input (expected at {notes})"


def test_a_run_with_nothing_to_do_says_so(project):
    _raw(project)
    assert run_luisy(["run", "fh.tasks:Report"], cwd=project).returncode == 0
    again = run_luisy(["run", "fh.tasks:Report"], cwd=project)
    assert again.returncode == 0 and again.stdout.startswith("nothing to run: Report(min_units=1) is complete")


def test_a_family_value_no_task_of_the_graph_takes_is_warned_about(project):
    _raw(project)
    result = run_luisy(["run", "fh.tasks:Report", "--Cleaned-min-units", "4"], cwd=project)
    assert result.returncode == 0
    assert ("luisy: warning: --Cleaned-min-units 4 is not used: Cleaned in Report(min_units=1)'s graph gets its "
            "min_units from the task that requires it") in result.stderr
    used = run_luisy(["run", "fh.tasks:Report", "--min-units", "4"], cwd=project)
    assert "warning" not in used.stderr


def test_a_package_that_cannot_be_imported_gets_a_hint(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_luisy(["run", "fh.tasks:Report", "--working-dir", str(project / "data")], cwd=elsewhere)
    assert result.returncode == 2
    assert "No module named 'fh'" in result.stderr and "run luisy from the project's root folder" in result.stderr


def test_build_from_python_is_as_quiet_as_the_command_and_import_warns_nothing(project):
    _raw(project)
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    code = ("import luisy; from fh.tasks import Report; luisy.set_working_dir('data'); "
            "assert luisy.build([Report()])")
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], cwd=project,
                            env={**env, "PYTHONPATH": str(project)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "INFO" not in result.stderr and "DEBUG" not in result.stderr, result.stderr
