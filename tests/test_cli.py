from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

PROJECT = {
    "clipkg/__init__.py": "",
    "clipkg/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.text_output
        class Given(luisy.ExternalTask):
            pass


        @luisy.final
        @luisy.text_output
        class Greet(luisy.Task):
            name = luisy.Parameter(default="world")
            times = luisy.IntParameter(default=1)

            def run(self):
                self.write(" ".join(["hello " + self.name] * self.times))


        @luisy.requires(Greet)
        @luisy.text_output
        class Shout(luisy.Task):
            def run(self):
                self.write(self.read_input().upper())


        class Needs(luisy.Task):
            level = luisy.IntParameter()
            columns = luisy.ListParameter(default=["a", "b"])


        @luisy.requires(Given)
        class UsesGiven(luisy.Task):
            def run(self):
                self.write(self.read_input())


        class Explodes(luisy.Task):
            def run(self):
                raise ValueError("the input has no header row")


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.requires(Notes)
        @luisy.directory_output(format="json")
        class WhoProcessed(luisy.DirectoryTask):
            def process(self, name, obj):
                import os

                return {"pid": os.getpid(), "ppid": os.getppid()}
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    (tmp_path / "data").mkdir()
    return tmp_path


def _single_error_line(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("luisy: error: ")
    return lines[0]


def test_run_with_parameters(project):
    result = run_luisy(["run", "clipkg.tasks:Greet", "--name", "ada", "--times", "2"], cwd=project)
    assert result.returncode == 0, result.stderr
    out = project / "data" / "clipkg" / "final" / "Greet_name=ada_times=2.txt"
    assert out.read_text() == "hello ada hello ada"
    assert f"output: {out}" in result.stdout


def test_dotted_task_form_and_task_prefixed_parameters(project):
    result = run_luisy(["run", "clipkg.tasks.Shout", "--Greet-name", "x", "--name", "bob"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "data" / "Shout_name=bob_times=1.txt").read_text() == "HELLO BOB"


def test_python_dash_m(project):
    result = subprocess.run([sys.executable, "-m", "luisy", "run", "clipkg.tasks:Greet"], cwd=project,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (project / "data" / "clipkg" / "final" / "Greet_name=world_times=1.txt").exists()


def test_help_shows_an_example(project):
    for args in (["--help"], ["run", "--help"]):
        result = run_luisy(args, cwd=project)
        assert result.returncode == 0 and "Example:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["run", "clipkg.tasks:Nope"], "module 'clipkg.tasks' has no task 'Nope'; tasks defined there: "),
    (["run", "nopkg.tasks:Greet"], "cannot import module 'nopkg.tasks'"),
    (["run", "Greet"], "task 'Greet' is not of the form module:Class"),
    (["run", "clipkg.tasks:Greet", "--nmae", "x"], "Greet: unrecognized arguments: --nmae x (parameters of Greet: "),
    (["run", "clipkg.tasks:Greet", "--tim", "3"], "Greet: unrecognized arguments: --tim 3"),  # whole names only
    (["run", "clipkg.tasks:Greet", "--times", "many"], "Greet: bad value 'many' for --times"),
    (["run", "clipkg.tasks:Needs"], "Needs: requires the 'level' parameter to be set"),
    (["run", "clipkg.tasks:Needs", "--columns", '["x: y"]'], "error: Needs: requires the 'level' parameter to be set"),
    (["run", "clipkg.tasks:Greet", "--working-dir", "missing_dir"], "working directory"),
    (["--module", "clipkg.tasks", "Nope", "--no-ask"], "has no task 'Nope'"),
])
def test_bad_input_is_one_clear_line(project, args, message):
    line = _single_error_line(run_luisy(args, cwd=project))
    assert message in line


def test_missing_working_dir_names_it(project):
    line = _single_error_line(run_luisy(["run", "clipkg.tasks:Greet", "--working-dir", "nowhere"], cwd=project))
    assert str(project / "nowhere") in line and "does not exist" in line


@pytest.mark.parametrize("what", ["a FIFO", "a character device"])
def test_a_working_dir_that_is_no_folder_says_what_it_is(project, what):
    place = project / "pipe" if what == "a FIFO" else Path("/dev/zero")
    if what == "a FIFO":
        os.mkfifo(place)
    for command in (["run", "clipkg.tasks:Greet"], ["history"]):
        result = run_luisy([*command, "--working-dir", str(place)], cwd=project, timeout=60)
        line = _single_error_line(result)
        assert result.returncode == 2 and f"working directory {place} is {what}, not a folder" in line, line


@pytest.mark.parametrize("command", [["run", "clipkg.tasks:Greet"], ["history"], ["show", "out.txt"]])
def test_an_empty_working_dir_is_one_line(project, command):
    result = run_luisy([*command, "--working-dir", ""], cwd=project, timeout=60)
    line = _single_error_line(result)
    assert result.returncode == 2 and "--working-dir is empty" in line, line
    assert not (project / "clipkg" / "final").exists(), "nothing ran in the current directory"


def test_failed_task_exit_status_and_first_error_line(project):
    result = run_luisy(["run", "clipkg.tasks:Explodes"], cwd=project)
    assert result.returncode == 1
    assert "NOT complete: Explodes()" in result.stdout
    assert "failed: Explodes(): ValueError: the input has no header row" in result.stdout


def test_missing_input_exit_status(project):
    result = run_luisy(["run", "clipkg.tasks:UsesGiven"], cwd=project)
    assert result.returncode == 1
    assert "missing input: Given()" in result.stdout


def test_already_complete_is_success(project):
    assert run_luisy(["run", "clipkg.tasks:Greet"], cwd=project).returncode == 0
    again = run_luisy(["run", "clipkg.tasks:Greet"], cwd=project)
    assert again.returncode == 0 and "already done: 1 task(s)" in again.stdout


def test_working_dir_from_environment(project, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    result = run_luisy(["run", "clipkg.tasks:Greet"], cwd=project, env={"LUISY_WORKING_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    assert (other / "clipkg" / "final" / "Greet_name=world_times=1.txt").exists()


@pytest.mark.parametrize("processes", [None, 2])
def test_processes_option_spreads_items_over_a_pool(project, processes):
    notes = project / "data" / "clipkg" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(6):
        (notes / f"n{i}.txt").write_text(str(i))
    extra = ["--processes", str(processes)] if processes else []
    result = run_luisy(["run", "clipkg.tasks:WhoProcessed", *extra], cwd=project)
    assert result.returncode == 0, result.stderr
    out = project / "data" / "WhoProcessed"
    seen = [json.loads(p.read_text()) for p in out.glob("n*.json")]
    pids, parents = {s["pid"] for s in seen}, {s["ppid"] for s in seen}
    if processes is None:  # all in the luisy process, a child of this one
        assert len(seen) == 6 and len(pids) == 1 and parents == {os.getpid()}
    else:  # in two children of the luisy process
        assert len(seen) == 6 and len(pids) == 2 and len(parents) == 1 and not parents & (pids | {os.getpid()})


@pytest.mark.parametrize("args,option", [
    (["items", "clipkg.tasks:WhoProcessed", "--limit", "9" * 23], "--limit"),
    (["watch", "clipkg.tasks:WhoProcessed", "--settle", "nan"], "--settle"),
    (["watch", "clipkg.tasks:WhoProcessed", "--settle", "inf"], "--settle"),
    (["watch", "clipkg.tasks:WhoProcessed", "--interval", "NaN"], "--interval"),
    (["watch", "clipkg.tasks:WhoProcessed", "--interval", "1e400"], "--interval"),
])
def test_numbers_no_count_or_timer_can_take_are_refused(project, args, option):
    notes = project / "data" / "clipkg" / "raw" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.txt").write_text("a")
    assert run_luisy(["run", "clipkg.tasks:WhoProcessed"], cwd=project).returncode == 0
    result = run_luisy(args, cwd=project, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: Invalid value for '{option}': ")
