"""Directory-task items on a REAL Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes
(one thread each, under their nannies) started on free loopback ports, once for this module.

* a run on the cluster publishes what a local run publishes, its items processed on the workers;
  ``--dask-scheduler``, ``[luisy] dask_scheduler``, ``luisy.build(dask_scheduler=...)`` and the
  task attribute choose it, and the progress messages are those of a local run;
* an item that raises follows ``on_error`` as locally (``raise``: nothing published, the same
  error line; ``skip``: the same failures recorded);
* a worker killed with SIGKILL in the middle of a run: its chunk is done again by a worker, and
  the result is identical to a local run; an item that kills every worker it runs on fails, and
  the other items are published;
* two ``luisy run`` processes on one luigid (two luigi workers each) send the items of their
  directory tasks to one Dask cluster: each task runs in one luigi worker, never in two at once,
  and each item once;
* an unreachable scheduler stops the run before anything runs; a scheduler that goes away in the
  middle fails the task with one line, and nothing is published.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, run_luisy, running_luigid, write_project

import luisy
from luisy import config
from luisy.errors import DaskClusterError, MissingExtraError
from luisy.execution import run as run_tasks

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "shouting/__init__.py": "",
    "shouting/tasks.py": '''
        import os
        import signal
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
        class Shout(luisy.DirectoryTask):
            """Logs who processed which item; 'bad...' raises, 'die...' kills its process."""

            journal = luisy.Parameter(default="", significant=False)
            delay = luisy.FloatParameter(default=0.0, significant=False)

            def process(self, name, obj):
                if self.journal:
                    label = name if getattr(self, "part", None) is None else f"{self.part}/{name}"
                    with open(self.journal, "a") as journal:
                        journal.write(f"{label} {os.getpid()} {os.getppid()}\\n")
                time.sleep(self.delay)
                if obj.startswith("bad"):
                    raise ValueError(f"cannot shout {obj.strip()!r}")
                if obj.startswith("die"):
                    os.kill(os.getpid(), signal.SIGKILL)
                return {"name": name, "loud": obj.upper()}


        @luisy.interim
        @luisy.requires(Inbox)
        @luisy.directory_output(format="json")
        class ShoutOrSkip(Shout):
            on_error = "skip"


        @luisy.interim
        @luisy.requires(Inbox)
        @luisy.directory_output(format="json")
        class ShoutHere(Shout):
            dask_scheduler = ""  # never on a cluster


        @luisy.interim
        @luisy.requires(Inbox)
        @luisy.directory_output(format="json")
        class ShoutPart(Shout):
            part = luisy.IntParameter()

            def run(self):
                with open(self.journal + ".runs", "a") as runs:
                    runs.write(f"start {self.part} {os.getpid()} {time.time()}\\n")
                super().run()
                with open(self.journal + ".runs", "a") as runs:
                    runs.write(f"end {self.part} {os.getpid()} {time.time()}\\n")


        @luisy.final
        @luisy.requires(ShoutHere)
        @luisy.json_output
        class Loudness(luisy.ReduceTask):
            """Letters shouted, folded in parts wherever the items would be processed."""

            def initial(self):
                return {"letters": 0, "pids": []}

            def fold(self, state, name, item):
                return {"letters": state["letters"] + len(item["loud"]), "pids": sorted({*state["pids"], os.getpid()})}

            def combine(self, a, b):
                return {"letters": a["letters"] + b["letters"], "pids": sorted({*a["pids"], *b["pids"]})}


        class Parts(luisy.WrapperTask):
            journal = luisy.Parameter(default="", significant=False)

            def requires(self):
                return [ShoutPart(part=i, journal=self.journal, delay=0.02) for i in range(4)]
    ''',
}


def _wait_for(condition, what: str, processes: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen")
        time.sleep(0.1)


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    nannies: list[subprocess.Popen]


def _start_cluster(root: Path, project: Path, workers: int) -> tuple[Cluster, Path]:
    """A scheduler and ``workers`` single-threaded workers; the log of the scheduler."""
    dask = str(Path(sys.executable).with_name("dask"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # The workers import the tasks; the scheduler needs neither them nor luisy. A task whose
    # worker died twice is given up on (Dask's default: after 4 deaths), to keep the test short.
    env = {**os.environ, "PYTHONPATH": str(project), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    log = root / f"scheduler-{port}.log"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    nannies = [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                 "--no-dashboard", "--local-directory", str(root / "scratch"), "--death-timeout", "60"],
                                env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(workers)]
    cluster = Cluster(address, scheduler, nannies)
    _wait_for(lambda: log.read_text().count("Register worker") >= workers, "the workers' registration",
              [scheduler, *nannies])
    return cluster, log


def _stop(cluster: Cluster) -> None:
    # The workers first: they take leave of the scheduler, instead of waiting for it to come back.
    for group in (cluster.nannies, [cluster.scheduler]):
        for process in group:
            if process.poll() is None:
                process.terminate()
        for process in group:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dask_project")
    write_project(root, PROJECT)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def cluster(project, tmp_path_factory) -> Iterator[Cluster]:
    cluster, _ = _start_cluster(tmp_path_factory.mktemp("dask_cluster"), project, workers=2)
    yield cluster
    _stop(cluster)


def _inbox(working_dir: Path, texts: dict[str, str]) -> Path:
    folder = working_dir / "shouting" / "raw" / "inbox"
    folder.mkdir(parents=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    return working_dir


def _texts(count: int, **special: str) -> dict[str, str]:
    return {**{f"m{i:03d}": f"message {i}" for i in range(count)}, **special}


def _published(task: luisy.DirectoryTask, working_dir: Path) -> tuple[dict, dict, dict[str, bytes]] | None:
    """The output's items (file, size, checksum), failures and file contents; ``None`` if nothing was published."""
    with config.working_dir(working_dir):
        target = task.output()
        if not target.exists():
            return None
        manifest = target.manifest
        files = {path.name: path.read_bytes() for path in target.paths()}
        # Not the inputs' fingerprints (sizes and mtimes of the input files, which differ between copies).
        items = {name: (item.file, item.size, item.checksum) for name, item in manifest.items.items()}
        return items, dict(manifest.failed), files


def _log(path: Path) -> list[tuple[str, int, int]]:
    """(item, pid, parent pid) per item begun."""
    if not path.exists():
        return []
    return [(name, int(pid), int(ppid)) for name, pid, ppid in map(str.split, path.read_text().splitlines())]


def _local_and_dask(tmp_path: Path, cluster: Cluster, task_cls: type, texts: dict[str, str], **params):
    """Run ``task_cls`` locally and on the cluster over the same input; their summaries and outputs."""
    results = []
    for where, dask_scheduler in (("local", None), ("dask", cluster.address)):
        working_dir = _inbox(tmp_path / where, texts)
        task = task_cls(journal=str(tmp_path / f"{where}.log"), **params)
        summary = run_tasks([task], working_dir=working_dir, dask_scheduler=dask_scheduler, log_level="ERROR")
        results.append((summary, _published(task, working_dir), _log(tmp_path / f"{where}.log")))
    return results


def _on_workers(log: list[tuple[str, int, int]], cluster: Cluster) -> bool:
    return bool(log) and {ppid for _, _, ppid in log} <= {nanny.pid for nanny in cluster.nannies}


def test_a_run_on_the_cluster_publishes_what_a_local_run_does(tmp_path, cluster):
    from shouting.tasks import Shout

    (local, local_out, local_log), (dask, dask_out, dask_log) = _local_and_dask(tmp_path, cluster, Shout, _texts(300))
    assert local.ok and dask.ok, (local.lines(), dask.lines())
    assert dask_out is not None and dask_out == local_out
    assert len(dask_out[0]) == 300 and dask_out[2]["m007.json"] == b'{"name": "m007", "loud": "MESSAGE 7"}'
    assert {pid for _, pid, _ in local_log} == {os.getpid()}
    assert _on_workers(dask_log, cluster), dask_log
    assert len({pid for _, pid, _ in dask_log}) == 2, "both workers took chunks"
    assert sorted(name for name, _, _ in dask_log) == sorted(_texts(300)), "every item once"


def test_a_reduce_with_combine_folds_its_parts_on_the_cluster(tmp_path, cluster):
    from shouting.tasks import Loudness

    working_dir = _inbox(tmp_path, _texts(200))
    summary = run_tasks([Loudness()], working_dir=working_dir, dask_scheduler=cluster.address, log_level="ERROR")
    assert summary.ok, summary.lines()
    with config.working_dir(working_dir):
        found = Loudness().read()
    assert found["letters"] == sum(len(text) for text in _texts(200).values())
    workers = {int(p) for p in subprocess.run(["pgrep", "-P", ",".join(str(n.pid) for n in cluster.nannies)],
                                                capture_output=True, text=True).stdout.split()}
    assert set(found["pids"]) <= workers and len(found["pids"]) == 2, (found["pids"], workers)


def test_an_item_error_with_on_error_raise_fails_the_task_as_locally(tmp_path, cluster):
    from shouting.tasks import Shout

    texts = _texts(40, m017="bad news")
    (local, local_out, _), (dask, dask_out, dask_log) = _local_and_dask(tmp_path, cluster, Shout, texts)
    assert not dask.complete and local_out is None and dask_out is None, "nothing published"
    assert [error.replace(str(tmp_path / "dask"), "") for _, error in dask.failed] == \
        [error.replace(str(tmp_path / "local"), "") for _, error in local.failed]
    assert "item 'm017'" in dask.failed[0][1] and "ValueError: cannot shout 'bad news'" in dask.failed[0][1]
    (trace,) = dask.tracebacks.values()  # where the item failed, sent back from the Dask worker
    assert re.search(r'File ".*shouting/tasks\.py", line \d+, in process', trace), trace
    assert _on_workers(dask_log, cluster)


def test_an_item_error_with_on_error_skip_is_recorded_as_locally(tmp_path, cluster):
    from shouting.tasks import ShoutOrSkip

    texts = _texts(40, m003="bad news", m031="bad weather")
    (local, local_out, _), (dask, dask_out, dask_log) = _local_and_dask(tmp_path, cluster, ShoutOrSkip, texts)
    assert dask.complete and dask.failed_items == 2 == local.failed_items
    assert dask_out == local_out
    assert dask_out[1] == {"m003": "ValueError: cannot shout 'bad news'",
                           "m031": "ValueError: cannot shout 'bad weather'"}
    assert _on_workers(dask_log, cluster)


def test_the_cli_option_the_config_and_the_task_attribute_choose_the_cluster(tmp_path, project, cluster):
    from shouting.tasks import Shout, ShoutHere

    working_dir = _inbox(tmp_path / "data", _texts(20))
    cli_log, config_log, here_log = tmp_path / "cli.log", tmp_path / "config.log", tmp_path / "here.log"
    result = run_luisy(["run", "shouting.tasks:Shout", "--working-dir", str(working_dir), "--journal", str(cli_log),
                        "--dask-scheduler", cluster.address], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "items: Shout(): 20 processed, 0 failed" in result.stdout
    assert _on_workers(_log(cli_log), cluster)

    with config.luigi_setting("luisy", "dask_scheduler", cluster.address):
        assert config.Run.resolve().dask_scheduler == cluster.address
        assert config.Run.resolve(dask_scheduler="").dask_scheduler is None, "build(dask_scheduler='') wins"
        again = _inbox(tmp_path / "again", _texts(20))
        assert luisy.build([Shout(journal=str(config_log))], working_dir=again, log_level="ERROR")
        assert luisy.build([ShoutHere(journal=str(here_log))], working_dir=working_dir, log_level="ERROR")
    assert _on_workers(_log(config_log), cluster)
    assert {pid for _, pid, _ in _log(here_log)} == {os.getpid()}, "dask_scheduler = '' keeps items local"


def test_progress_is_reported_as_in_a_local_run(tmp_path, cluster):
    from shouting.tasks import Shout

    working_dir = _inbox(tmp_path, _texts(50))
    task = Shout()
    messages: list[str] = []
    percentages: list[int] = []
    task.set_status_message, task.set_progress_percentage = messages.append, percentages.append
    run = config.Run.resolve(working_dir=working_dir, dask_scheduler=cluster.address, new_id=True)
    with config.running(run):
        task.run()
    assert messages[-1] == "50/50 items, 0 failed, ETA 0s" and percentages[-1] == 100
    assert _published(task, working_dir) is not None


def test_a_worker_killed_in_the_middle_has_its_chunk_done_again(tmp_path, project, cluster):
    from shouting.tasks import Shout

    texts = _texts(80)
    local_dir, dask_dir = _inbox(tmp_path / "local", texts), _inbox(tmp_path / "dask", texts)
    assert luisy.build([Shout()], working_dir=local_dir, log_level="ERROR")
    log = tmp_path / "dask.log"
    run = subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "run", "shouting.tasks:Shout",
                            "--working-dir", str(dask_dir), "--journal", str(log), "--delay", "0.05",
                            "--dask-scheduler", cluster.address],
                           cwd=project,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(_log(log)) >= 12, "items begun on the workers", [run])
    victim = _log(log)[-1][1]  # in the middle of its chunk of 5 items
    assert run.poll() is None
    os.kill(victim, signal.SIGKILL)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    seen = _log(log)
    assert victim in {pid for _, pid, _ in seen} and len(seen) > 12
    assert sorted({name for name, _, _ in seen}) == sorted(texts)
    assert _published(Shout(), dask_dir) == _published(Shout(), local_dir)


def test_an_item_that_kills_every_worker_it_runs_on_fails_and_the_rest_is_published(tmp_path, cluster):
    from shouting.tasks import ShoutOrSkip

    from luisy.executors.dask import WORKER_DIED

    working_dir = _inbox(tmp_path, _texts(30, m011="die now"))
    summary = run_tasks([ShoutOrSkip()], working_dir=working_dir, dask_scheduler=cluster.address, log_level="ERROR")
    items, failed, _ = _published(ShoutOrSkip(), working_dir)
    assert summary.complete and summary.failed_items == len(failed), summary.lines()
    # Dask counts a worker's death against every task the worker held: an item queued behind the
    # killer may be given up on with it. Far from all are.
    assert failed["m011"] == WORKER_DIED and set(failed.values()) == {WORKER_DIED}
    assert len(items) + len(failed) == 30 and len(items) >= 20, failed


def test_an_unreachable_scheduler_stops_the_run_before_anything_runs(tmp_path, project):
    working_dir = _inbox(tmp_path, _texts(3))
    address = f"tcp://127.0.0.1:{free_port()}"
    result = run_luisy(["run", "shouting.tasks:Shout", "--working-dir", str(working_dir),
                        "--dask-scheduler", address], cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"luisy: error: cannot reach the Dask scheduler at {address} (")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (working_dir / "shouting" / "interim").exists()

    from luisy.executors.dask import DaskExecutor

    with pytest.raises(DaskClusterError, match=f"^Shout: cannot reach the Dask scheduler at {address} "):
        list(DaskExecutor(address, owner="Shout", connect_timeout=0.5).map(lambda index: None, 3))


def test_a_scheduler_that_goes_away_fails_the_task_and_publishes_nothing(tmp_path, project):
    from shouting.tasks import Shout

    own, _ = _start_cluster(tmp_path, project, workers=1)
    try:
        working_dir = _inbox(tmp_path / "data", _texts(60))
        log = tmp_path / "items.log"
        run = subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "run", "shouting.tasks:Shout",
                                "--working-dir", str(working_dir), "--journal", str(log), "--delay", "0.05",
                                "--dask-scheduler", own.address], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: len(_log(log)) >= 5, "items begun on the worker", [run])
        own.scheduler.kill()
        out, err = run.communicate(timeout=120)
    finally:
        _stop(own)
    assert run.returncode == 1, out + err
    assert f"  failed: Shout(): lost the Dask scheduler at {own.address} while its items ran; nothing was published" \
           in out
    assert _published(Shout(), working_dir) is None


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path):
    import importlib.util

    from luisy.executors.dask import DaskExecutor, check_scheduler

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "distributed"
                        else find_spec(name, *args))
    with pytest.raises(MissingExtraError, match=r"needs the extra luisy\[dask\]: pip install 'luisy\[dask\]'$"):
        check_scheduler("tcp://127.0.0.1:8786")
    with pytest.raises(MissingExtraError, match=r"luisy\[dask\]"):
        list(DaskExecutor("tcp://127.0.0.1:8786").map(lambda index: None, 3))
    with pytest.raises(MissingExtraError, match=r"luisy\[dask\]"):
        luisy.build([], working_dir=tmp_path, dask_scheduler="tcp://127.0.0.1:8786")


def test_luigi_workers_of_two_runs_share_the_tasks_and_one_cluster_takes_their_items(tmp_path, project, cluster):
    working_dir = _inbox(tmp_path / "data", _texts(20))
    journal = tmp_path / "items.log"
    with running_luigid(project, working_dir) as url:
        runs = [subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "run", "shouting.tasks:Parts",
                                  "--working-dir", str(working_dir), "--journal", str(journal), "--workers", "2",
                                  "--scheduler-url", url, "--dask-scheduler", cluster.address],
                                 cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, out + err
    items = _log(journal)
    assert sorted(name for name, _, _ in items) == sorted(f"{part}/{name}" for part in range(4) for name in _texts(20))
    assert _on_workers(items, cluster)
    events: dict[str, list[tuple[str, int, float]]] = {}
    for line in Path(f"{journal}.runs").read_text().splitlines():
        event, part, pid, when = line.split()
        events.setdefault(part, []).append((event, int(pid), float(when)))
    assert sorted(events) == ["0", "1", "2", "3"]
    for part, seen in events.items():
        assert [event for event, _, _ in seen] == ["start", "end"], (part, seen)
        assert seen[0][1] == seen[1][1], "one luigi worker ran the whole task"
    assert len({seen[0][1] for seen in events.values()}) >= 2, "the tasks were shared between luigi workers"


def test_the_executor_gives_one_outcome_per_index_in_chunks_and_stops_when_asked(cluster):
    from luisy.executors.dask import DaskExecutor, chunk_size
    from luisy.executors.local import ItemStatus, Outcome
    from luisy.interrupts import Stop

    def work(index):  # pickled by value: the workers cannot import this test module
        return Outcome(ItemStatus.OK, index, staged=os.getpid())

    executor = DaskExecutor(cluster.address)
    outcomes = list(executor.map(work, 1000))
    assert sorted(o.index for o in outcomes) == list(range(1000))
    assert os.getpid() not in {o.staged for o in outcomes} and len({o.staged for o in outcomes}) == 2
    assert chunk_size(1000, 2) == 62 and chunk_size(100_000, 2) == 64 and chunk_size(3, 2) == 1

    stop = Stop()
    seen = []
    for outcome in executor.map(work, 1000, stop):
        seen.append(outcome)
        stop.set()
    assert 0 < len(seen) < 1000, "no chunk waited for once asked to stop"
