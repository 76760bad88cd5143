"""A ``run()`` that returns without writing its output fails, saying so, in the summary, the status
table and the run journal (luigi itself counts it as a success)."""

from __future__ import annotations

import json

import pytest
from conftest import run_luisy, status_rows, write_project

PROJECT = {
    "nw/__init__.py": "",
    "nw/tasks.py": '''
        import luisy


        @luisy.final
        @luisy.json_output
        class Forgot(luisy.Task):
            year = luisy.IntParameter(default=2024)

            def run(self):
                self.result = {"rows": 3}  # computed, never written


        @luisy.final
        @luisy.directory_output(format="json")
        class NoRun(luisy.Task):
            pass


        @luisy.final
        class NoRunPickle(luisy.Task):
            pass


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Shouted(luisy.DirectoryTask):
            def process(self, name, text):
                return text.upper()

            def run(self):
                pass  # replaces DirectoryTask.run: process() is never called


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class ShoutedToo(Shouted):
            def run(self):
                yield from ()
                super(Shouted, self).run()


        @luisy.final
        @luisy.json_output
        class Writes(luisy.Task):
            def run(self):
                self.write({"rows": 3})


        class All(luisy.WrapperTask):
            def requires(self):
                return [Writes(), ShoutedToo()]
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "nw" / "raw" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.txt").write_text("hello")
    return tmp_path


@pytest.mark.parametrize("task, output, hint", [
    ("Forgot(year=2024)", "final/Forgot_year=2024.json", ""),
    ("NoRun()", "final/NoRun", ": NoRun defines no run(); a luisy.DirectoryTask makes a directory output "
                               "from process()"),
    ("NoRunPickle()", "final/NoRunPickle.pkl", ": NoRunPickle defines no run()"),
    ("Shouted()", "interim/Shouted", ": Shouted.run() replaces DirectoryTask.run(), which calls process() for "
                                     "each item and writes the output; call super().run() from it, or write with "
                                     "self.output().writer(self)"),
])
def test_a_run_that_writes_nothing_fails_with_the_reason(project, task, output, hint):
    family = task.split("(")[0]
    reason = f"{task}.run() finished without writing its output ({project / 'data' / 'nw' / output}){hint}"
    run = run_luisy(["run", f"nw.tasks:{family}"], cwd=project)
    assert run.returncode == 1
    assert f"NOT complete: {task}" in run.stdout
    assert f"  failed: {reason}" in run.stdout.splitlines()
    assert "ran:" not in run.stdout
    status = status_rows(run_luisy(["status", f"nw.tasks:{family}"], cwd=project).stdout)
    assert status[task]["last result"].startswith("FAIL: OutputNotWrittenError: ")
    [entry] = json.loads(run_luisy(["history", family, "--json"], cwd=project).stdout)
    assert (entry["state"], entry["error"]) == ("FAIL", f"OutputNotWrittenError: {reason}")


def test_runs_that_write_their_output_still_succeed(project):
    """A plain run(), a generator run() that writes through DirectoryTask.run(), and a WrapperTask
    (which writes nothing, and is not journaled)."""
    run = run_luisy(["run", "nw.tasks:All"], cwd=project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (project / "data" / "nw" / "final" / "Writes.json").read_text() == '{"rows": 3}'
    assert (project / "data" / "nw" / "interim" / "ShoutedToo" / "a.txt").read_text() == "HELLO"
    history = run_luisy(["history"], cwd=project).stdout
    assert "All()" not in history and "FAIL" not in history
