"""Interrupted directory tasks keep their finished items: kill -9, SIGINT, then a rerun that takes over."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

PROJECT = {
    "res/__init__.py": "",
    "res/tasks.py": '''
        import os, time
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Slow(luisy.DirectoryTask):
            checkpoint_seconds = 0  # after every item
            processes = int(os.environ.get("PROCESSES", "1"))

            def process(self, name, obj):
                open(os.path.join(os.environ["DONE"], name), "w").close()
                time.sleep(0.05)
                return obj.upper()
    ''',
}
ITEMS = 40


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "res" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(ITEMS):
        (notes / f"n{i:02d}.txt").write_text(f"note {i}")
    return tmp_path


def _interrupt(project: Path, done: Path, processes: int, sig: int) -> subprocess.CompletedProcess:
    """Run Slow and send ``sig`` once 15 items are done; return the finished process."""
    done.mkdir()
    env = {**os.environ, "DONE": str(done), "PROCESSES": str(processes)}
    script = Path(sys.executable).with_name("luisy")
    run = subprocess.Popen([str(script), "run", "res.tasks:Slow"], cwd=project, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(done.iterdir())) < 15:
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it was interrupted"
        time.sleep(0.01)
    run.send_signal(sig)
    out, err = run.communicate(timeout=60)
    return subprocess.CompletedProcess(run.args, run.returncode, out, err)


def _rerun(project: Path, processes: int, tmp_path: Path) -> set[str]:
    done = tmp_path / "rerun"
    done.mkdir()
    result = run_luisy(["run", "res.tasks:Slow"], cwd=project, env={"DONE": str(done), "PROCESSES": str(processes)})
    assert result.returncode == 0, result.stdout + result.stderr
    return {p.name for p in done.iterdir()}


def _published(project: Path) -> dict[str, str]:
    folder = project / "data" / "res" / "interim" / "Slow"
    return {p.stem: p.read_text() for p in folder.glob("n*.txt")}


@pytest.mark.parametrize("processes", [1, 2])
def test_a_killed_run_is_resumed_where_it_stopped(project, tmp_path, processes):
    killed = _interrupt(project, tmp_path / "first", processes, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not (project / "data" / "res" / "interim" / "Slow").exists(), "nothing is published by a checkpoint"
    started = {p.name for p in (tmp_path / "first").iterdir()}
    plan = run_luisy(["plan", "res.tasks:Slow"], cwd=project)
    assert re.search(rf"resume: \d+ of {ITEMS} items kept from an interrupted run", plan.stdout), plan.stdout
    redone = _rerun(project, processes, tmp_path)
    in_flight = 1 if processes == 1 else 2 * processes * 2  # a chunk in progress and one queued, per worker
    assert len(redone) <= ITEMS - len(started) + in_flight, (len(started), len(redone))
    assert redone | started == {f"n{i:02d}" for i in range(ITEMS)}
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}
    assert run_luisy(["verify", "res.tasks:Slow"], cwd=project).returncode == 0


def test_items_whose_input_changed_since_the_checkpoint_are_made_again(project, tmp_path):
    _interrupt(project, tmp_path / "first", 1, signal.SIGKILL)
    changed = sorted(p.name for p in (tmp_path / "first").iterdir())[0]
    (project / "data" / "res" / "raw" / "notes" / f"{changed}.txt").write_text("edited")
    redone = _rerun(project, 1, tmp_path)
    assert changed in redone
    assert _published(project)[changed] == "EDITED"


def test_a_checkpoint_of_other_code_is_not_taken_over(project, tmp_path):
    _interrupt(project, tmp_path / "first", 1, signal.SIGKILL)
    tasks = project / "res" / "tasks.py"
    tasks.write_text(tasks.read_text().replace("obj.upper()", "obj.title()"))
    assert len(_rerun(project, 1, tmp_path)) == ITEMS
    assert _published(project)["n03"] == "Note 3"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_keep_the_finished_items_and_say_so(project, tmp_path, sig):
    interrupted = _interrupt(project, tmp_path / "first", 1, sig)
    assert interrupted.returncode != 0
    assert "items kept for the next run" in interrupted.stderr + interrupted.stdout
    started = {p.name for p in (tmp_path / "first").iterdir()}
    redone = _rerun(project, 1, tmp_path)
    assert len(redone) <= ITEMS - len(started) + 1
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}
