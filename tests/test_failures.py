"""Failures a user can debug: where in their code an item or a task failed (in the run's output,
the manifest and the journal), which items failed (``luisy items``), and no luigi worker
traceback unless asked for with ``-v``."""

from __future__ import annotations

import json

import pytest
from conftest import run_luisy, write_project

PROJECT = {
    "dbg/__init__.py": "",
    "dbg/helpers.py": '''
        def lookup(table, key):
            return table[key]
    ''',
    "dbg/tasks.py": '''
        import os

        import luisy
        from dbg.helpers import lookup


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Lenient(luisy.DirectoryTask):
            on_error = "skip"
            processes = int(os.environ.get("PROCESSES", "1"))

            def process(self, name, obj):
                if name.startswith("bad"):
                    return lookup({}, name)
                return obj.upper()


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Strict(luisy.DirectoryTask):
            def process(self, name, obj):
                if name.startswith("bad"):
                    return lookup({}, name)
                return obj.upper()


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Noisy(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, obj):
                if name.startswith("bad"):
                    raise ValueError("\\x1b]0;owned\\x07\\x1b[2J " + name)
                return obj


        @luisy.final
        @luisy.text_output
        class Broken(luisy.Task):
            def run(self):
                lookup({}, "header")


        @luisy.final
        @luisy.parquet_output
        class WrongType(luisy.Task):
            def run(self):
                self.write({"a": 1})


        def read_as_if_huge(path):
            with open(path, "rb") as f:
                return f.read() + bytes(1 << 62)  # no memory holds it: what reading a 30 GB file raises


        @luisy.raw
        @luisy.directory_input(pattern="*.txt", read=read_as_if_huge)
        class HugeNotes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(HugeNotes)
        @luisy.directory_output(format="txt")
        class FromHuge(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, obj):
                return obj


        @luisy.final
        @luisy.text_output
        class Unsure(luisy.Task):
            def complete(self):
                return lookup({}, "done")
    ''',
}
WORKER = "luigi/worker.py"  # where luigi's own traceback of a failed task starts


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "dbg" / "raw" / "notes"
    notes.mkdir(parents=True)
    for name in ("bad1", "bad2", "bad3", "bad4", "ok1", "ok2"):
        (notes / f"{name}.txt").write_text(f"note {name}")
    return tmp_path


def _line_of(project, rel, text):
    """``File "...", line N, in function`` as Python prints it, for the line of ``rel`` holding ``text``."""
    path = project / rel
    number = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
    return f'File "{path}", line {number}'


def _journal(project, family):
    runs = json.loads(run_luisy(["history", family, "--json"], cwd=project).stdout)
    return runs[0]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_failed_item_shows_where_the_users_code_failed_in_the_run_manifest_and_journal(project, processes):
    result = run_luisy(["run", "dbg.tasks:Lenient"], cwd=project, env={"PROCESSES": processes})
    assert result.returncode == 1
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")
    caller = _line_of(project, "dbg/tasks.py", "return lookup({}, name)")
    out = result.stdout
    assert "    4 items failed (see: luisy items dbg.tasks:Lenient --failed)" in out
    notes = project / "data" / "dbg" / "raw" / "notes"
    assert f"    'bad1' (input file {notes / 'bad1.txt'}): KeyError: 'bad1'" in out
    assert f"{caller}, in process" in out and f"{helper}, in lookup" in out
    assert "'bad4'" not in out, "the summary names the first failures, not all"
    assert "luisy/directory/runner.py" not in out and "Traceback" not in out + result.stderr, out + result.stderr
    # The log line names the first failure and where it happened, in one line.
    assert f"at {project / 'dbg' / 'helpers.py'}:" in result.stderr and "('bad" not in result.stderr

    manifest = (project / "data" / "dbg" / "interim" / "Lenient" / "_luisy_manifest.json").read_text()
    details = json.loads(manifest.splitlines()[1])["failed_details"]
    assert sorted(details) == ["bad1", "bad2", "bad3", "bad4"]
    assert details["bad2"]["input"] == str(notes / "bad2.txt") and helper in details["bad2"]["traceback"]

    run = _journal(project, "Lenient")
    assert run["state"] == "SUCCESS" and run["items"]["failed"] == 4
    assert [f["name"] for f in sorted(run["failures"], key=lambda f: f["name"])] == ["bad1", "bad2", "bad3", "bad4"]
    assert all(helper in f["traceback"] and caller in f["traceback"] for f in run["failures"])


def test_luisy_items_lists_each_item_and_why_it_failed(project):
    run_luisy(["run", "dbg.tasks:Lenient"], cwd=project)
    notes = project / "data" / "dbg" / "raw" / "notes"
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")

    every = run_luisy(["items", "dbg.tasks:Lenient"], cwd=project)
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines() == [
        *(f"failed   bad{i}  {notes / f'bad{i}.txt'}  KeyError: 'bad{i}'" for i in (1, 2, 3, 4)),
        *(f"ok       ok{i}  {notes / f'ok{i}.txt'}" for i in (1, 2)),
    ]
    failed = run_luisy(["items", "dbg.tasks:Lenient", "--failed"], cwd=project).stdout.splitlines()
    assert failed == every.stdout.splitlines()[:4]

    verbose = run_luisy(["items", "dbg.tasks:Lenient", "--failed", "-v"], cwd=project).stdout
    assert verbose.count(f"{helper}, in lookup") == 4 and "luisy/directory/runner.py" not in verbose
    assert "luisy/directory/runner.py" in run_luisy(["items", "dbg.tasks:Lenient", "--failed", "-vv"],
                                                    cwd=project).stdout

    cut = run_luisy(["items", "dbg.tasks:Lenient", "--limit", "2"], cwd=project).stdout.splitlines()
    assert cut[:2] == every.stdout.splitlines()[:2] and cut[2].startswith("... and 4 more: --limit 0 lists them all")
    rows = json.loads(run_luisy(["items", "dbg.tasks:Lenient", "--failed", "--json"], cwd=project).stdout)
    assert [(r["name"], r["state"], r["error"]) for r in rows] == [(f"bad{i}", "failed", f"KeyError: 'bad{i}'")
                                                                   for i in (1, 2, 3, 4)]
    assert helper in rows[0]["traceback"]


def test_luisy_items_bad_lists_what_verify_found(project):
    run_luisy(["run", "dbg.tasks:Lenient"], cwd=project)
    folder = project / "data" / "dbg" / "interim" / "Lenient"
    (folder / "ok2.txt").unlink()
    assert run_luisy(["verify", "dbg.tasks:Lenient"], cwd=project).returncode == 1
    bad = run_luisy(["items", "dbg.tasks:Lenient", "--bad"], cwd=project)
    assert bad.stdout.splitlines() == [
        f"bad      ok2  {project / 'data' / 'dbg' / 'raw' / 'notes' / 'ok2.txt'}  "
        f"item 'ok2': {folder / 'ok2.txt'} is missing"]
    none = run_luisy(["items", "dbg.tasks:Lenient", "--kept"], cwd=project)
    assert none.stdout == "Lenient(): no items that are kept\n"


def test_luisy_items_of_a_task_without_items_is_one_line(project):
    result = run_luisy(["items", "dbg.tasks:Broken"], cwd=project)
    assert result.returncode == 2
    assert result.stderr == "luisy: error: Broken(): not a directory task, it has no items " \
                            "(see `luisy status` for its state)\n"


def test_an_item_failing_under_on_error_raise_shows_the_items_frames_not_luigis(project):
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")
    notes = project / "data" / "dbg" / "raw" / "notes"
    result = run_luisy(["run", "dbg.tasks:Strict"], cwd=project)
    assert result.returncode == 1
    line = f"  failed: Strict(): item 'bad1' (input file {notes / 'bad1.txt'}) failed: KeyError: 'bad1'\n"
    assert line in result.stdout
    assert f"{helper}, in lookup" in result.stdout
    both = result.stdout + result.stderr
    assert WORKER not in both and "luisy/tasks/directory.py" not in both and "Traceback" not in both, both
    run = _journal(project, "Strict")
    assert run["state"] == "FAIL" and helper in run["traceback"] and WORKER not in run["traceback"]

    verbose = run_luisy(["run", "dbg.tasks:Strict", "-v"], cwd=project)
    assert WORKER in verbose.stderr, "-v shows luigi's log with its traceback"
    assert "luisy/directory/runner.py" in verbose.stdout, "and the summary every frame"


def test_an_error_in_a_tasks_run_shows_the_users_frames_once(project):
    result = run_luisy(["run", "dbg.tasks:Broken"], cwd=project)
    assert result.returncode == 1
    run_line = _line_of(project, "dbg/tasks.py", 'lookup({}, "header")')
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")
    assert "  failed: Broken(): KeyError: 'header'\n" in result.stdout
    assert f"{run_line}, in run" in result.stdout and f"{helper}, in lookup" in result.stdout
    both = result.stdout + result.stderr
    assert WORKER not in both and "luisy/tasks/running.py" not in both and "Traceback" not in both, both
    run = _journal(project, "Broken")
    assert run["error"] == "KeyError: 'header'" and helper in run["traceback"]

    verbose = run_luisy(["run", "dbg.tasks:Broken", "-v"], cwd=project)
    assert WORKER in verbose.stderr and WORKER in verbose.stdout


def test_an_error_in_a_tasks_complete_shows_the_users_frames_not_luigis_log(project):
    result = run_luisy(["run", "dbg.tasks:Unsure"], cwd=project)
    assert result.returncode == 1
    complete_line = _line_of(project, "dbg/tasks.py", 'return lookup({}, "done")')
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")
    assert "  failed: Unsure(): KeyError: 'done'\n" in result.stdout
    assert f"{complete_line}, in complete" in result.stdout and f"{helper}, in lookup" in result.stdout
    both = result.stdout + result.stderr
    assert WORKER not in both and "complete() method" not in both and "Traceback" not in both, both

    verbose = run_luisy(["run", "dbg.tasks:Unsure", "-v"], cwd=project)
    assert "error in complete() method" in verbose.stderr and WORKER in verbose.stderr, "-v keeps luigi's log"


def test_an_input_that_cannot_be_read_says_why_even_when_its_error_has_no_text(project):
    result = run_luisy(["run", "dbg.tasks:FromHuge"], cwd=project)
    assert result.returncode == 1 and "6 processed, 6 failed" in result.stdout, result.stdout
    path = project / "data" / "dbg" / "raw" / "notes" / "bad1.txt"
    assert f"cannot read {path}: MemoryError" in result.stdout, result.stdout


def test_a_luisy_error_is_one_line_naming_its_task_once(project):
    result = run_luisy(["run", "dbg.tasks:WrongType"], cwd=project)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "WrongType()" in line and "failed" in line]
    assert failed == ["  failed: WrongType(): parquet output takes a pandas DataFrame, got builtins.dict"]
    assert "Traceback" not in result.stdout + result.stderr and WORKER not in result.stderr
    assert result.stdout.splitlines()[-1] == failed[0], "nothing follows the one line"


def test_items_failed_after_an_item_stopped_the_run_tells_of_that_run(project):
    """Under on_error="raise" the failed item is in no manifest: the run published nothing."""
    helper = _line_of(project, "dbg/helpers.py", "return table[key]")
    notes = project / "data" / "dbg" / "raw" / "notes"
    assert run_luisy(["run", "dbg.tasks:Strict"], cwd=project).returncode == 1

    result = run_luisy(["items", "dbg.tasks:Strict", "--failed"], cwd=project)
    assert result.returncode == 0, result.stderr
    head, *rows = result.stdout.splitlines()
    assert head.startswith("Strict(): its last run (") and "failed and published nothing" in head, head
    assert 'on_error="raise"' in head, head
    assert rows == [f"  failed   bad1  {notes / 'bad1.txt'}  KeyError: 'bad1'"]
    verbose = run_luisy(["items", "dbg.tasks:Strict", "--failed", "-v"], cwd=project).stdout
    assert f"{helper}, in lookup" in verbose and "luisy/directory/runner.py" not in verbose

    run = _journal(project, "Strict")
    assert run["state"] == "FAIL" and [(f["name"], f["input"], f["error"]) for f in run["failures"]] == [
        ("bad1", str(notes / "bad1.txt"), "KeyError: 'bad1'")]
    assert helper in run["failures"][0]["traceback"]


def test_items_of_a_corrupt_manifest_is_one_line_saying_what_to_do(project):
    run_luisy(["run", "dbg.tasks:Lenient"], cwd=project)
    manifest = project / "data" / "dbg" / "interim" / "Lenient" / "_luisy_manifest.json"
    manifest.write_text("not a manifest\n")
    for options in ([], ["--failed"], ["--json"]):
        result = run_luisy(["items", "dbg.tasks:Lenient", *options], cwd=project)
        assert result.returncode == 2 and result.stdout == "", (options, result.stdout)
        assert result.stderr.startswith(f"luisy: error: Lenient(): {manifest} is corrupt") and \
            result.stderr.count("\n") == 1, result.stderr
        assert "luisy verify dbg.tasks:Lenient --repair" in result.stderr, result.stderr


def test_control_characters_of_an_items_error_never_reach_the_terminal_raw(project):
    ran = run_luisy(["run", "dbg.tasks:Noisy"], cwd=project)
    assert ran.returncode == 1
    assert "bad1" in ran.stderr and "\x1b" not in ran.stderr, ran.stderr  # the log line naming the first failure
    for options in (["--failed"], ["--failed", "-v"], ["--failed", "-vv"]):
        listed = run_luisy(["items", "dbg.tasks:Noisy", *options], cwd=project).stdout
        assert "\\x1b]0;owned\\x07\\x1b[2J bad1" in listed and "\x1b" not in listed and "\x07" not in listed, listed
    rows = json.loads(run_luisy(["items", "dbg.tasks:Noisy", "--failed", "--json"], cwd=project).stdout)
    assert rows[0]["error"] == "ValueError: \x1b]0;owned\x07\x1b[2J bad1"
