"""luisy's own files (records, journal, caches, manifests) and input files that are not what luisy
expects: FIFOs, links to ``/dev/zero``, folders, dangling links, links at luisy's folders.

Each case runs the real ``luisy`` command with a timeout: a command that blocks on a FIFO fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

from luisy import targets
from luisy.directory.manifest import MANIFEST_NAME
from luisy.errors import BrokenFileError
from luisy.fingerprint.records import RECORD_MAX_BYTES
from luisy.history import journal

pytestmark = pytest.mark.slow  # the attack runs' regressions: many processes each; see pyproject.toml

#: Seconds a command may take here: each finishes in a few; one that blocks never does.
TIMEOUT = 90

PROJECT = {
    "own/__init__.py": "",
    "own/tasks.py": '''
        import os

        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Upper(luisy.DirectoryTask):
            def process(self, name, text):
                return text.upper()


        @luisy.final
        @luisy.requires(Upper)
        @luisy.json_output
        class Count(luisy.Task):
            def run(self):
                self.write({"items": len(list(self.input().read()))})


        def replace_b_by_a_fifo(folder, name):
            """Item 'a' replaces the file of item 'b', listed already and read next, by a FIFO."""
            if name == "a":
                b = next(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("b."))
                os.unlink(b)
                os.mkfifo(b)


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class TextRaces(luisy.ExternalTask):
            def get_folder_name(self):
                return "races-txt"


        @luisy.raw
        @luisy.directory_input(pattern="*.csv")
        class CsvRaces(luisy.ExternalTask):
            def get_folder_name(self):
                return "races-csv"


        def read_own_way(path):
            with open(path) as f:
                return f.read()


        @luisy.raw
        @luisy.directory_input(pattern="*.dat", read=read_own_way)
        class OwnReaderRaces(luisy.ExternalTask):
            def get_folder_name(self):
                return "races-dat"


        class Raced(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, obj):
                replace_b_by_a_fifo(self.input().path, name)
                return str(obj)


        @luisy.interim
        @luisy.requires(TextRaces)
        @luisy.directory_output(format="pkl")
        class RacedText(Raced):
            pass


        @luisy.interim
        @luisy.requires(CsvRaces)
        @luisy.directory_output(format="pkl")
        class RacedCsv(Raced):
            pass


        @luisy.interim
        @luisy.requires(OwnReaderRaces)
        @luisy.directory_output(format="pkl")
        class RacedOwnReader(Raced):
            pass


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Folder(luisy.ExternalTask):
            input_fingerprint = "content"

            def get_folder_name(self):
                return "folder"


        @luisy.final
        @luisy.requires(Folder)
        @luisy.text_output
        class Listed(luisy.Task):
            def run(self):
                self.write("\\n".join(sorted(os.listdir(self.input().path))))
    ''',
}


def _age(*paths: Path, seconds: float = 60.0) -> None:
    """Date files and folders back: luisy caches nothing about files changed in the last seconds."""
    when = time.time() - seconds
    for path in paths:
        os.utime(path, (when, when))


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "own" / "raw" / "notes"
    notes.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (notes / f"{name}.txt").write_text(name * 3)
    _age(*notes.iterdir(), notes)
    return tmp_path


def _luisy(project: Path, *args: str, config: str = "") -> object:
    if config:
        (project / "luigi.cfg").write_text(f"[luisy]\n{config}\n")
    return run_luisy(list(args), cwd=project, timeout=TIMEOUT)


def _one_line_error(result, *expected: str, code: int = 2) -> None:
    """The command failed with one line on stderr that says each of ``expected``."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(text in lines[0] for text in expected), result.stderr


def _record_of(project: Path, output: str) -> Path:
    records = list((project / "data" / "own" / ".luisy-records").glob(f"own~final~{output}.*.json"))
    assert len(records) == 1, records
    return records[0]


def _make_broken(path: Path, how: str, limit: int = 0) -> str:
    """Put ``how`` in place of the file ``path``; returns what luisy's error says of it. ``huge``:
    a (sparse) file of ``limit`` + 1 bytes."""
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
        return "is a FIFO, not a regular file"
    if how == "dev-zero":
        path.symlink_to("/dev/zero")
        return "is a symbolic link, not a regular file"
    if how == "dangling":
        path.symlink_to(path.with_name("nowhere"))
        return "is a symbolic link, not a regular file"
    if how == "huge":
        with open(path, "wb") as f:
            f.truncate(limit + 1)
        return f"is {limit + 1} bytes long, longer than luisy ever writes such a file ({limit} bytes)"
    path.mkdir()
    (path / "inside").write_text("not luisy's")
    return "is a folder, not a regular file"


# Links put in place of luisy's own folders: nothing is written where they point.

@pytest.mark.parametrize("folder", [".luisy-records", ".luisy-journal", ".luisy-digests"])
def test_nothing_is_written_through_a_link_at_luisys_folders(project, folder):
    victim = project / "victim"
    victim.mkdir()
    place = project / "data" / ("own" if folder == ".luisy-records" else "") / folder
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(victim)
    result = _luisy(project, "run", "own.tasks:Count", config="input_fingerprint = content")
    assert list(victim.iterdir()) == [], f"written through the link at {place}"
    assert place.is_symlink(), "luisy removed a link it does not own"
    message = f"{place} is a symbolic link, not a folder of luisy's own: remove it"
    if folder == ".luisy-records":  # a task that cannot record what it made fails, saying why
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "failed: Upper(): " in result.stdout and message in result.stdout, result.stdout
    else:  # the journal and the digest cache never fail a task: a warning names the link
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert message in result.stderr, result.stderr
    place.unlink()
    (project / "data" / "own" / "raw" / "notes" / "d.txt").write_text("ddd")
    assert _luisy(project, "run", "own.tasks:Count").returncode == 0
    assert place.is_dir() and not place.is_symlink() and any(place.iterdir())


# Caches: a broken one is ignored and made again.

@pytest.mark.parametrize("how", ["fifo", "dev-zero", "folder"])
@pytest.mark.parametrize("mode", ["content", "write-once"])
def test_a_broken_cache_file_is_ignored_and_made_again(project, mode, how):
    setting = f"input_fingerprint = {mode}"
    assert _luisy(project, "run", "own.tasks:Count", config=setting).returncode == 0
    suffix = ".listing.json" if mode == "write-once" else ".json"
    caches = [p for p in (project / "data" / ".luisy-digests").glob("notes.*.json") if p.name.endswith(suffix)
              and (mode == "write-once" or not p.name.endswith(".listing.json"))]
    assert len(caches) == 1, caches
    _make_broken(caches[0], how)
    for command in ("plan", "status", "run"):
        result = _luisy(project, command, "own.tasks:Count", config=setting)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stdout, result.stderr)
    if how != "folder":  # a folder in its place is left alone: the run goes on without the cache
        assert caches[0].is_file() and not caches[0].is_symlink() and json.loads(caches[0].read_text())
    (project / "data" / "own" / "raw" / "notes" / "d.txt").write_text("ddd")
    assert _luisy(project, "run", "own.tasks:Count", config=setting).returncode == 0
    assert json.loads((project / "data" / "own" / "final" / "Count.json").read_text()) == {"items": 4}
    assert not list((project / "data" / ".luisy-digests").glob(".luisy-tmp-*")), "a temporary file was left"


# Records: a broken one is a one-line error, never replaced silently, never blocking.

@pytest.mark.parametrize("how", ["fifo", "dev-zero", "folder", "huge"])
def test_a_broken_record_is_one_line_that_names_it(project, how):
    assert _luisy(project, "run", "own.tasks:Count").returncode == 0
    record = _record_of(project, "Count.json")
    message = f"{record} {_make_broken(record, how, RECORD_MAX_BYTES)}: remove it"
    for command in ("plan", "status"):
        _one_line_error(_luisy(project, command, "own.tasks:Count"), message)
    _one_line_error(_luisy(project, "show", str(project / "data" / "own" / "final" / "Count.json")), message)
    for _ in range(2):
        result = _luisy(project, "run", "own.tasks:Count")
        assert result.returncode == 1 and f"failed: Count(): {message}" in result.stdout, result.stdout
        assert "Traceback" not in result.stderr and "complete() method" not in result.stderr, result.stderr
    verbose = _luisy(project, "run", "own.tasks:Count", "-v")  # -v keeps luigi's log, traceback and all
    assert "error in complete() method" in verbose.stderr and message in verbose.stderr, verbose.stderr
    assert not list(record.parent.glob(".luisy-tmp-*")), "a temporary file was left"
    if record.is_dir() and not record.is_symlink():
        assert (record / "inside").read_text() == "not luisy's"
        (record / "inside").unlink()
        record.rmdir()
    else:
        record.unlink()
    assert _luisy(project, "run", "own.tasks:Count").returncode == 0 and record.is_file()


# luisy 1.x's hash file: read where a task has no record of its own, never written by luisy 2.

@pytest.mark.parametrize("how", ["fifo", "dev-zero", "folder", "huge"])
def test_a_broken_1x_hash_file_is_one_line_that_says_what_to_do(project, how):
    assert _luisy(project, "run", "own.tasks:Count").returncode == 0
    _record_of(project, "Count.json").unlink()  # Count is looked up in the hash file now
    hash_file = project / "data" / "own" / ".luisy.hash"
    hash_file.write_text("{}")
    message = f"{hash_file} {_make_broken(hash_file, how, RECORD_MAX_BYTES)}: "
    _one_line_error(_luisy(project, "plan", "own.tasks:Count"), message, "luisy 1.x", "remove it")
    result = _luisy(project, "run", "own.tasks:Count")
    assert result.returncode == 1 and f"failed: Count(): {message}" in result.stdout, result.stdout
    assert "luisy writes its own file there again" not in result.stdout, "luisy 2 never writes that file"
    assert "Traceback" not in result.stderr and "complete() method" not in result.stderr, result.stderr


# The run journal: a file that is not one luisy wrote is one line, never blocking.

@pytest.mark.parametrize("how", ["fifo", "dev-zero", "huge"])
def test_a_broken_journal_file_is_one_line_that_names_it(project, how):
    assert _luisy(project, "run", "own.tasks:Count").returncode == 0
    files = list((project / "data" / ".luisy-journal").glob("*/*.json"))
    assert len(files) == 1, files
    message = f"{files[0]} {_make_broken(files[0], how, journal.FILE_MAX_BYTES)}: remove it"
    for args in (["status", "own.tasks:Count"], ["history"],
                 ["show", str(project / "data" / "own" / "final" / "Count.json")]):
        _one_line_error(_luisy(project, *args), message)
    files[0].unlink()
    assert _luisy(project, "history").returncode == 0


# Manifests: anything but a regular file is corrupt, and verify says so.

@pytest.mark.parametrize("how", ["dangling", "dev-zero", "fifo"])
def test_a_manifest_that_is_not_a_regular_file_fails_verify_and_is_replaced(project, how):
    assert _luisy(project, "run", "own.tasks:Upper").returncode == 0
    manifest = project / "data" / "own" / "interim" / "Upper" / MANIFEST_NAME
    what = _make_broken(manifest, how).removeprefix("is ")
    result = _luisy(project, "verify", "own.tasks:Upper")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"{manifest} is corrupt: {what}" in result.stdout, result.stdout
    for command in ("status", "plan"):  # the task runs again, and says why
        result = _luisy(project, command, "own.tasks:Upper")
        assert result.returncode in (0, 1) and "corrupt manifest (" in result.stdout and not result.stderr, result
    assert _luisy(project, "run", "own.tasks:Upper").returncode == 0
    assert manifest.is_file() and not manifest.is_symlink()
    assert _luisy(project, "verify", "own.tasks:Upper").returncode == 0


# Inputs: a file replaced by a FIFO between listing and reading fails its item, naming it.

@pytest.mark.parametrize(("task", "folder", "ext"), [
    ("RacedText", "races-txt", "txt"),  # a format luisy opens itself
    ("RacedCsv", "races-csv", "csv"),  # a library opens the file by its path
    ("RacedOwnReader", "races-dat", "dat"),  # the input's own reader opens it
])
def test_an_input_replaced_by_a_fifo_fails_its_item(project, task, folder, ext):
    inputs = project / "data" / "own" / "raw" / folder
    inputs.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (inputs / f"{name}.{ext}").write_text("x\n1\n")
    result = _luisy(project, "run", f"own.tasks:{task}")
    assert result.returncode == 1 and "3 processed, 1 failed (2 in the output)" in result.stdout, result.stdout
    assert "'b' (input file" in result.stderr
    assert f"{inputs / ('b.' + ext)} is a FIFO, not a regular file" in result.stderr


def test_a_fifo_in_an_input_folder_fingerprinted_by_content_is_one_line(project):
    folder = project / "data" / "own" / "raw" / "folder"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    assert _luisy(project, "run", "own.tasks:Listed").returncode == 0
    os.mkfifo(folder / "pipe")
    message = f"{folder / 'pipe'} is a FIFO, not a regular file"
    for command in ("plan", "status"):
        _one_line_error(_luisy(project, command, "own.tasks:Listed"), message)
    result = _luisy(project, "run", "own.tasks:Listed")
    assert result.returncode == 1 and message in result.stdout, result.stdout


def test_a_parquet_dataset_folder_is_still_read_by_its_library(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2, 3]})
    dataset = tmp_path / "dataset.parquet"
    dataset.mkdir()
    frame.to_parquet(dataset / "part-0.parquet", engine="pyarrow")
    pd.testing.assert_frame_equal(targets.ParquetTarget(dataset).read(), frame)
    folder = tmp_path / "folder.pkl"  # a format that reads only files says what is wrong
    folder.mkdir()
    with pytest.raises(BrokenFileError, match=r"folder\.pkl is a folder, not a regular file$"):
        targets.PickleTarget(folder).read()
