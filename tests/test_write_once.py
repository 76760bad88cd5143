"""``input_fingerprint = "write-once"``: a folder is listed again only when its folders' times change."""

from __future__ import annotations

import os
import time

import pytest

import luisy
from luisy import cachefiles, config, targets
from luisy.plan import report
from luisy.status import status

PROCESSED: list[str] = []


@luisy.raw
@luisy.directory_input(pattern="*.txt", recursive=True)
class Frames(luisy.ExternalTask):
    input_fingerprint = "write-once"

    def get_folder_name(self):
        return "frames"


@luisy.interim
@luisy.requires(Frames)
@luisy.directory_output(format="json")
class Sized(luisy.DirectoryTask):
    def process(self, name, obj):
        PROCESSED.append(name)
        return {"chars": len(obj)}


def _age(*paths, seconds=60.0):
    """Date files and folders back, as if written a while ago (a folder changed moments ago is
    not remembered: a second change within the same clock tick would not show)."""
    when = time.time() - seconds
    for path in paths:
        os.utime(path, (when, when))


@pytest.fixture
def frames(luisy_working_dir):
    PROCESSED.clear()
    folder = luisy_working_dir / "test_write_once" / "raw" / "frames"
    (folder / "run2").mkdir(parents=True)
    for rel in ("a.txt", "b.txt", "run2/c.txt"):
        (folder / rel).write_text(rel * 3)
    _age(*(folder / rel for rel in ("a.txt", "b.txt", "run2/c.txt")), folder / "run2", folder)
    return folder


def _build(root):
    PROCESSED.clear()
    assert luisy.build(Sized(), working_dir=root)
    return sorted(PROCESSED)


def _snapshots(root):
    return list((root / cachefiles.CACHE_DIR).glob("frames.*.listing.json"))


def test_an_unchanged_folder_is_not_listed_again(frames, luisy_working_dir, monkeypatch):
    assert _build(luisy_working_dir) == ["a", "b", "run2/c"]
    assert len(_snapshots(luisy_working_dir)) == 1
    monkeypatch.setattr(targets, "list_files", lambda *a, **k: pytest.fail("the input folder was listed"))
    assert Sized().complete()
    assert report(Sized()) == ["nothing to run: Sized() is complete"]
    assert _build(luisy_working_dir) == []


@pytest.mark.parametrize("change", ["add", "remove", "rename", "add below", "replace by rename"])
def test_files_added_removed_or_renamed_are_noticed(frames, luisy_working_dir, change):
    _build(luisy_working_dir)
    if change == "add":
        (frames / "d.txt").write_text("new")
        expected = ["d"]
    elif change == "remove":
        (frames / "a.txt").unlink()
        expected = []
    elif change == "rename":
        (frames / "a.txt").rename(frames / "e.txt")
        expected = ["e"]
    elif change == "add below":  # only the subfolder's time changes
        (frames / "run2" / "f.txt").write_text("new")
        expected = ["run2/f"]
    else:  # a new file moved over an old one under its name: a new inode, a new folder time
        (frames / "b.new").write_text("other text")
        os.replace(frames / "b.new", frames / "b.txt")
        expected = ["b"]
    assert not Sized().complete()
    assert _build(luisy_working_dir) == expected
    assert sorted(name for name, _ in Sized().output().items()) == sorted(
        {"add": ["a", "b", "run2/c", "d"], "remove": ["b", "run2/c"], "rename": ["b", "e", "run2/c"],
         "add below": ["a", "b", "run2/c", "run2/f"], "replace by rename": ["a", "b", "run2/c"]}[change])


def test_a_file_edited_in_place_waits_for_the_next_listing(frames, luisy_working_dir):
    """The trade-off the mode makes, as documented: an edit in place changes no folder's time."""
    _build(luisy_working_dir)
    before = os.stat(frames).st_mtime_ns
    (frames / "a.txt").write_text("edited in place, longer than before")
    assert os.stat(frames).st_mtime_ns == before
    assert Sized().complete()
    assert _build(luisy_working_dir) == []
    (frames / "g.txt").write_text("new")  # the next listing sees the edit too
    assert _build(luisy_working_dir) == ["a", "g"]


def test_the_default_mode_still_sees_edits_in_place(frames, luisy_working_dir, monkeypatch):
    monkeypatch.setattr(Frames, "input_fingerprint", None)
    _build(luisy_working_dir)
    (frames / "a.txt").write_text("edited in place, longer than before")
    _age(frames)
    assert not Sized().complete()
    assert _snapshots(luisy_working_dir) == []


def test_a_folder_changed_just_before_the_listing_is_not_remembered(frames, luisy_working_dir):
    (frames / "h.txt").write_text("just now")  # the folder's time is now: a racy listing
    assert _build(luisy_working_dir) == ["a", "b", "h", "run2/c"]
    assert _snapshots(luisy_working_dir) == []
    assert Sized().complete()  # listed and stat'ed as in the default mode
    (frames / "i.txt").write_text("and again, within the same second")
    assert not Sized().complete()


def test_plan_and_status_read_the_snapshot_but_do_not_write_it(frames, luisy_working_dir):
    _build(luisy_working_dir)
    [path] = _snapshots(luisy_working_dir)
    path.unlink()
    assert report(Sized()) == ["nothing to run: Sized() is complete"]
    assert [row.complete for row in status(Sized())] == [True, True]
    assert _snapshots(luisy_working_dir) == []
    _build(luisy_working_dir)
    assert len(_snapshots(luisy_working_dir)) == 1


@pytest.mark.parametrize("text", ["not json", '{"folders": 3, "digest": "x"}', '{"folders": [["/x", 1]]}',
                                  '{"folders": [], "digest": "x"}'])
def test_a_broken_snapshot_means_listing_again(frames, luisy_working_dir, text):
    _build(luisy_working_dir)
    [path] = _snapshots(luisy_working_dir)
    path.write_text(text)
    (frames / "a.txt").write_text("edited in place, longer than before")
    _age(frames / "a.txt", frames)  # the edit is seen because the folder is listed again
    assert not Sized().complete()
    assert _build(luisy_working_dir) == ["a"]


def test_a_folder_replaced_by_another_is_listed_again(frames, luisy_working_dir):
    _build(luisy_working_dir)
    moved = frames.with_name("frames-old")
    frames.rename(moved)
    frames.mkdir()
    for rel in ("a.txt", "b.txt"):
        (frames / rel).write_text("other")
    (frames / "run2").mkdir()
    (frames / "run2" / "c.txt").write_text("run2/c.txt" * 3)
    stamp = os.stat(moved).st_mtime
    for path in (frames, frames / "run2"):
        os.utime(path, (stamp, stamp))  # same times, new inodes
    assert not Sized().complete()
    assert _build(luisy_working_dir) == ["a", "b", "run2/c"]  # new files: new times


def test_the_mode_is_a_setting_too(frames, luisy_working_dir, monkeypatch):
    monkeypatch.setattr(Frames, "input_fingerprint", None)
    with config.luigi_setting("luisy", "input_fingerprint", "write-once"):
        _build(luisy_working_dir)
        assert len(_snapshots(luisy_working_dir)) == 1
        monkeypatch.setattr(targets, "list_files", lambda *a, **k: pytest.fail("the input folder was listed"))
        assert Sized().complete()


def test_a_file_still_being_written_is_not_remembered_half_written(frames, luisy_working_dir):
    (frames / "b.txt").write_text("part")  # written under its final name, moments ago
    _age(frames)
    assert _build(luisy_working_dir) == ["a", "b", "run2/c"]
    assert _snapshots(luisy_working_dir) == []
    with open(frames / "b.txt", "a") as f:
        f.write(" and the rest")
    assert not Sized().complete()
    assert _build(luisy_working_dir) == ["b"]
    assert dict(Sized().output().items())["b"] == {"chars": len("part and the rest")}


def test_files_reached_through_links_are_listed_every_time(frames, luisy_working_dir):
    store = luisy_working_dir / "store"
    store.mkdir()
    (store / "s.txt").write_text("stored")
    (frames / "s.txt").symlink_to(store / "s.txt")
    _age(store / "s.txt", store, frames)
    assert _build(luisy_working_dir) == ["a", "b", "run2/c", "s"]
    assert _snapshots(luisy_working_dir) == []
    (store / "s.new").write_text("stored again, longer")
    os.replace(store / "s.new", store / "s.txt")  # the link's folder does not change
    assert not Sized().complete()
    assert _build(luisy_working_dir) == ["s"]
    (store / "s.txt").unlink()
    assert not Sized().complete()
    _build(luisy_working_dir)
    assert sorted(name for name, _ in Sized().output().items()) == ["a", "b", "run2/c"]
