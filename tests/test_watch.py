"""``luisy watch`` with real processes and real files: a hot folder filled while the watcher runs.

Each test starts ``luisy watch`` as a child process on a small project whose ``process`` logs
every call (the item and a checksum of what it read), drops files into the watched folder from
this process or from a writer subprocess, and reads the watcher's one line per run.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, luigid_api, run_luisy, running_luigid, write_project

import luisy
import luisy.watch.watcher
from luisy.directory.inputs import TEMP_NAMES
from luisy.errors import DecorationError, NoFolderInput
from luisy.watch.settling import Settling, changes
from luisy.watch.watcher import Pause, watch

PROJECT = {
    "hot/__init__.py": "",
    "hot/tasks.py": '''
        import hashlib, json, os, time

        import luisy


        def log(name, data):
            """One line per call of process: the item and the checksum of what it read."""
            with open(os.environ["WATCH_LOG"], "a") as f:
                f.write(f"{name} {hashlib.sha256(data).hexdigest()}\\n")


        def raw_bytes(path):
            with open(path, "rb") as f:
                return f.read()


        @luisy.raw
        @luisy.directory_input(pattern="*.bin", read=raw_bytes)
        class Drops(luisy.ExternalTask):
            def get_folder_name(self):
                return "drops"


        @luisy.interim
        @luisy.requires(Drops)
        @luisy.directory_output(format="json")
        class Digested(luisy.DirectoryTask):
            on_error = os.environ.get("ON_ERROR", "skip")
            checkpoint_seconds = 0

            def process(self, name, data):
                log(name, data)
                time.sleep(float(os.environ.get("ITEM_SECONDS", "0")))
                if data.startswith(b"BAD"):
                    raise ValueError("corrupt file")
                return {"name": name, "sha": hashlib.sha256(data).hexdigest()}


        @luisy.final
        @luisy.requires(Digested)
        @luisy.json_output
        class Index(luisy.Task):
            def run(self):
                self.write({r["name"]: r["sha"] for r in self.input().read()})


        @luisy.raw
        @luisy.directory_input(items="folders")
        class Datasets(luisy.ExternalTask):
            def get_folder_name(self):
                return "datasets"


        @luisy.raw
        @luisy.directory_input(items="folders", marker="done.txt")
        class Marked(luisy.ExternalTask):
            def get_folder_name(self):
                return "marked"


        def listing(name, path):
            files = sorted(os.listdir(path))
            log(name, "\\n".join(files).encode())
            return {"files": files}


        @luisy.interim
        @luisy.requires(Datasets)
        @luisy.directory_output(format="json")
        class Summaries(luisy.DirectoryTask):
            def process(self, name, path):
                return listing(name, path)


        @luisy.interim
        @luisy.requires(Marked)
        @luisy.directory_output(format="json")
        class MarkedSummaries(luisy.DirectoryTask):
            def process(self, name, path):
                return listing(name, path)
    ''',
}

# Writes files slowly, in chunks, straight under their final names (the hardest case for a
# watcher), or under a .part name renamed when done: argv = folder, count, chunks, pause, start.
SLOW_WRITER = """
import os, sys, time
folder, pause = sys.argv[1], float(sys.argv[4])
count, chunks, start = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
for i in range(start, start + count):
    name = os.path.join(folder, f"slow{i:03d}.bin")
    target = name + ".part" if i % 2 else name
    with open(target, "wb") as f:
        for chunk in range(chunks):
            f.write(os.urandom(1000))
            f.flush()
            time.sleep(pause)
    if target != name:
        os.rename(target, name)
"""


class Watcher:
    """``luisy watch ARGS`` in a child process; its output lines are collected as they come."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
        full_env.update({"WATCH_LOG": str(project / "process.log"), **(env or {})})
        luisy_cmd = Path(sys.executable).with_name("luisy")
        self.process = subprocess.Popen([str(luisy_cmd), "watch", *args], cwd=project, env=full_env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def runs(self) -> list[str]:
        """The one-line reports of the runs so far."""
        return [line for line in self.lines if " → " in line]

    def wait_for_runs(self, count: int, timeout: float = 90) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.runs()) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"expected {count} runs; the watcher said:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        return self.runs()

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` (``None``: none, the watcher ends by itself) and wait for the exit status."""
        if sig is not None and self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("the watcher did not stop:\n" + "\n".join(self.lines))
        self._reader.join(timeout=10)
        return code


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    for folder in ("drops", "datasets", "marked"):
        (tmp_path / "data" / "hot" / "raw" / folder).mkdir(parents=True)
    return tmp_path


def _drops(project: Path) -> Path:
    return project / "data" / "hot" / "raw" / "drops"


def _calls(project: Path) -> list[tuple[str, str]]:
    """``(item, checksum of what process read)`` per call of process, in order."""
    log = project / "process.log"
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _index(project: Path) -> dict[str, str]:
    import json

    return json.loads((project / "data" / "hot" / "final" / "Index.json").read_text())


@pytest.fixture
def importable(project, monkeypatch):
    """The project's tasks, imported in this process (``process`` logs to ``process.log``)."""
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setenv("WATCH_LOG", str(project / "process.log"))
    for name in [m for m in sys.modules if m == "hot" or m.startswith("hot.")]:
        del sys.modules[name]
    import hot.tasks

    return hot.tasks


# --- settling, without processes -------------------------------------------------------------------

def test_an_item_settles_only_after_its_fingerprint_stayed_the_same_for_the_settle_time():
    state = Settling(2.0)
    first = state.observe([("a", "1-1")], now=0.0)
    assert first.settled == {} and first.pending == 1 and first.due == 2.0
    growing = state.observe([("a", "2-2")], now=1.5)  # it grew: the clock starts again
    assert growing.settled == {} and growing.due == 3.5
    assert state.observe([("a", "2-2")], now=3.0).settled == {}
    settled = state.observe([("a", "2-2"), ("b", "1-1")], now=3.5)
    assert settled.settled == {"a": "2-2"} and settled.pending == 1 and settled.present == {"a", "b"}
    # A settled item being rewritten is not "removed"; one gone from the listing is.
    rewriting = state.observe([("a", "3-3")], now=4.0)
    assert changes({"a": "2-2", "b": "1-1"}, rewriting).removed == 1
    assert rewriting.settled == {} and changes({"a": "2-2"}, rewriting).removed == 0
    assert state.observe([("a", "3-3")], now=6.0).settled == {"a": "3-3"}


def test_temporary_names_and_hidden_files_are_not_input_items(project, importable):
    drops = _drops(project)
    for name in ("a.bin", "b.bin.part", "c.tmp", "d.crdownload", ".e.bin"):
        (drops / name).write_bytes(b"x")
    with luisy.working_dir(project / "data"):
        listed = importable.Drops().output().listing()
    assert listed.names == ["a"]
    assert set(TEMP_NAMES) == {"*.part", "*.tmp", "*.crdownload", ".*"}


def test_dataset_folders_are_items_named_by_the_folder(project, importable):
    datasets = project / "data" / "hot" / "raw" / "datasets"
    (datasets / "empty").mkdir()
    (datasets / "one").mkdir()
    (datasets / "one" / "x.txt").write_text("1")
    (datasets / ".hidden").mkdir()
    (datasets / ".hidden" / "x.txt").write_text("1")
    (datasets / "stray.txt").write_text("not a folder")
    marked = project / "data" / "hot" / "raw" / "marked"
    (marked / "ready").mkdir()
    (marked / "ready" / "done.txt").write_text("")
    (marked / "busy").mkdir()
    (marked / "busy" / "x.txt").write_text("1")
    with luisy.working_dir(project / "data"):
        listed = importable.Datasets().output().listing()
        before = listed.fingerprints[0]
        (datasets / "one" / "y.txt").write_text("22")
        after = importable.Datasets().output().listing().fingerprints[0]
        assert listed.names == ["one"] and listed.paths == [str(datasets / "one")]
        assert before != after, "a file added to a dataset folder changes its fingerprint"
        assert importable.Marked().output().listing().names == ["ready"]
        assert luisy.build(importable.Summaries(), log_level="ERROR")
        assert dict(importable.Summaries().output().items()) == {"one": {"files": ["x.txt", "y.txt"]}}


@pytest.mark.parametrize("options, message", [
    ({"items": "rows"}, "items must be 'files' or 'folders'"),
    ({"marker": "done.txt"}, "needs items='folders'"),
    ({"items": "folders", "recursive": True}, "recursive=True does not apply"),
    ({"ignore": "*.part"}, "list of glob patterns"),
])
def test_bad_directory_input_options_are_one_line_errors(options, message):
    with pytest.raises(DecorationError, match=re.escape(message)):
        @luisy.directory_input(**options)
        class Bad(luisy.ExternalTask):
            def get_folder_name(self):
                return "bad"


def test_a_run_given_settled_items_holds_the_others_back(project, importable):
    """Not-settled files are neither processed nor counted as removed; published ones stay."""
    drops = _drops(project)
    for name in "abc":
        (drops / f"{name}.bin").write_bytes(name.encode())
    with luisy.working_dir(project / "data"):
        folder = importable.Drops().output()
        listed = folder.listing()
        settled = dict(zip(listed.names, listed.fingerprints, strict=True))
        assert luisy.build(importable.Index(), settled={folder.selection(): settled}, log_level="ERROR")
        (drops / "a.bin").write_bytes(b"half")  # being rewritten
        (drops / "d.bin").write_bytes(b"hal")  # being written
        assert luisy.build(importable.Index(), settled={folder.selection(): settled}, log_level="ERROR")
        assert [name for name, _ in _calls(project)] == ["a", "b", "c"]
        assert set(_index(project)) == {"a", "b", "c"}
        assert _index(project)["a"] == hashlib.sha256(b"a").hexdigest()
        listed = folder.listing()
        settled = dict(zip(listed.names, listed.fingerprints, strict=True))
        assert luisy.build(importable.Index(), settled={folder.selection(): settled}, log_level="ERROR")
    assert [name for name, _ in _calls(project)] == ["a", "b", "c", "a", "d"]
    assert _index(project)["a"] == hashlib.sha256(b"half").hexdigest()


def test_two_inputs_reading_one_folder_with_different_patterns_are_both_watched(luisy_working_dir):
    folder = Path(luisy_working_dir, "two", "raw", "mixed")
    folder.mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.csv"):
        (folder / name).write_text(name)

    def read(path):
        return Path(path).read_text()

    @luisy.project_name("two")
    @luisy.raw
    @luisy.directory_input(pattern="*.txt", read=read)
    class Texts(luisy.ExternalTask):
        def get_folder_name(self):
            return "mixed"

    @luisy.project_name("two")
    @luisy.raw
    @luisy.directory_input(pattern="*.csv", read=read)
    class Tables(luisy.ExternalTask):
        def get_folder_name(self):
            return "mixed"

    @luisy.project_name("two")
    @luisy.interim
    @luisy.requires(Texts)
    @luisy.directory_output(format="json")
    class FromTexts(luisy.DirectoryTask):
        def process(self, name, obj):
            return {"text": obj}

    @luisy.project_name("two")
    @luisy.interim
    @luisy.requires(Tables)
    @luisy.directory_output(format="json")
    class FromTables(luisy.DirectoryTask):
        def process(self, name, obj):
            return {"text": obj}

    @luisy.requires(FromTexts, FromTables)
    class Both(luisy.WrapperTask):
        pass

    lines: list[str] = []
    result = watch(Both(), settle=0.2, interval=0.1, once=True, report=lines.append)
    assert result.ok, lines
    assert sorted(FromTexts().output().manifest.items) == ["a", "b"]
    assert sorted(FromTables().output().manifest.items) == ["c"], "the csv files are not held back"


def test_a_run_failing_for_a_reason_outside_the_items_is_tried_again_with_the_same_items(
        luisy_working_dir, monkeypatch):
    folder = Path(luisy_working_dir, "down", "raw", "notes")
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        (folder / f"{name}.txt").write_text(name)

    @luisy.project_name("down")
    @luisy.raw
    @luisy.directory_input(pattern="*.txt", read=lambda path: Path(path).read_text())
    class Notes(luisy.ExternalTask):
        def get_folder_name(self):
            return "notes"

    @luisy.project_name("down")
    @luisy.interim
    @luisy.requires(Notes)
    @luisy.directory_output(format="json")
    class Counted(luisy.DirectoryTask):
        def process(self, name, obj):
            return {"length": len(obj)}

    monkeypatch.setattr("luisy.watch.watcher.RETRY_SECONDS", 0.05)
    lines: list[str] = []
    done: list = []
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there: luigid is "down"
    context = contextvars.copy_context()  # the test's working directory
    watcher = threading.Thread(target=lambda: done.append(context.run(
        watch, Counted(), settle=0.1, interval=0.05, max_runs=3, scheduler_url=unreachable, report=lines.append)))
    watcher.start()
    watcher.join(timeout=60)
    assert done, f"the watcher waited for the files to change again: {lines}"
    assert [(b.changes.new, b.again) for b in done[0].batches] == [(2, True)] * 3, lines


def test_a_task_without_input_folders_cannot_be_watched(luisy_working_dir):
    @luisy.final
    @luisy.json_output
    class Lonely(luisy.Task):
        def run(self):
            self.write({})

    with pytest.raises(NoFolderInput, match="nothing to watch"):
        watch(Lonely())


class FakeClock(luisy.watch.Clock):
    """Time that moves only when the test says so: a watcher's steps are driven one by one."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def process_time(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _steps(watcher: luisy.watch.Watcher, clock: FakeClock, seconds: float, every: float = 0.5) -> None:
    """Drive ``watcher`` through ``seconds`` of its time, one scan (and any run due) every ``every``."""
    end = clock.now + seconds
    while clock.now < end:
        if isinstance(watcher.step(), Pause):
            clock.sleep(every)


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_a_failed_file_is_not_retried_until_it_changes(project, importable, on_error):
    drops = _drops(project)
    for name in ("a", "bad"):
        (drops / f"{name}.bin").write_bytes(b"BAD" if name == "bad" else b"good")
    importable.Digested.on_error = on_error
    clock, lines = FakeClock(), []
    with luisy.working_dir(project / "data"):
        watcher = luisy.watch.Watcher(importable.Index(), settle=2.0, interval=0.2, report=lines.append,
                                      clock=clock, log_level="ERROR")
        try:
            _steps(watcher, clock, 600)  # ten minutes of rescans: one run only
            assert len(watcher.result.batches) == 1, lines
            assert [name for name, _ in _calls(project)].count("bad") == 1
            (drops / "bad.bin").write_bytes(b"fixed now")
            _steps(watcher, clock, 1.5)
            assert len(watcher.result.batches) == 1, "not settled yet"
            _steps(watcher, clock, 1.0)
        finally:
            watcher.close()
    assert len(watcher.result.batches) == 2, lines
    assert [name for name, _ in _calls(project)] == ["a", "bad", "bad"] if on_error == "skip" else \
        sorted(name for name, _ in _calls(project))[-2:] == ["bad", "bad"]
    assert watcher.result.batches[1].ok and set(_index(project)) == {"a", "bad"}


def test_a_folder_with_a_marker_waits_for_it_however_long_it_takes(project, importable):
    marked = project / "data" / "hot" / "raw" / "marked"
    (marked / "run1").mkdir()
    (marked / "run1" / "a.dat").write_text("a")
    clock, lines = FakeClock(), []
    with luisy.working_dir(project / "data"):
        watcher = luisy.watch.Watcher(importable.MarkedSummaries(), settle=2.0, report=lines.append, clock=clock,
                                      log_level="ERROR")
        try:
            _steps(watcher, clock, 3600, every=10)
            assert watcher.result.batches == [] and _calls(project) == []
            (marked / "run1" / "done.txt").write_text("")
            _steps(watcher, clock, 0.5)
        finally:
            watcher.close()
    assert [batch.line().split(" in ")[0] for batch in watcher.result.batches] == ["+1 folders → 1 processed, 0 failed"]


# --- real processes --------------------------------------------------------------------------------

@pytest.mark.slow
def test_files_written_slowly_in_chunks_are_processed_once_and_whole(project):
    drops = _drops(project)
    (drops / "early.bin").write_bytes(b"there before the watcher")
    watcher = Watcher(project, "hot.tasks:Index", "--settle", "2")
    watcher.wait_for_runs(1)
    writer = subprocess.run([sys.executable, "-c", SLOW_WRITER, str(drops), "6", "5", "0.2", "0"], timeout=120)
    assert writer.returncode == 0
    deadline = time.monotonic() + 60
    names = {p.stem for p in drops.glob("*.bin")}
    expected = {name: _sha(drops / f"{name}.bin") for name in names}
    # Until the run that processed the last file has also made the index downstream of it.
    while {name for name, _ in _calls(project)} != names or _index(project) != expected:
        assert time.monotonic() < deadline, "\n".join(watcher.lines)
        time.sleep(0.1)
    # That a settled file is not processed again on later rescans: test_a_failed_file_is_not_retried_until_it_changes.
    assert watcher.stop() == 0, "\n".join(watcher.lines)
    calls = _calls(project)
    assert sorted(name for name, _ in calls) == sorted(names), "each file processed exactly once"
    assert all(sha == _sha(drops / f"{name}.bin") for name, sha in calls), "never half-written"
    assert _index(project) == expected
    assert re.fullmatch(r"\+1 files → 1 processed, 0 failed in [\d.]+ s \(Digested, Index\)", watcher.runs()[0])
    assert "stopped (SIGTERM)" in watcher.lines[-1]


@pytest.mark.slow
def test_sigterm_during_a_run_loses_nothing_and_the_next_start_resumes(project):
    drops = _drops(project)
    for i in range(12):
        (drops / f"f{i:02d}.bin").write_bytes(f"file {i}".encode())
    watcher = Watcher(project, "hot.tasks:Index", "--settle", "0.5", env={"ITEM_SECONDS": "0.3"})
    deadline = time.monotonic() + 60
    while len(_calls(project)) < 3:
        assert watcher.process.poll() is None and time.monotonic() < deadline, "\n".join(watcher.lines)
        time.sleep(0.02)
    assert watcher.stop(signal.SIGTERM) == 0, "\n".join(watcher.lines)
    assert any("stopped (SIGTERM) after" in line and "finished items are kept" in line for line in watcher.runs())
    interrupted = len(_calls(project))
    assert 3 <= interrupted < 12
    assert not (project / "data" / "hot" / "final" / "Index.json").exists()

    again = Watcher(project, "hot.tasks:Index", "--settle", "0.5", "--once")
    assert again.stop(None, timeout=120) == 0, "\n".join(again.lines)
    assert again.runs()[-1].startswith("+12 files → 12 processed, 0 failed"), again.lines  # resumed ones count
    calls = [name for name, _ in _calls(project)]
    assert sorted(calls) == sorted(f"f{i:02d}" for i in range(12)), "no item lost, none processed twice"
    assert len(_index(project)) == 12


@pytest.mark.slow
@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_a_corrupt_file_among_good_ones(project, on_error):
    drops = _drops(project)
    for name in ("a", "b", "c"):
        (drops / f"{name}.bin").write_bytes(name.encode() * 10)
    (drops / "bad.bin").write_bytes(b"BAD" * 10)
    watcher = Watcher(project, "hot.tasks:Index", "--settle", "0.5", "--interval", "0.2", env={"ON_ERROR": on_error})
    first = watcher.wait_for_runs(1)[0]
    assert [name for name, _ in _calls(project)].count("bad") == 1
    assert watcher.process.poll() is None, "the watcher goes on after a failed item"
    if on_error == "skip":
        assert first.startswith("+4 files → 3 processed, 1 failed") and "FAILED" not in first
        assert set(_index(project)) == {"a", "b", "c"}
    else:
        assert "the run FAILED" in first and "item 'bad'" in first and first.endswith("watching on"), first
        assert not any(line.startswith("Traceback") for line in watcher.lines), "luigi's worker traceback (-v)"
        assert not (project / "data" / "hot" / "final" / "Index.json").exists()
    (drops / "bad.bin").write_bytes(b"fixed now")
    second = watcher.wait_for_runs(2)[1]
    assert watcher.stop(signal.SIGINT) == 0
    assert second.startswith("+1 files → ") and ", 0 failed" in second and "FAILED" not in second, second
    assert set(_index(project)) == {"a", "b", "c", "bad"}
    assert [name for name, _ in _calls(project)].count("a") == 1


@pytest.mark.slow
def test_a_dataset_folder_filling_up_over_time_is_processed_once_when_it_settled(project):
    datasets = project / "data" / "hot" / "raw" / "datasets"
    watcher = Watcher(project, "hot.tasks:Summaries", "--settle", "2")
    filler = textwrap.dedent("""
        import os, sys, time
        folder = sys.argv[1]
        os.mkdir(folder)
        for i in range(6):
            with open(os.path.join(folder, f"part{i}.dat"), "w") as f:
                f.write("x" * 100)
            time.sleep(0.3)
    """)
    subprocess.run([sys.executable, "-c", filler, str(datasets / "run1")], check=True, timeout=60)
    runs = watcher.wait_for_runs(1)
    assert watcher.stop() == 0
    assert runs[0].startswith("+1 folders → 1 processed, 0 failed"), runs
    assert len(watcher.runs()) == 1
    assert _calls(project) == [("run1", hashlib.sha256("\n".join(f"part{i}.dat" for i in range(6)).encode())
                                .hexdigest())]


@pytest.mark.slow
def test_a_dataset_folder_with_a_marker_is_processed_when_the_marker_appears(project):
    marked = project / "data" / "hot" / "raw" / "marked"
    # A settle time no test waits for: only the marker can make the folder an item.
    watcher = Watcher(project, "hot.tasks:MarkedSummaries", "--settle", "3600")
    (marked / "run1").mkdir()
    (marked / "run1" / "a.dat").write_text("a")
    (marked / "run1" / "done.txt").write_text("")
    runs = watcher.wait_for_runs(1)
    assert watcher.stop() == 0
    assert runs[0].startswith("+1 folders → 1 processed"), runs
    assert [name for name, _ in _calls(project)] == ["run1"]


@pytest.mark.slow
def test_watch_with_a_central_scheduler_shows_each_run_in_luigid(project):
    with running_luigid(project, project / "data") as url:
        drops = _drops(project)
        for i in range(3):
            (drops / f"a{i}.bin").write_bytes(b"first")
        watcher = Watcher(project, "hot.tasks:Index", "--settle", "0.5", "--scheduler-url", url)
        watcher.wait_for_runs(1)
        done = luigid_api(url, "task_list", status="DONE")
        digested = [t for t in done.values() if t["name"] == "Digested"]
        assert digested and digested[0]["status_message"].startswith("3/3 items, 0 failed"), done
        for i in range(2):
            (drops / f"b{i}.bin").write_bytes(b"second")
        second = watcher.wait_for_runs(2)[1]
        done = luigid_api(url, "task_list", status="DONE")
        digested = [t for t in done.values() if t["name"] == "Digested"]
        assert watcher.stop() == 0
    assert second.startswith("+2 files → 2 processed"), second
    assert digested[0]["status_message"].startswith("2/2 items, 0 failed"), done
    assert digested[0]["progress_percentage"] == 100


@pytest.mark.slow
def test_the_readme_watch_variant_of_the_image_example(tmp_path):
    """README: ``luisy watch examples.images.tasks:Everything`` while ``make_data`` adds images."""
    import pandas as pd

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = re.search(r"```bash\n(\.venv/bin/luisy watch .*?)```", readme, re.S).group(1)
    watch_line, data_line, _ = (line.split("#")[0].split() for line in block.strip().splitlines())
    assert watch_line[1:] == ["watch", "examples.images.tasks:Everything", "&"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("LUISY_WORKING_DIR", None)
    subprocess.run([sys.executable, "-m", "examples.images.make_data", "--count", "5"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    watcher = Watcher(tmp_path, *watch_line[2:-1], "--settle", "1", env={"PYTHONPATH": str(root)})
    watcher.wait_for_runs(1)
    subprocess.run([sys.executable, *data_line[1:]], cwd=tmp_path, env=env, check=True, capture_output=True,
                   timeout=120)
    table = next((tmp_path / "data" / "images" / "final").glob("FeatureTable_*.parquet"))
    deadline = time.monotonic() + 90
    # Every image was in a run that ended (its line comes once the whole build is done, after the table).
    while sum(int(re.match(r"\+(\d+)", line)[1]) for line in watcher.runs()) < 25:
        assert time.monotonic() < deadline, "\n".join(watcher.lines)
        time.sleep(0.2)
    assert watcher.stop(signal.SIGINT) == 0
    assert sorted(pd.read_parquet(table)["image"]) == [f"img_{i:04d}" for i in (*range(5), *range(40, 60))]
    assert all("0 failed" in line for line in watcher.runs())
    # The example's reduce kept up run by run, folding in only the images each run added.
    final = tmp_path / "data" / "images" / "final"
    assert json.loads(next(final.glob("Statistics_*.json")).read_text())["images"] == 25
    history = run_luisy(["history", "--json", "--working-dir", str(tmp_path / "data")], cwd=tmp_path)
    reduces = sorted((r for r in json.loads(history.stdout) if r["task"].startswith("Statistics")),
                     key=lambda r: r["started"])
    assert len(reduces) >= 2 and sum(r["items"]["folded"] for r in reduces) == 25, reduces
    assert [r["items"]["refolded"] for r in reduces] == [1] + [0] * (len(reduces) - 1), reduces


def test_watching_a_task_without_input_folders_is_one_line_and_exit_status_2(tmp_path):
    write_project(tmp_path, {"lonely/__init__.py": "", "lonely/tasks.py": '''
        import luisy


        @luisy.final
        @luisy.json_output
        class Alone(luisy.Task):
            def run(self):
                self.write({})
    '''})
    (tmp_path / "data").mkdir()
    result = run_luisy(["watch", "lonely.tasks:Alone"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "luisy: error: Alone(): nothing to watch: its graph has no input folder (directory_input or "
        "make_directory_output)"]
    assert run_luisy(["watch", "lonely.tasks:Alone", "--settle", "-1"], cwd=tmp_path).returncode == 2


def test_waking_the_watcher_from_a_signal_handler_cannot_wait_for_itself():
    from luisy.watch.wakeup import Wakeup

    wakeup = Wakeup([])

    def handler_while_the_lock_is_held():  # where a signal can find the watcher: inside wait() or clear()
        with wakeup._event._cond:
            wakeup.set()

    thread = threading.Thread(target=handler_while_the_lock_is_held, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "set() waited for the lock its own thread holds"
    assert wakeup.wait(10)
    wakeup.close()


def test_with_inputs_by_content_the_rescans_hash_each_file_once(luisy_working_dir, monkeypatch):
    from luisy.fingerprint import content

    folder = Path(luisy_working_dir, "hashed", "raw", "drops")
    folder.mkdir(parents=True)
    old = time.time() - 60  # not just written: a digest is kept only for files older than the racy window
    for name in "abc":
        (folder / f"{name}.txt").write_text(name * 100)
        os.utime(folder / f"{name}.txt", (old, old))
    hashed: list[str] = []
    real = content.file_digest
    monkeypatch.setattr(content, "file_digest", lambda path: hashed.append(os.path.basename(path)) or real(path))

    @luisy.project_name("hashed")
    @luisy.raw
    @luisy.directory_input(pattern="*.txt")
    class Drops(luisy.ExternalTask):
        input_fingerprint = "content"

        def get_folder_name(self):
            return "drops"

    @luisy.project_name("hashed")
    @luisy.interim
    @luisy.requires(Drops)
    @luisy.directory_output(format="json")
    class Lengths(luisy.DirectoryTask):
        def process(self, name, obj):
            return {"chars": len(obj)}

    lines: list[str] = []
    result = watch(Lengths(), settle=0.6, interval=0.1, once=True, report=lines.append)
    assert result.ok, lines
    assert sorted(Lengths().output().manifest.items) == ["a", "b", "c"]
    assert sorted(hashed) == ["a.txt", "b.txt", "c.txt"], "each file hashed once over all rescans and the run"


@pytest.mark.slow
def test_a_sigterm_while_the_watcher_starts_stops_it_cleanly(project):
    # The signal comes while the task's module is still being imported, before any folder is read.
    write_project(project, {"late/__init__.py": "", "late/tasks.py": """
        import os, pathlib, time
        pathlib.Path(os.environ["IMPORTING"]).write_text("now")
        time.sleep(3)
        from hot.tasks import Index
    """})
    marker = project / "importing"
    watcher = Watcher(project, "late.tasks:Index", env={"IMPORTING": str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert watcher.process.poll() is None and time.monotonic() < deadline, "\n".join(watcher.lines)
        time.sleep(0.01)
    assert watcher.stop(signal.SIGTERM) == 0, "\n".join(watcher.lines)
    assert watcher.lines[-1] == "stopped (SIGTERM) after 0 run(s)", watcher.lines
