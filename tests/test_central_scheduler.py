"""Runs on a REAL luigi central scheduler (luigid, started with ``luisy scheduler``) on loopback

* a directory task's progress percentage and status message are visible through luigid's
  ``/api/task_list`` while it runs and after it is done;
* two ``luisy run`` processes against one luigid share a WrapperTask over several directory
  tasks, and no task and no item is run twice;
* a run whose task another worker runs waits for it (or, with ``--no-wait``, says so), and a run
  that luigid holds back after the task was done says why and waits too;
* the luigid web view (the visualiser) shows the directory task with its status message, in
  headless Chromium; the screenshot is kept under ``test-artifacts/``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import luigid_api, require_program, running_luigid, write_project

pytestmark = pytest.mark.slow  # see pyproject.toml

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

PROJECT = {
    "slow/__init__.py": "",
    "slow/tasks.py": '''
        import os
        import time

        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Inbox(luisy.ExternalTask):
            def get_folder_name(self):
                return "inbox"


        @luisy.interim
        @luisy.requires(Inbox)
        @luisy.directory_output(format="json")
        class Slow(luisy.DirectoryTask):
            """Each item takes a while, so the run can be watched."""

            part = luisy.IntParameter(default=0)
            delay = luisy.FloatParameter(default=0.15, significant=False)

            def process(self, name, obj):
                gate = os.environ.get("SLOW_GATE")
                while gate and not os.path.exists(gate):  # held until the test opens the gate
                    time.sleep(0.01)
                with open(os.environ["SLOW_LOG"], "a") as log:  # who processed what
                    log.write(f"{self.part} {name} {os.getpid()}\\n")
                time.sleep(self.delay)
                return {"name": name, "part": self.part}


        class AllParts(luisy.WrapperTask):
            def requires(self):
                return [Slow(part=i, delay=0.05) for i in range(4)]
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    inbox = tmp_path / "data" / "slow" / "raw" / "inbox"
    inbox.mkdir(parents=True)
    for i in range(20):
        (inbox / f"m{i:02d}.txt").write_text(f"message {i}")
    return tmp_path


@pytest.fixture
def luigid(project):
    """``luisy scheduler`` on a free loopback port; yields its URL."""
    with running_luigid(project, project / "data") as url:
        yield url
    assert (project / "data" / ".luigid").is_dir(), "luisy scheduler keeps luigid's state under the working dir"


def _luisy_run(project: Path, *args: str, gate: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "SLOW_LOG": str(project / "slow.log"), "SLOW_GATE": str(gate or "")}
    env.pop("LUISY_WORKING_DIR", None)
    luisy_cmd = Path(sys.executable).with_name("luisy")
    return subprocess.Popen([str(luisy_cmd), "run", *args], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _slow_task(url: str, status: str) -> dict | None:
    tasks = luigid_api(url, "task_list", status=status, upstream_status="", search="Slow")
    return next((t for t in tasks.values() if t["name"] == "Slow"), None)


def test_progress_and_status_message_visible_in_luigid(project, luigid):
    run = _luisy_run(project, "slow.tasks:Slow", "--scheduler-url", luigid)
    seen = []
    while run.poll() is None:
        task = _slow_task(luigid, "RUNNING")
        if task is not None and task["status_message"]:
            seen.append((task["progress_percentage"], task["status_message"]))
        time.sleep(0.2)
    out, err = run.communicate()
    assert run.returncode == 0, out + err
    running = [(p, m) for p, m in seen if 0 < p < 100]
    assert running, f"no progress seen while running: {seen}"
    percentage, message = running[0]
    done, total = message.split(" ", 1)[0].split("/")
    assert total == "20" and 0 < int(done) < 20 and ", 0 failed, ETA " in message
    assert percentage == round(100 * int(done) / 20)

    finished = _slow_task(luigid, "DONE")
    assert finished["progress_percentage"] == 100
    assert finished["status_message"] == "20/20 items, 0 failed, ETA 0s"


def test_two_runs_share_one_luigid_and_nothing_runs_twice(project, luigid):
    first = _luisy_run(project, "slow.tasks:AllParts", "--scheduler-url", luigid, "--workers", "2")
    time.sleep(0.5)  # let the first one take some tasks
    second = _luisy_run(project, "slow.tasks:AllParts", "--scheduler-url", luigid, "--workers", "2")
    for run in (first, second):
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
        assert out.startswith("complete: AllParts()")

    processed = Counter(tuple(line.split()[:2]) for line in (project / "slow.log").read_text().splitlines())
    assert len(processed) == 4 * 20, "every item of every part"
    assert max(processed.values()) == 1, [k for k, v in processed.items() if v > 1]
    by_pid = {}
    for line in (project / "slow.log").read_text().splitlines():
        part, _, pid = line.split()
        by_pid.setdefault(part, set()).add(pid)
    assert all(len(pids) == 1 for pids in by_pid.values()), "each directory task ran in one process"
    done = luigid_api(luigid, "task_list", status="DONE", upstream_status="", search="")
    assert sum(1 for t in done.values() if t["name"] == "Slow") == 4


@pytest.fixture
def runs():
    """The runs a test starts; one still going when the test ends (it failed) is stopped."""
    started: list[subprocess.Popen] = []
    yield started
    for run in started:
        if run.poll() is None:
            run.kill()
        run.communicate()


def _running_elsewhere(project: Path, luigid: str, gate: Path, runs: list) -> subprocess.Popen:
    """A run of Slow that luigid shows RUNNING, held at its first item until ``gate`` exists."""
    first = _luisy_run(project, "slow.tasks:Slow", "--scheduler-url", luigid, gate=gate)
    runs.append(first)
    deadline = time.monotonic() + 60
    while _slow_task(luigid, "RUNNING") is None:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    return first


def _processed(project: Path) -> Counter:
    return Counter(line.split()[1] for line in (project / "slow.log").read_text().splitlines())


def test_a_run_waits_for_the_task_another_worker_runs(project, luigid, runs):
    gate = project / "gate"
    first = _running_elsewhere(project, luigid, gate, runs)
    second = _luisy_run(project, "slow.tasks:Slow", "--scheduler-url", luigid)
    runs.append(second)
    waiting = second.stderr.readline()
    gate.touch()
    out, err = second.communicate(timeout=300)
    assert first.wait(timeout=300) == 0 and second.returncode == 0, waiting + out + err
    who = f"pid {first.pid} on {socket.gethostname()}"
    assert waiting == f"waiting for Slow(part=0) (being run by another worker: {who})\n", waiting
    assert "waiting for" not in err, "said once"
    assert out.startswith("nothing to run: Slow(part=0) is complete"), out
    assert set(_processed(project).values()) == {1} and len(_processed(project)) == 20


def test_ctrl_c_ends_the_wait_for_another_worker(project, luigid, runs):
    gate = project / "gate"
    first = _running_elsewhere(project, luigid, gate, runs)
    second = _luisy_run(project, "slow.tasks:Slow", "--scheduler-url", luigid)
    runs.append(second)
    assert second.stderr.readline().startswith("waiting for Slow(part=0) (being run by another worker")
    second.send_signal(signal.SIGINT)
    try:
        second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.kill()
        pytest.fail("Ctrl-C did not end the wait")
    assert second.returncode != 0
    gate.touch()
    assert first.wait(timeout=300) == 0
    assert set(_processed(project).values()) == {1} and len(_processed(project)) == 20


def test_with_no_wait_a_run_says_which_worker_runs_its_task(project, luigid, runs):
    gate = project / "gate"
    first = _running_elsewhere(project, luigid, gate, runs)
    second = _luisy_run(project, "slow.tasks:Slow", "--scheduler-url", luigid, "--no-wait")
    runs.append(second)
    out, err = second.communicate(timeout=300)
    gate.touch()
    assert first.wait(timeout=300) == 0
    assert second.returncode == 1, out + err
    assert out.splitlines()[0] == "NOT complete: Slow(part=0)", out
    assert (f"  not run here: Slow(part=0) (being run by another worker: pid {first.pid} on {socket.gethostname()}); "
            "`luisy run --wait` waits for it") in out.splitlines(), out


def test_a_run_luigid_holds_back_after_the_task_was_done_says_why(project, luigid):
    first = _luisy_run(project, "slow.tasks:Slow", "--delay", "0.01", "--scheduler-url", luigid)
    assert first.wait(timeout=300) == 0, first.communicate()
    (project / "data" / "slow" / "raw" / "inbox" / "m20.txt").write_text("one more")
    # Right after it was done (luigid's stable_done_cooldown_secs, 10 s by default).
    second = _luisy_run(project, "slow.tasks:Slow", "--delay", "0.01", "--scheduler-url", luigid, "--no-wait")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 1, out + err
    assert ("  not run here: Slow(part=0) (luigid ignores a task made pending again within [scheduler] "
            "stable_done_cooldown_secs of being done); `luisy run --wait` waits for it") in out.splitlines(), out
    third = _luisy_run(project, "slow.tasks:Slow", "--delay", "0.01", "--scheduler-url", luigid)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, out + err
    assert err.count("waiting for Slow(part=0) (luigid ignores a task made pending again") == 1, err
    assert "items: Slow(part=0): 1 processed" in out, out


def test_the_1x_command_without_local_scheduler_runs_on_luigis_configured_scheduler(project, luigid):
    (project / "luigi.cfg").write_text(f"[core]\ndefault-scheduler-url = {luigid}\n")
    luisy_cmd = Path(sys.executable).with_name("luisy")
    env = {**{k: v for k, v in os.environ.items() if k != "LUISY_WORKING_DIR"}, "SLOW_LOG": str(project / "slow.log")}
    run = subprocess.run([str(luisy_cmd), "--module", "slow.tasks", "Slow", "--no-ask"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _slow_task(luigid, "DONE") is not None, "the run did not go through the configured central scheduler"


def test_visualiser_shows_the_directory_task_and_its_message(project, luigid):
    chromium = require_program("chromium", "chromium")
    from playwright.sync_api import expect, sync_playwright

    run = _luisy_run(project, "slow.tasks:Slow", "--part", "7", "--delay", "0.01", "--scheduler-url", luigid)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "luigid-visualiser.png"
    screenshot.unlink(missing_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{luigid}/static/visualiser/index.html")
            row = page.locator("#taskTable tbody tr", has_text="Slow").first
            expect(row).to_contain_text("part=7", timeout=20_000)
            expect(row).to_contain_text("DONE")
            row.locator("button.statusMessage").click()  # shown only for a task with a status message
            modal = page.locator("#statusMessageModal")
            expect(modal.locator("pre")).to_have_text("20/20 items, 0 failed, ETA 0s", timeout=20_000)
            expect(modal.locator(".progress-bar").first).to_have_attribute("aria-valuenow", "100")
            page.wait_for_timeout(600)  # the modal's fade-in
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_build_honours_its_arguments(project, luigid, monkeypatch):
    import luisy

    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setenv("SLOW_LOG", str(project / "slow.log"))
    from slow.tasks import AllParts

    from luisy.execution import run

    result = run([AllParts()], workers=2, scheduler_url=luigid, working_dir=project / "data",
                 processes=2, log_level="WARNING").result
    assert result.scheduling_succeeded and result.worker.worker_processes == 2
    done = luigid_api(luigid, "task_list", status="DONE", upstream_status="", search="")
    assert {t["name"] for t in done.values()} >= {"AllParts", "Slow", "Inbox"}, "ran on the central scheduler"
    pids_by_part: dict[str, set[str]] = {}
    for line in (project / "slow.log").read_text().splitlines():
        part, _, pid = line.split()
        pids_by_part.setdefault(part, set()).add(pid)
    assert all(len(pids) == 2 for pids in pids_by_part.values()), "each task's items ran in 2 item processes"
    assert luisy.build([AllParts()], working_dir=project / "data", local_scheduler=True) is True
