"""What ``status`` and ``plan`` read of a complete pipeline: each input folder once, no item lists."""

from __future__ import annotations

import pytest

import luisy
from luisy import targets
from luisy.directory.manifest import Manifest
from luisy.plan import report
from luisy.status import status


@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Letters(luisy.ExternalTask):
    def get_folder_name(self):
        return "letters"


@luisy.interim
@luisy.requires(Letters)
@luisy.directory_output(format="json")
class Counted(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"chars": len(obj)}


@luisy.interim
@luisy.requires(Counted)
@luisy.directory_output(format="json")
class Doubled(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"chars": obj["chars"] * 2}


@luisy.final
@luisy.requires(Doubled)
@luisy.directory_output(format="json")
class Flagged(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"long": obj["chars"] > 10}


@pytest.fixture
def built(luisy_working_dir, monkeypatch):
    folder = luisy_working_dir / "test_status_reads" / "raw" / "letters"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"l{i}.txt").write_text("x" * (i + 8))
    assert luisy.build(Flagged(), working_dir=luisy_working_dir)
    listings, bodies = [], []
    real_list, real_read = targets.list_files, Manifest.read
    monkeypatch.setattr(targets, "list_files", lambda *a, **k: listings.append(a[0]) or real_list(*a, **k))
    monkeypatch.setattr(Manifest, "read", classmethod(lambda cls, folder: bodies.append(folder) or
                                                      real_read.__func__(cls, folder)))
    return folder, listings, bodies


def test_status_lists_each_input_folder_once_and_reads_no_item_lists(built):
    folder, listings, bodies = built
    rows = status(Flagged())
    assert [row.fingerprint for row in rows] == ["input", "current", "current", "current"]
    assert listings == [str(folder)]
    assert bodies == []


def test_plan_of_a_complete_pipeline_reads_no_item_lists(built):
    folder, listings, bodies = built
    assert report(Flagged()) == ["nothing to run: Flagged() is complete"]
    assert listings == [str(folder)]
    assert bodies == []


def test_an_incomplete_task_still_says_why(built):
    folder, listings, bodies = built
    (folder / "l9.txt").write_text("new")
    rows = {str(row.task): row.fingerprint for row in status(Flagged())}
    assert rows["Counted()"] == "1 new, 0 changed, 0 removed items"
    assert rows["Doubled()"] == "upstream changed: Counted()"
    assert listings == [str(folder)]
