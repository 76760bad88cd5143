"""Inputs fingerprinted by content: touched, copied and really changed files, the stat cache, plan's note."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from conftest import run_luisy, write_project

import luisy
from luisy import cachefiles, config
from luisy.errors import LuisyError
from luisy.fingerprint import content
from luisy.plan import report

PROCESSED: list[str] = []


@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Pages(luisy.ExternalTask):
    def get_folder_name(self):
        return "pages"


@luisy.interim
@luisy.requires(Pages)
@luisy.directory_output(format="json")
class Counted(luisy.DirectoryTask):
    def process(self, name, obj):
        PROCESSED.append(name)
        return {"chars": len(obj)}


@luisy.raw
@luisy.text_output
class Settings(luisy.ExternalTask):
    pass


@luisy.raw
@luisy.text_output
class OwnSettings(luisy.ExternalTask):
    input_fingerprint = "content"

    def get_file_name(self):
        return "Settings"


@luisy.final
@luisy.requires(Settings)
@luisy.json_output
class Parsed(luisy.Task):
    def run(self):
        PROCESSED.append("Parsed")
        self.write({"text": self.read_input()})


@luisy.final
@luisy.requires(OwnSettings)
@luisy.json_output
class OwnParsed(luisy.Task):
    def run(self):
        PROCESSED.append("OwnParsed")
        self.write({"text": self.read_input()})


def _age(path, seconds=60.0):
    """Date a file back, as if written a while ago (the cache keeps only files not just written)."""
    when = time.time() - seconds
    os.utime(path, (when, when))


@pytest.fixture
def inputs(luisy_working_dir):
    PROCESSED.clear()
    pages = luisy_working_dir / "test_content_fingerprint" / "raw" / "pages"
    pages.mkdir(parents=True)
    for i in range(3):
        (pages / f"p{i}.txt").write_text(f"page {i} " * 50)
        _age(pages / f"p{i}.txt", 120)
    settings = pages.parent / "Settings.txt"
    settings.write_text("threshold = 3")
    _age(settings, 120)
    return pages, settings


@pytest.fixture
def by_content():
    with config.luigi_setting("luisy", "input_fingerprint", "content"):
        yield


def _run(task, root):
    assert luisy.build(task, working_dir=root)


def test_touched_and_copied_inputs_do_not_rerun(inputs, luisy_working_dir, by_content):
    pages, settings = inputs
    _run([Counted(), Parsed()], luisy_working_dir)
    assert sorted(PROCESSED) == ["Parsed", "p0", "p1", "p2"]
    PROCESSED.clear()

    _age(pages / "p1.txt", 30)  # touched: new mtime, same bytes
    shutil.copy(pages / "p2.txt", pages / "p2.copy")  # rewritten by a copy: new inode, same bytes
    os.replace(pages / "p2.copy", pages / "p2.txt")
    _age(pages / "p2.txt", 30)
    settings.write_text("threshold = 3")  # rewritten with the same text
    _age(settings, 30)
    assert Counted().complete() and Parsed().complete()
    lines = report(Counted()) + report(Parsed())
    assert lines[0] == "nothing to run: Counted() is complete"
    assert f"content unchanged (touched only): 2 file(s) in {pages}" in lines  # not below the current folder
    assert f"content unchanged (touched only): 1 file(s) in {pages.parent}" in lines

    _run([Counted(), Parsed()], luisy_working_dir)
    assert PROCESSED == []
    assert not any("touched" in line for line in report(Counted())), "the run took note of the new stats"

    (pages / "p0.txt").write_text("a changed page")
    _age(pages / "p0.txt", 10)
    settings.write_text("threshold = 4")
    _age(settings, 10)
    assert report(Counted()) == ["1 task(s) would run, upstream first:",
                                 "  Counted(): 0 new, 1 changed, 0 removed items"]
    assert "input data changed: Settings()" in report(Parsed())[1]
    _run([Counted(), Parsed()], luisy_working_dir)
    assert sorted(PROCESSED) == ["Parsed", "p0"]


def test_unchanged_files_are_not_read_again(inputs, luisy_working_dir, by_content, monkeypatch):
    _run(Counted(), luisy_working_dir)
    read = []
    real = content.file_digest
    monkeypatch.setattr(content, "file_digest", lambda path: read.append(os.path.basename(path)) or real(path))
    assert Counted().complete()
    assert read == []
    _age(inputs[0] / "p1.txt", 30)
    assert Counted().complete()
    assert read == ["p1.txt"], "only the touched file is read"
    cache = list((luisy_working_dir / cachefiles.CACHE_DIR).glob("pages.*.json"))
    assert len(cache) == 1 and set(json.loads(cache[0].read_text())["files"]) == {"p0.txt", "p1.txt", "p2.txt"}


def test_default_is_size_and_mtime(inputs, luisy_working_dir):
    pages, settings = inputs
    _run([Counted(), Parsed()], luisy_working_dir)
    PROCESSED.clear()
    _age(pages / "p1.txt", 30)
    _age(settings, 30)
    assert "0 new, 1 changed, 0 removed items" in report(Counted())[1]
    _run([Counted(), Parsed()], luisy_working_dir)
    assert sorted(PROCESSED) == ["Parsed", "p1"]
    assert not (luisy_working_dir / cachefiles.CACHE_DIR).exists()


def test_a_task_chooses_content_for_itself(inputs, luisy_working_dir):
    pages, settings = inputs
    _run([Parsed(), OwnParsed()], luisy_working_dir)
    PROCESSED.clear()
    _age(settings, 30)
    assert OwnParsed().complete() and not Parsed().complete()


def test_bad_settings_are_one_line_errors(inputs, luisy_working_dir):
    with config.luigi_setting("luisy", "input_fingerprint", "sha1"), \
            pytest.raises(LuisyError, match=r"\[luisy\] input_fingerprint = 'sha1': must be one of mtime, content"):
        config.Run.resolve()

    class Odd(Settings):
        input_fingerprint = "bytes"

    with pytest.raises(LuisyError, match="Odd.input_fingerprint = 'bytes': must be one of mtime, content"):
        content.mode_of(Odd())


def test_plan_json_and_the_command(tmp_path):
    write_project(tmp_path, {
        "cf/__init__.py": "",
        "cf/tasks.py": '''
            import luisy


            @luisy.raw
            @luisy.text_output
            class Raw(luisy.ExternalTask):
                input_fingerprint = "content"


            @luisy.final
            @luisy.requires(Raw)
            @luisy.text_output
            class Upper(luisy.Task):
                def run(self):
                    self.write(self.read_input().upper())
        ''',
    })
    raw = tmp_path / "data" / "cf" / "raw" / "Raw.txt"
    raw.parent.mkdir(parents=True)
    raw.write_text("hello")
    _age(raw, 120)
    assert json.loads(run_luisy(["plan", "cf.tasks:Upper", "--json"], cwd=tmp_path).stdout)["steps"][0][
        "reasons"] == [{"kind": "no_output", "text": "no output"}]
    assert run_luisy(["run", "cf.tasks:Upper"], cwd=tmp_path).returncode == 0
    _age(raw, 60)
    plan = run_luisy(["plan", "cf.tasks:Upper"], cwd=tmp_path)
    assert plan.stdout.splitlines() == ["nothing to run: Upper() is complete",
                                        "content unchanged (touched only): 1 file(s) in data/cf/raw"]
    data = json.loads(run_luisy(["plan", "cf.tasks:Upper", "--json"], cwd=tmp_path).stdout)
    assert data == {"task": "Upper()", "complete": True, "steps": [], "notes": [],
                    "touched": ["content unchanged (touched only): 1 file(s) in data/cf/raw"]}
    raw.write_text("world")
    data = json.loads(run_luisy(["plan", "cf.tasks:Upper", "--json"], cwd=tmp_path).stdout)
    assert data["steps"] == [{"task": "Upper()", "task_id": data["steps"][0]["task_id"], "missing": False,
                              "reasons": [{"kind": "input_data", "names": ["Raw()"],
                                           "text": "input data changed: Raw()"}]}]
