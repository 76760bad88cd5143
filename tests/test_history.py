"""The run journal, ``luisy history`` and the last run in ``luisy status``, with real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_luisy, status_rows, write_project

from luisy.errors import LuisyError
from luisy.history import journal
from luisy.history.runs import history, last_runs, parse_since

PROJECT = {
    "hist/__init__.py": "",
    "hist/tasks.py": '''
        import os
        import time
        from pathlib import Path

        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="json")
        class Parsed(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, obj):
                if "bad" in obj:
                    raise ValueError("cannot parse " + name)
                return {"words": len(obj.split())}


        @luisy.final
        @luisy.requires(Parsed)
        @luisy.json_output
        class Words(luisy.Task):
            def run(self):
                marker = os.environ.get("HIST_MARKER")
                if marker:  # the test kills the run here
                    Path(marker).write_text("running")
                    time.sleep(120)
                if os.environ.get("HIST_FAIL"):
                    raise ValueError("no words today\\nsecond line of the error")
                self.write({"total": sum(item["words"] for item in self.input().read())})
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "hist" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"n{i}.txt").write_text("a b c " * (i + 1))
    return tmp_path


_WRITER = """
import contextlib, sys, time
from luisy.history import journal
root, worker, count, in_build = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "build"
with journal.one_file_per_process() if in_build else contextlib.nullcontext():
    for i in range(count):
        if i % 2 == 0:
            started = time.time()
        journal.append(root, journal.Event(event=journal.START if i % 2 == 0 else journal.SUCCESS,
            id=f"{worker}-{i // 2}", run=worker, task_id=f"T_{i // 2 % 7}", task="T()", family="T",
            host="h", user="u", pid=1, started=started, ended=None if i % 2 == 0 else time.time(),
            outputs=["x" * (i % 300)]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["build", "task run"])
def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path, layout):
    writers, count = 6, 300
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"w{w}", str(count), layout])
             for w in range(writers)]
    assert all(p.wait(timeout=120) == 0 for p in procs)

    files = [p for p in (tmp_path / journal.JOURNAL_DIR).rglob("*") if p.is_file()]
    per_file = count if layout == "build" else 2
    assert len(files) == writers * count // per_file, "in a build one file per process, else per task run"
    for path in files:  # every line is one complete event: each START, then its end
        events = [journal.Event.from_json(line) for line in path.read_bytes().splitlines()]
        assert [e.event for e in events] == [journal.START, journal.SUCCESS] * (per_file // 2), path
    found = journal.events(tmp_path)
    assert len(found) == writers * count
    assert {(e.run, e.id, e.event) for e in found} == {
        (f"w{w}", f"w{w}-{i // 2}", journal.START if i % 2 == 0 else journal.SUCCESS)
        for w in range(writers) for i in range(count)}
    assert [e.started for e in found] == sorted(e.started for e in found), "by start"
    runs = history(tmp_path)
    assert len(runs) == writers * count // 2 and {r.state for r in runs} == {"SUCCESS"}
    # Selecting by task finds all of its events, and only its.
    selected = journal.events(tmp_path, task_ids=["T_2"])
    assert {e.task_id for e in selected} == {"T_2"}
    assert len(selected) == 2 * sum(1 for w in range(writers) for i in range(0, count, 2) if i // 2 % 7 == 2)


def test_partial_line_is_skipped_until_complete(tmp_path):
    event = journal.Event(event=journal.START, id="a", run="r", task_id="T_1", task="T()", family="T",
                          host="h", user="u", pid=1, started=time.time())
    path = journal.append(tmp_path, event)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # as another machine sees a file still being written
    assert journal.events(tmp_path) == []
    path.write_text(text)
    assert journal.events(tmp_path) == [event]
    end = journal.Event(**{**event.__dict__, "event": journal.FAIL, "ended": event.started + 1, "error": "E: x"})
    assert journal.append(tmp_path, end) == path
    assert journal.events(tmp_path) == [event, end]
    with pytest.raises(FileExistsError):  # a START never overwrites another run's file
        journal.append(tmp_path, event)


def test_history_status_and_items_through_the_command(project):
    first = run_luisy(["run", "hist.tasks:Words"], cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    (project / "data" / "hist" / "raw" / "notes" / "n9.txt").write_text("bad")
    (project / "data" / "hist" / "raw" / "notes" / "n3.txt").write_text("d e")
    second = run_luisy(["run", "hist.tasks:Words"], cwd=project)
    assert second.returncode == 1  # an item failed

    result = run_luisy(["history", "--json"], cwd=project)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["family"], r["state"]) for r in runs] == [
        ("Words", "SUCCESS"), ("Parsed", "SUCCESS"), ("Words", "SUCCESS"), ("Parsed", "SUCCESS")]
    assert runs[1]["items"] == {"processed": 2, "failed": 1, "kept": 3}
    assert runs[3]["items"] == {"processed": 3, "failed": 0, "kept": 0}
    assert runs[0]["run"] == runs[1]["run"] != runs[2]["run"]
    for run in runs:
        assert run["pid"] > 0 and run["host"] and run["user"] and run["luisy_version"]
        assert run["ended"] >= run["started"] and run["duration"] == pytest.approx(run["ended"] - run["started"])
    assert runs[0]["outputs"] == ["hist/final/Words.json"]

    table = run_luisy(["history", "Parsed"], cwd=project)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["started", "(UTC)", "duration", "state"]
    assert len(lines) == 3 and all("Parsed()" in line for line in lines[1:])
    assert "2 processed, 1 failed, 3 kept" in lines[1]
    assert run_luisy(["history", "hist.tasks:Words", "--json"], cwd=project).stdout.count('"family": "Words"') == 2
    assert json.loads(run_luisy(["history", "--since", "2999-01-01", "--json"], cwd=project).stdout) == []
    assert len(json.loads(run_luisy(["history", "--since", "1h", "--json"], cwd=project).stdout)) == 4

    status = status_rows(run_luisy(["status", "hist.tasks:Words"], cwd=project).stdout)
    assert status["Words()"]["last result"] == "SUCCESS"
    assert status["Words()"]["last run (UTC)"] == runs[0]["started_utc"][:19].replace("T", " ")
    assert status["Notes()"]["last result"] == ""


def test_failed_run_has_its_first_error_line(project):
    result = run_luisy(["run", "hist.tasks:Words"], cwd=project, env={"HIST_FAIL": "1"})
    assert result.returncode == 1
    runs = json.loads(run_luisy(["history", "--failed", "--json"], cwd=project).stdout)
    assert [(r["family"], r["state"], r["error"]) for r in runs] == [
        ("Words", "FAIL", "ValueError: no words today")]
    status = run_luisy(["status", "hist.tasks:Words", "--json"], cwd=project)
    rows = {row["task"]: row for row in json.loads(status.stdout)}
    assert rows["Words()"]["last_result"] == "FAIL: ValueError: no words today"
    assert rows["Words()"]["complete"] is False and rows["Parsed()"]["run"]["state"] == "SUCCESS"


@pytest.mark.slow
def test_kill_9_mid_run_leaves_start_without_end(project):
    marker = project / "running.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    env["HIST_MARKER"] = str(marker)
    script = Path(sys.executable).with_name("luisy")
    proc = subprocess.Popen([str(script), "run", "hist.tasks:Words"], cwd=project, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the task began"
            time.sleep(0.05)
        running = json.loads(run_luisy(["history", "Words", "--json"], cwd=project).stdout)
        assert [r["state"] for r in running] == ["running"], "its process is alive on this machine"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    result = run_luisy(["history"], cwd=project)
    words = [line for line in result.stdout.splitlines() if "Words()" in line]
    assert len(words) == 1 and " interrupted? " in words[0]
    runs = json.loads(run_luisy(["history", "--failed", "--json"], cwd=project).stdout)
    assert [(r["family"], r["state"], r["ended"]) for r in runs] == [("Words", "interrupted?", None)]
    status = status_rows(run_luisy(["status", "hist.tasks:Words"], cwd=project).stdout)
    assert status["Words()"]["last result"] == "interrupted?"

    again = run_luisy(["run", "hist.tasks:Words"], cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr
    states = [r["state"] for r in json.loads(run_luisy(["history", "Words", "--json"], cwd=project).stdout)]
    assert states == ["SUCCESS", "interrupted?"]


def test_since_spans_and_dates():
    now = 1_800_000_000.0
    assert parse_since("2d", now) == now - 2 * 86400
    assert parse_since("90s", now) == now - 90
    assert parse_since("1w", now) == now - 7 * 86400
    assert parse_since("2027-01-15") == 1_800_000_000 - 1_800_000_000 % 86400
    assert parse_since("2027-01-15T02:00+02:00") == 1_800_000_000 - 1_800_000_000 % 86400
    with pytest.raises(LuisyError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_history_bad_input_is_one_line(project):
    result = run_luisy(["history", "--since", "yesterday"], cwd=project)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--since 'yesterday'" in result.stderr
    missing = run_luisy(["history", "--working-dir", str(project / "nowhere")], cwd=project)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    empty = run_luisy(["history"], cwd=project)
    assert empty.returncode == 0 and empty.stdout.startswith("no runs in the journal of")


def test_journal_lines_with_values_out_of_range_are_skipped(project):
    first = run_luisy(["run", "hist.tasks:Words"], cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    commands = (["history"], ["history", "--json"], ["history", "Words"], ["history", "--failed"],
                ["status", "hist.tasks:Words"])
    before = [run_luisy(command, cwd=project).stdout for command in commands]
    end = next(e for e in journal.events(project / "data") if e.family == "Words" and e.event == journal.SUCCESS)
    day = next((project / "data" / journal.JOURNAL_DIR).iterdir())
    bad = [{"event": journal.START, "ended": None, "pid": 10**40},  # no process id: pids fit in 32 bits
           {"started": 1e308, "ended": 1e308}, {"started": float("nan")}, {"started": -1e18, "ended": -1e18},
           {"ended": float("inf")}]
    lines = [json.dumps({**dataclasses.asdict(end), "id": f"bad{i}", **fields}) for i, fields in enumerate(bad)]
    (day / f"{int(end.started * 1e9):020d}.p-{'f' * 32}.json").write_text("\n".join(lines) + "\n")

    for command, shown in zip(commands, before, strict=True):
        result = run_luisy(command, cwd=project)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
        assert result.stdout == shown, command


@pytest.mark.parametrize("since", ["99999999999d", "9999999999999999999999w", "1" * 400 + "s",
                                   "0001-01-01T00:00+01:00"])
def test_since_further_back_than_a_date_can_go_is_one_line(project, since):
    result = run_luisy(["history", "--since", since], cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"luisy: error: --since {since!r}") and result.stderr.count("\n") == 1


def _at(when: float, task: str = "T_a", event: str = journal.START) -> journal.Event:
    return journal.Event(event=event, id=f"{task}{when}", run="r", task_id=task, task="T()", family="T",
                         host="h", user="u", pid=1, started=when, ended=None if event == journal.START else when + 1)


NOON = 1_764_590_400.0  # 2025-12-01T12:00:00Z


def test_a_process_file_begun_before_since_still_gives_the_task_runs_after_it(tmp_path):
    early, late = _at(NOON - 3600, "T_a"), _at(NOON, "T_b")
    with journal.one_file_per_process():
        assert journal.append(tmp_path, early) == journal.append(tmp_path, late), "one file for the build"
    assert journal.events(tmp_path, since=NOON - 60) == [late]
    assert journal.events(tmp_path, since=NOON - 60, task_ids=["T_b"]) == [late]
    assert journal.events(tmp_path) == [early, late]


def test_a_build_running_for_days_keeps_each_task_run_in_the_day_it_started(tmp_path, monkeypatch):
    day = 86_400.0
    with journal.one_file_per_process():
        first = journal.append(tmp_path, _at(NOON - day))
        journal.append(tmp_path, _at(NOON - day + 5))
        second = journal.append(tmp_path, _at(NOON))
        assert journal.append(tmp_path, _at(NOON, event=journal.SUCCESS)) == second
    assert first.parent.name == "2025-11-30" and second.parent.name == "2025-12-01"
    assert [e.started for e in journal.events(tmp_path, since=NOON - 10)] == [NOON, NOON]
    read = []
    original = journal._read
    monkeypatch.setattr(journal, "_read", lambda *args: read.append(args[0].name) or original(*args))
    assert last_runs(tmp_path, ["T_a"])["T_a"].started == NOON
    assert read == ["2025-12-01"], "the latest run is in the newest day: older days are not read"


def test_control_characters_in_an_error_never_reach_the_terminal_raw(tmp_path):
    write_project(tmp_path, {"esc/__init__.py": "", "esc/tasks.py": '''
        import luisy


        class Loud(luisy.Task):
            def run(self):
                raise RuntimeError("\\x1b]0;title\\x07\\x1b[31mred")
    '''})
    (tmp_path / "data").mkdir()
    ran = run_luisy(["run", "esc.tasks:Loud"], cwd=tmp_path)
    assert ran.returncode == 1
    for command in (["run", "esc.tasks:Loud"], ["history"], ["history", "--failed"], ["status", "esc.tasks:Loud"]):
        result = run_luisy(command, cwd=tmp_path)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, command
        if command[0] == "history":
            assert "\\x1b[31mred" in result.stdout, result.stdout


@pytest.mark.parametrize("replacement", ["file", "fifo"])
def test_journal_folder_replaced_by_a_file_is_one_line_for_its_readers(project, replacement):
    first = run_luisy(["run", "hist.tasks:Words"], cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    folder = project / "data" / journal.JOURNAL_DIR
    for day in folder.iterdir():
        for path in day.iterdir():
            path.unlink()
        day.rmdir()
    folder.rmdir()
    if replacement == "file":
        folder.write_text("junk")
    else:
        os.mkfifo(folder)
    output = project / "data" / "hist" / "final" / "Words.json"
    what = "a regular file" if replacement == "file" else "a FIFO"
    for command in (["history"], ["history", "--json"], ["status", "hist.tasks:Words"], ["show", str(output)]):
        result = run_luisy(command, cwd=project, timeout=60)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr == (f"luisy: error: {folder} is {what}, not a folder of luisy's own: "
                                 "remove it (luisy makes the folder again)\n"), command
    folder.unlink()
    assert run_luisy(["history"], cwd=project).returncode == 0
