"""Interrupted directory tasks keep their finished items: kill -9, SIGINT, then a rerun that takes over."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_luisy, status_rows, write_project
from directory_tasks import PROCESSED, Doubled

from luisy.directory.local import CHECKPOINT, LocalStaging, latest_checkpoint
from luisy.directory.table import Item
from luisy.executors.local import SEND_EVERY

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "res/__init__.py": "",
    "res/tasks.py": '''
        import multiprocessing, os, subprocess, time
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
                if name == os.environ.get("GATE_AT"):  # held until the test opens the gate
                    while not os.path.exists(os.environ["GATE"]):
                        time.sleep(0.01)
                if os.environ.get("LOG"):  # every item made, by every run
                    with open(os.environ["LOG"], "a") as log:
                        log.write(f"{name} {os.getpid()}\\n")
                open(os.path.join(os.environ["DONE"], name), "w").close()
                if os.environ.get("ITEM_RUNS") == "subprocess":  # a signal to the group reaches it too
                    subprocess.run(["sleep", "0.05"], check=True)
                elif os.environ.get("ITEM_RUNS") == "pool":  # its own processes, stopped by SIGTERM
                    with multiprocessing.get_context("fork").Pool(2) as pool:
                        return pool.apply(str.upper, (obj,))
                time.sleep(600 if name == os.environ.get("HANG") else 0.05)
                return obj.upper()


        class Longer(Slow):
            """Slow, with more work in run() after the items are done."""

            def run(self):
                super().run()
                open(os.path.join(os.environ["DONE"], "after-the-items"), "w").close()
                time.sleep(3)
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


def _interrupt(project: Path, done: Path, processes: int, *signals: int, started: int = 15, hang: str = "",
               group: bool = False, gap: float = 0.5, task: str = "Slow", when: str = "",
               item_runs: str = "") -> subprocess.CompletedProcess:
    """Run ``task`` and send ``signals`` (``gap`` seconds apart) once ``started`` items were begun (or
    once the file ``when`` appears among the markers); return the finished process. ``hang``: an item
    that takes ten minutes; ``group``: signal the process group (the item processes too), as a
    service manager or a batch system does; ``item_runs``: "subprocess" or "pool" (see PROJECT)."""
    done.mkdir()
    env = {**os.environ, "DONE": str(done), "PROCESSES": str(processes), "HANG": hang, "ITEM_RUNS": item_runs}
    script = Path(sys.executable).with_name("luisy")
    run = subprocess.Popen([str(script), "run", f"res.tasks:{task}"], cwd=project, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=group)
    deadline = time.monotonic() + 60
    while not ((done / when).exists() if when else len(list(done.iterdir())) >= started):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it was interrupted"
        time.sleep(0.01)
    for i, sig in enumerate(signals):
        time.sleep(gap * (i > 0))
        os.killpg(run.pid, sig) if group else run.send_signal(sig)
    try:
        out, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail("the interrupted run did not end")
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
    kept = re.search(rf"resume: (\d+) of {ITEMS} items kept from an interrupted run", plan.stdout)
    assert kept, plan.stdout
    status = run_luisy(["status", "res.tasks:Slow"], cwd=project)
    assert status_rows(status.stdout)["Slow()"]["resumable"] == kept[1] != "0", status.stdout
    redone = _rerun(project, processes, tmp_path)
    in_flight = 1 if processes == 1 else 2 * processes * 2  # a chunk in progress and one queued, per worker
    assert len(redone) <= ITEMS - len(started) + in_flight, (len(started), len(redone))
    assert redone | started == {f"n{i:02d}" for i in range(ITEMS)}
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}
    assert run_luisy(["verify", "res.tasks:Slow"], cwd=project).returncode == 0


def test_the_summary_after_a_resume_counts_the_kept_items_apart_from_the_processed_ones(project, tmp_path):
    _interrupt(project, tmp_path / "first", 1, signal.SIGKILL)
    kept = run_luisy(["items", "res.tasks:Slow", "--kept"], cwd=project).stdout.splitlines()
    notes = project / "data" / "res" / "raw" / "notes"
    assert kept and all(re.fullmatch(rf"kept     (n\d\d)  {notes}/\1\.txt", line) for line in kept), kept
    done = tmp_path / "rerun"
    done.mkdir()
    result = run_luisy(["run", "res.tasks:Slow"], cwd=project, env={"DONE": str(done), "PROCESSES": "1"})
    made = len(list(done.iterdir()))
    assert made + len(kept) == ITEMS
    assert (f"  items: Slow(): {made} processed, {len(kept)} kept from the interrupted run, 0 failed "
            f"({ITEMS} in the output)") in result.stdout, result.stdout
    last = json.loads(run_luisy(["history", "Slow", "--json"], cwd=project).stdout)[0]
    assert last["items"] == {"processed": made, "failed": 0, "kept": len(kept)}


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


ALL = {f"n{i:02d}" for i in range(ITEMS)}


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_let_the_items_in_progress_finish_and_keep_them(project, tmp_path, sig, processes):
    interrupted = _interrupt(project, tmp_path / "first", processes, sig)
    assert interrupted.returncode != 0
    output = interrupted.stderr + interrupted.stdout
    started = {p.name for p in (tmp_path / "first").iterdir()}
    assert f"interrupted: {len(started)}/{ITEMS} items kept for the next run" in output, output
    assert not (project / "data" / "res" / "interim" / "Slow").exists(), "nothing is published by a stop"
    assert _rerun(project, processes, tmp_path) == ALL - started, "an item begun before the signal was made again"
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}


def test_sigterm_to_the_whole_process_group_loses_only_the_last_moments_of_the_item_processes(project, tmp_path):
    interrupted = _interrupt(project, tmp_path / "first", 2, signal.SIGTERM, group=True)
    output = interrupted.stderr + interrupted.stdout
    assert interrupted.returncode != 0 and "items kept for the next run" in output, output
    assert "failed" not in output.split("interrupted:")[0].lower(), "a worker stopped by the signal is no failure"
    started = {p.name for p in (tmp_path / "first").iterdir()}
    redone = _rerun(project, 2, tmp_path)
    # The item processes end at once; each loses its item and what it finished since it last sent.
    lost = 2 * (1 + round(SEND_EVERY / 0.05) + 1)
    assert ALL - started <= redone and len(redone & started) <= lost, (sorted(started), sorted(redone))
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}


@pytest.mark.parametrize("processes", [1, 2])
def test_an_item_that_outlasts_the_grace_period_is_stopped_and_made_again(project, tmp_path, processes):
    (project / "luigi.cfg").write_text("[luisy]\ngrace_seconds = 1\n")
    interrupted = _interrupt(project, tmp_path / "first", processes, signal.SIGINT, started=11, hang="n10")
    output = interrupted.stderr + interrupted.stdout
    assert interrupted.returncode != 0 and "items kept for the next run" in output, output
    (project / "luigi.cfg").unlink()
    redone = _rerun(project, processes, tmp_path)
    assert "n10" in redone and {f"n{i:02d}" for i in range(10)}.isdisjoint(redone), sorted(redone)
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}


def test_a_second_ctrl_c_stops_at_once(project, tmp_path):
    (project / "luigi.cfg").write_text("[luisy]\ngrace_seconds = 600\n")
    interrupted = _interrupt(project, tmp_path / "first", 1, signal.SIGINT, signal.SIGINT, started=11, hang="n10")
    output = interrupted.stderr + interrupted.stdout
    assert "interrupted: 10/40 items kept for the next run" in output, output


class _SignalsItself(Doubled):
    """Doubled, but sends ``SIGNAL`` to its own process while it makes item ``AT``."""

    AT = "f3"
    SIGNAL = signal.SIGINT

    def process(self, name, obj):
        if name == self.AT:
            os.kill(os.getpid(), self.SIGNAL)
        return super().process(name, obj)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_last_item_publishes_everything_and_still_stops(frames, sig, monkeypatch):
    monkeypatch.setattr(_SignalsItself, "SIGNAL", sig)
    with pytest.raises(KeyboardInterrupt):
        _SignalsItself().run()
    assert sorted(_SignalsItself().output().manifest.items) == ["f0", "f1", "f2", "f3"]
    assert _SignalsItself().complete()


def test_a_stop_during_an_item_keeps_it_and_starts_no_other(frames, monkeypatch, caplog):
    monkeypatch.setattr(_SignalsItself, "AT", "f1")
    with pytest.raises(KeyboardInterrupt):
        _SignalsItself().run()
    assert PROCESSED == ["f0", "f1"] and not _SignalsItself().output().exists()
    assert "interrupted: 2/4 items kept for the next run" in caplog.text
    PROCESSED.clear()
    monkeypatch.setattr(_SignalsItself, "AT", "")
    _SignalsItself().run()
    assert PROCESSED == ["f2", "f3"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_group_that_fails_the_item_in_progress_loses_nothing_finished(project, tmp_path, sig):
    # The item's own subprocess dies of the signal: with on_error="raise" that failure must not
    # throw the finished items away.
    interrupted = _interrupt(project, tmp_path / "first", 1, sig, group=True, item_runs="subprocess")
    assert "items kept for the next run" in interrupted.stderr, interrupted.stderr
    started = {p.name for p in (tmp_path / "first").iterdir()}
    redone = _rerun(project, 1, tmp_path)
    assert ALL - started <= redone and len(redone & started) <= 1, (sorted(started), sorted(redone))


@pytest.mark.parametrize("processes", [1, 2])
def test_an_item_with_a_pool_of_its_own_is_no_signal_to_stop(project, tmp_path, processes):
    done = tmp_path / "done"
    done.mkdir()
    result = run_luisy(["run", "res.tasks:Slow"], cwd=project,
                       env={"DONE": str(done), "PROCESSES": str(processes), "ITEM_RUNS": "pool"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}


def test_signals_in_quick_succession_keep_the_finished_items(project, tmp_path):
    interrupted = _interrupt(project, tmp_path / "first", 1, *[signal.SIGTERM] * 4, gap=0.001)
    assert interrupted.returncode != 0
    started = {p.name for p in (tmp_path / "first").iterdir()}
    redone = _rerun(project, 1, tmp_path)
    assert ALL - started <= redone and len(redone & started) <= 1, (sorted(started), sorted(redone))


def test_a_stop_after_the_items_while_run_goes_on_keeps_them(project, tmp_path):
    interrupted = _interrupt(project, tmp_path / "first", 1, signal.SIGINT, task="Longer", when="after-the-items")
    assert interrupted.returncode != 0
    done = tmp_path / "rerun"
    done.mkdir()
    result = run_luisy(["run", "res.tasks:Longer"], cwd=project, env={"DONE": str(done), "PROCESSES": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in done.iterdir()} == {"after-the-items"}, "finished items were made again"


def test_a_sigterm_while_forking_reaches_the_handler_not_the_default(tmp_path):
    # A before-fork hook registered before luisy's runs after it: it stands for a SIGTERM that
    # arrives while a large process forks (an item process starting, an item's own pool).
    script = '''
import os, signal
armed = []
os.register_at_fork(before=lambda: os.kill(os.getpid(), signal.SIGTERM) if armed else None)
from luisy.interrupts import stop_on_signals
with stop_on_signals(10) as stop:
    armed.append(1)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    armed.clear()
    os.waitpid(pid, 0)
    print("stop set:", bool(stop))
'''
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "stop set: True", result


def test_a_stop_left_pending_by_a_failed_run_does_not_stop_the_next_build(frames):
    from luisy.atomic import staged
    from luisy.interrupts import held, stop_after_publish

    with pytest.raises(RuntimeError):
        with staged():
            stop_after_publish(signal.SIGINT)
            raise RuntimeError("run() failed after its items were done")
    with held():  # the next build's publish
        pass


def test_a_failing_checkpoint_keeps_the_written_items_for_the_next_run(frames, monkeypatch):
    from luisy.directory.local import LocalStaging

    task = Doubled()
    writer = task.output().writer(task)
    writer.write("f0", np.zeros((2, 2)))

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(LocalStaging, "checkpoint", fail)
    with pytest.raises(OSError):
        writer.keep_for_next_run()
    assert writer.staging.path.is_dir(), "the items written were deleted"


@pytest.fixture
def runs():
    """The runs a test starts; one still going when the test ends (it failed) is stopped."""
    started: list[subprocess.Popen] = []
    yield started
    for run in started:
        if run.poll() is None:
            run.kill()
        run.communicate()


def _start(project: Path, tmp_path: Path, name: str, runs: list, gate_at: str = "") -> subprocess.Popen:
    """``luisy run res.tasks:Slow`` in the background; ``gate_at``: the item that waits for the gate."""
    done = tmp_path / name
    done.mkdir()
    env = {**os.environ, "DONE": str(done), "PROCESSES": "1", "LOG": str(tmp_path / "made.log"),
           "GATE": str(tmp_path / "gate"), "GATE_AT": gate_at}
    script = Path(sys.executable).with_name("luisy")
    runs.append(subprocess.Popen([str(script), "run", "res.tasks:Slow"], cwd=project, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return runs[-1]


def _wait_for_items(tmp_path: Path, name: str, count: int, run: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while len(list((tmp_path / name).iterdir())) < count:
        assert run.poll() is None and time.monotonic() < deadline, "the first run ended before the second began"
        time.sleep(0.01)


def _waiting_line(run: subprocess.Popen) -> str:
    """The first line of the second run's standard error; the run must be waiting then."""
    line = run.stderr.readline()
    assert line.startswith("waiting for") or run.poll() is not None, line
    return line


def _made(tmp_path: Path) -> list[str]:
    return [line.split()[0] for line in (tmp_path / "made.log").read_text().splitlines()]


def test_a_second_run_waits_for_the_first_and_makes_nothing_again(project, tmp_path, runs):
    first = _start(project, tmp_path, "first", runs, gate_at="n05")
    _wait_for_items(tmp_path, "first", 5, first)  # the first run holds the output's writer lock
    second = _start(project, tmp_path, "second", runs)
    waiting = _waiting_line(second)
    (tmp_path / "gate").touch()
    out, err = second.communicate(timeout=120)
    assert first.wait(timeout=120) == 0 and second.returncode == 0, out + err
    assert waiting == f"waiting for Slow() (pid {first.pid} on {socket.gethostname()})\n", waiting + err
    assert "waiting for" not in err, "said once"
    assert sorted(_made(tmp_path)) == sorted(ALL), "every item made once, by the first run"
    assert "0 processed" in out, out
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}
    assert [p.name for p in (project / "data" / "res" / "interim").iterdir()] == ["Slow"], "no lock file is left"


def test_a_run_waiting_for_one_that_is_killed_takes_its_finished_items_over(project, tmp_path, runs):
    first = _start(project, tmp_path, "first", runs, gate_at="n10")
    _wait_for_items(tmp_path, "first", 10, first)  # n00-n09 checkpointed, n10 held at the gate
    second = _start(project, tmp_path, "second", runs)
    _waiting_line(second)
    first.kill()  # its lock goes with it: nobody waits for ever
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err
    assert sorted(_made(tmp_path)) == sorted(ALL), "the killed run's ten items were taken over, not made again"
    assert {p.name for p in (tmp_path / "second").iterdir()} == ALL - {f"n{i:02d}" for i in range(10)}
    assert _published(project) == {f"n{i:02d}": f"NOTE {i}" for i in range(ITEMS)}


def test_ctrl_c_ends_the_wait_and_leaves_the_first_run_alone(project, tmp_path, runs):
    first = _start(project, tmp_path, "first", runs, gate_at="n05")
    _wait_for_items(tmp_path, "first", 5, first)
    second = _start(project, tmp_path, "second", runs)
    _waiting_line(second)
    second.send_signal(signal.SIGINT)
    try:
        second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.kill()
        pytest.fail("Ctrl-C did not end the wait")
    assert second.returncode != 0
    assert list((tmp_path / "second").iterdir()) == [], "the waiting run made nothing"
    (tmp_path / "gate").touch()
    assert first.wait(timeout=120) == 0
    assert sorted(_made(tmp_path)) == sorted(ALL)


def test_a_handed_over_staging_folder_is_not_taken_by_an_output_whose_name_it_ends_with(luisy_working_dir):
    from luisy.atomic import hand_over, stale_temps, temp_sibling

    folder = luisy_working_dir / "outputs"
    folder.mkdir()
    staging = temp_sibling(folder / "mydata")
    staging.mkdir()
    mine = hand_over(staging)  # a failed run's items, waiting for the next run of "mydata"
    assert [Path(p).name for p in stale_temps(folder / "mydata")] == [mine.name]
    assert stale_temps(folder / "data") == []


def _handed_over_staging(folder: Path) -> LocalStaging:
    staging = LocalStaging(folder)
    staging.keep()
    return staging


def test_each_checkpoint_appends_only_the_new_items_and_a_line_cut_short_loses_only_its_own(tmp_path):
    folder = tmp_path / "out"
    staging = _handed_over_staging(folder)
    first = {"a": Item("a.npy", 1, "c1", "s1")}
    second = {"b": Item("b.npy", 2, "c2", "s2"), "a": Item("a.npy", 3, "c3", "s3")}
    staging.checkpoint({"code": "x"}, first.items())
    staging.checkpoint({"code": "x"}, second.items())
    path = staging.path / CHECKPOINT
    lines = [line for line in path.read_text().split("\n") if line]
    assert len(lines) == 3, "the state once, then one line per checkpoint"
    assert '"c1"' not in lines[2], "a checkpoint does not write earlier items again"
    with open(path, "a") as f:  # a kill in the middle of the next checkpoint
        f.write('\n{"items": {"c": ["c.npy", 4, "c4"')
    staging.checkpoint({"code": "x"}, [("d", Item("d.npy", 5, "c5", "s5"))])
    staging.discard()
    assert latest_checkpoint(folder, {"code": "y"}) is None, "a checkpoint for other code"
    _, items = latest_checkpoint(folder, {"code": "x"})
    assert items == {"a": second["a"], "b": second["b"], "d": Item("d.npy", 5, "c5", "s5")}



def test_a_checkpoint_of_many_items_is_written_in_pieces_and_read_back_whole(tmp_path):
    folder = tmp_path / "out"
    staging = _handed_over_staging(folder)
    made = [(f"n{i % 9000:05d}", Item(f"n{i}.npy", i, f"c{i}", f"s{i}")) for i in range(10_000)]  # 1000 made twice
    staging.checkpoint({"code": "x"}, made[:9000])
    line = (staging.path / CHECKPOINT).read_text().split("\n")[-1]
    assert line == json.dumps({"items": {name: list(item) for name, item in made[:9000]}}), "what json.dumps writes"
    staging.checkpoint({"code": "x"}, made[9000:])
    staging.discard()
    _, items = latest_checkpoint(folder, {"code": "x"})
    assert items == dict(made), "the last item made under a name counts"

def test_a_checkpoint_an_earlier_luisy_wrote_in_one_line_is_taken_over(tmp_path):
    folder = tmp_path / "out"
    staging = _handed_over_staging(folder)
    (staging.path / CHECKPOINT).write_text(json.dumps({"code": "x", "items": {"a": ["a.npy", 1, "c1", "s1"]}}))
    staging.discard()
    assert latest_checkpoint(folder, {"code": "y"}) is None, "a checkpoint for other code"
    _, items = latest_checkpoint(folder, {"code": "x"})
    assert items == {"a": Item("a.npy", 1, "c1", "s1")}


def test_an_item_staged_after_its_staging_folder_was_handed_over_does_not_make_it_again(tmp_path):
    staging = LocalStaging(tmp_path / "out")
    staging.keep()
    first = staging.path
    staging.discard()  # handed over to the next run (renamed)
    staging.path = first  # a straggler that still has the old folder, such as a Dask worker
    with pytest.raises(FileNotFoundError):
        staging.write("sub/a.json", {"a": 1}, lambda obj, path: path.write_text(json.dumps(obj)))
    assert not first.exists()
