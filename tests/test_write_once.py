"""``input_fingerprint = "write-once"``: a folder is listed again only when its folders' times change."""

from __future__ import annotations

import json
import os
import random
import sys
import time

import pytest

import luisy
from luisy import cachefiles, config, targets
from luisy.errors import FileReadError
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


# A single folder that changed is listed by names and inodes; only its new files are stat'ed.

@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Flat(luisy.ExternalTask):
    input_fingerprint = "write-once"

    def get_folder_name(self):
        return "flat"


@luisy.interim
@luisy.requires(Flat)
@luisy.directory_output(format="json")
class FlatSized(luisy.DirectoryTask):
    def process(self, name, obj):
        PROCESSED.append(name)
        return {"chars": len(obj)}


@pytest.fixture
def flat(luisy_working_dir):
    PROCESSED.clear()
    folder = luisy_working_dir / "test_write_once" / "raw" / "flat"
    folder.mkdir(parents=True)
    for i in range(40):
        (folder / f"f{i:02d}.txt").write_text("x" * i)
    (folder / "notes.md").write_text("not an input")
    _age(*folder.iterdir(), folder)
    return folder


def _flat_build(root):
    PROCESSED.clear()
    assert luisy.build(FlatSized(), working_dir=root)
    return sorted(PROCESSED)


def _flat_outputs():
    return {name: obj["chars"] for name, obj in FlatSized().output().items()}


def _never_listed_whole(monkeypatch):
    monkeypatch.setattr(targets, "list_files", lambda *a, **k: pytest.fail("the input folder was listed whole"))


@pytest.mark.parametrize("change", ["add", "remove", "rename", "replace by rename", "add a folder and a non-input"])
def test_a_changed_single_folder_is_listed_by_names_and_only_new_files_are_read(flat, luisy_working_dir,
                                                                              monkeypatch, change):
    _flat_build(luisy_working_dir)
    expected = {f"f{i:02d}": i for i in range(40)}
    processed: list[str] = []
    if change == "add":
        (flat / "g.txt").write_text("new")
        expected["g"], processed = 3, ["g"]
    elif change == "remove":
        (flat / "f03.txt").unlink()
        del expected["f03"]
    elif change == "rename":
        (flat / "f03.txt").rename(flat / "h.txt")
        expected["h"] = expected.pop("f03")
        processed = ["h"]
    elif change == "replace by rename":
        (flat / "f05.new").write_text("other text")
        os.replace(flat / "f05.new", flat / "f05.txt")
        expected["f05"], processed = len("other text"), ["f05"]
    else:
        (flat / "sub.txt").mkdir()
        (flat / "more.md").write_text("not an input either")
    _never_listed_whole(monkeypatch)
    assert FlatSized().complete() == (change == "add a folder and a non-input")
    assert _flat_build(luisy_working_dir) == processed
    assert _flat_outputs() == expected
    assert FlatSized().complete()


def test_a_changed_single_folder_keeps_the_files_it_knows_as_they_were_remembered(flat, luisy_working_dir):
    """The trade-off a single folder makes, as documented: a file edited in place is not read
    again when others are added, removed or renamed."""
    _flat_build(luisy_working_dir)
    (flat / "f01.txt").write_text("edited in place, longer than before")
    (flat / "g.txt").write_text("new")
    assert _flat_build(luisy_working_dir) == ["g"]
    assert _flat_outputs()["f01"] == 1


def test_changes_since_an_older_snapshot_are_all_seen(flat, luisy_working_dir, monkeypatch):
    _flat_build(luisy_working_dir)
    (flat / "g.txt").write_text("new")  # changed just now: this listing is not remembered
    assert _flat_build(luisy_working_dir) == ["g"]
    (flat / "f07.txt").unlink()
    (flat / "k.txt").write_text("newer")
    _never_listed_whole(monkeypatch)
    assert _flat_build(luisy_working_dir) == ["k"]
    assert set(_flat_outputs()) == {f"f{i:02d}" for i in range(40) if i != 7} | {"g", "k"}


@pytest.mark.parametrize("broken", ["entries", "a part", "the root"])
def test_a_broken_snapshot_of_parts_means_listing_whole(flat, luisy_working_dir, broken):
    _flat_build(luisy_working_dir)
    cache = luisy_working_dir / cachefiles.CACHE_DIR
    target = {"entries": "flat.*.listing.entries", "a part": "flat.*.listing-0.json",
              "the root": "flat.*.listing.json"}[broken]
    [path] = cache.glob(target)
    path.write_bytes(path.read_bytes()[:-7])
    (flat / "f01.txt").write_text("edited in place, longer than before")
    (flat / "g.txt").write_text("new")
    assert _flat_build(luisy_working_dir) == ["f01", "g"]  # listed whole: the edit is seen too


@luisy.raw
@luisy.directory_input(pattern="f*")
class FlatAny(Flat):
    pass


@luisy.interim
@luisy.requires(FlatAny)
@luisy.directory_output(format="json")
class FlatAnySized(FlatSized):
    pass


def test_a_new_file_named_like_a_known_one_is_the_error_a_whole_listing_gives(flat, luisy_working_dir, monkeypatch):
    assert luisy.build(FlatAnySized(), working_dir=luisy_working_dir)
    (flat / "f02.csv").write_text("2")
    _never_listed_whole(monkeypatch)
    with pytest.raises(FileReadError, match=r"FlatAny\(\): f02\.csv and f02\.txt would both be item 'f02'; "
                                            "narrow the pattern"):
        FlatAnySized().input().source_items()


def test_a_link_added_to_a_single_folder_means_listing_whole_every_time(flat, luisy_working_dir):
    _flat_build(luisy_working_dir)
    store = luisy_working_dir / "store"
    store.mkdir()
    (store / "s.txt").write_text("stored")
    (flat / "s.txt").symlink_to(store / "s.txt")
    assert _flat_build(luisy_working_dir) == ["s"]
    (store / "s.new").write_text("stored again, longer")
    os.replace(store / "s.new", store / "s.txt")
    assert _flat_build(luisy_working_dir) == ["s"]


@pytest.mark.parametrize("seed", range(40))
def test_the_entries_added_and_removed_are_found_however_the_folder_lists_them(seed):
    """Against sets of (name, inode): inserts scattered or in a block, removals, files renamed
    over others (a name with a new inode), entries listed elsewhere, and a new order."""
    from luisy.directory.inputs import Entries
    from luisy.directory.snapshot import _difference

    rng = random.Random(seed)
    size = rng.choice([0, 1, 7, 300, 3000, 10_000])
    names = [f"e{i}" for i in rng.sample(range(10 * size + 10), size)]
    before = list(zip(names, rng.sample(range(1, 10**9), size), strict=True))
    now = list(before)
    for _ in range(rng.choice([0, 1, 3, 20, 400])):
        op = rng.choice(["insert", "block", "remove", "replace", "move"])
        if op == "insert":
            now.insert(rng.randint(0, len(now)), (f"n{rng.random()}", rng.randint(1, 10**9)))
        elif op == "block":
            at = rng.randint(0, len(now))
            now[at:at] = [(f"b{rng.random()}", rng.randint(1, 10**9)) for _ in range(rng.randint(2, 40))]
        elif now and op == "remove":
            del now[rng.randrange(len(now))]
        elif now and op == "replace":
            at = rng.randrange(len(now))
            now[at] = (now[at][0], rng.randint(1, 10**9))
        elif now:
            now.insert(rng.randint(0, len(now) - 1), now.pop(rng.randrange(len(now))))
    if seed % 10 == 9:
        rng.shuffle(now)
    old_entries = Entries([name for name, _ in before], [inode for _, inode in before])
    new_entries = Entries([name for name, _ in now], [inode for _, inode in now])
    added, removed = _difference(old_entries, new_entries)
    assert len(set(added)) == len(added) and len(set(removed)) == len(removed)
    assert {now[row] for row in added} == set(now) - set(before)
    assert {before[row] for row in removed} == set(before) - set(now)


def test_a_single_folder_replaced_by_another_is_listed_whole(flat, luisy_working_dir):
    _flat_build(luisy_working_dir)
    flat.rename(flat.with_name("flat-old"))
    flat.mkdir()
    for i in range(40):
        (flat / f"f{i:02d}.txt").write_text("y" * (i + 1))
    assert _flat_build(luisy_working_dir) == sorted(f"f{i:02d}" for i in range(40))
    assert _flat_outputs() == {f"f{i:02d}": i + 1 for i in range(40)}


def test_a_dangling_link_whose_file_comes_later_is_read_then(flat, luisy_working_dir):
    store = luisy_working_dir / "store"
    store.mkdir()
    (flat / "dang.txt").symlink_to(store / "d.txt")  # nothing there yet: not an input file
    _age(flat)
    assert _flat_build(luisy_working_dir) == sorted(f"f{i:02d}" for i in range(40))
    (store / "d.txt").write_text("here now")
    (flat / "g.txt").write_text("new")  # the folder changes
    assert _flat_build(luisy_working_dir) == ["dang", "g"]


def _flat_expected(folder):
    return {path.name[:-4]: len(path.read_text()) for path in folder.glob("*.txt") if path.is_file()}


def test_a_folder_that_changes_a_little_keeps_its_entries_file_and_notes_the_changes(flat, luisy_working_dir,
                                                                                     monkeypatch, tmp_path):
    from luisy.directory import snapshot

    monkeypatch.setattr(snapshot, "_NOTED", 6)
    _flat_build(luisy_working_dir)
    cache = luisy_working_dir / cachefiles.CACHE_DIR
    [entries] = cache.glob("flat.*.listing.entries")
    [root] = cache.glob("flat.*.listing.json")
    written = entries.read_bytes()

    def rerun(*processed):
        _age(*(flat / f"{name}.txt" for name in processed), flat)  # else not remembered (see above)
        assert _flat_build(luisy_working_dir) == sorted(processed)
        assert _flat_outputs() == _flat_expected(flat)
        return json.loads(root.read_text())["changes"]

    with monkeypatch.context() as patched:
        _never_listed_whole(patched)
        (flat / "g.txt").write_text("new")
        assert rerun("g") == [[["g.txt", os.stat(flat / "g.txt").st_ino]], []]
        noted = json.loads(root.read_text())
        # A luisy that knows no notes finds no entries file named, and lists the folder whole.
        assert noted["entries"] is None and isinstance(noted["base"], str)
        (flat / "f03.txt").unlink()
        (flat / "f04.txt").rename(flat / "h.txt")
        (flat / "f05.new").write_text("other text")
        os.replace(flat / "f05.new", flat / "f05.txt")
        rerun("f05", "h")
        (flat / "g.txt").unlink()  # noted as added, now gone
        (flat / "f06.txt").rename(tmp_path / "f06.txt")  # out, and back in below: the same inode
        added, removed = rerun()
        assert "g.txt" not in {name for name, _ in added} and "f06.txt" in {name for name, _ in removed}
        (tmp_path / "f06.txt").rename(flat / "f06.txt")
        rerun("f06")
        assert entries.read_bytes() == written, "the entries file is as the first run wrote it"
        for i in range(5):  # more changes than the root notes: the entries are written again
            (flat / f"m{i}.txt").write_text("more")
        assert rerun(*(f"m{i}" for i in range(5))) == [[], []]
    assert entries.read_bytes() != written
    (flat / "n.txt").write_text("after")
    _never_listed_whole(monkeypatch)
    assert rerun("n") == [[["n.txt", os.stat(flat / "n.txt").st_ino]], []]


@pytest.mark.parametrize("changes", ["junk", [["g.txt", 1]], [[["g.txt", "1"]], []], [[7], []]])
def test_broken_changes_in_a_snapshots_root_mean_listing_whole(flat, luisy_working_dir, changes):
    _flat_build(luisy_working_dir)
    [root] = (luisy_working_dir / cachefiles.CACHE_DIR).glob("flat.*.listing.json")
    with config.working_dir(luisy_working_dir):
        cachefiles.write_cache(str(root), {**json.loads(root.read_text()), "changes": changes})
    (flat / "f01.txt").write_text("edited in place, longer than before")
    (flat / "g.txt").write_text("new")
    assert _flat_build(luisy_working_dir) == ["f01", "g"]  # listed whole: the edit is seen too
    assert _flat_outputs() == _flat_expected(flat)


@pytest.mark.parametrize("seed", range(8))
def test_random_changes_over_many_runs_are_all_seen_from_the_noted_changes(flat, luisy_working_dir, monkeypatch,
                                                                           tmp_path, seed):
    from luisy.directory import snapshot

    rng = random.Random(seed)
    monkeypatch.setattr(snapshot, "_NOTED", rng.choice([3, 8, 128]))
    _flat_build(luisy_working_dir)
    _never_listed_whole(monkeypatch)
    outside: list[str] = []
    for step in range(12):
        names = sorted(path.name for path in flat.glob("*.txt"))
        for _ in range(rng.randrange(1, 4)):
            change = rng.choice(["add", "remove", "rename", "replace", "out", "back"])
            name = rng.choice(names)
            if change == "add":
                (flat / f"a{step}_{rng.randrange(1000)}.txt").write_text("y" * rng.randrange(50))
            elif change == "remove" and (flat / name).exists():
                (flat / name).unlink()
            elif change == "rename" and (flat / name).exists():
                (flat / name).rename(flat / f"r{step}_{name}")
            elif change == "replace" and (flat / name).exists():
                (flat / "tmp.new").write_text("z" * rng.randrange(50))
                os.replace(flat / "tmp.new", flat / name)
            elif change == "out" and (flat / name).exists():
                (flat / name).rename(tmp_path / name)
                outside.append(name)
            elif change == "back" and outside:
                back = outside.pop(rng.randrange(len(outside)))
                if not (flat / back).exists():
                    (tmp_path / back).rename(flat / back)
        _age(*flat.iterdir(), flat)
        _flat_build(luisy_working_dir)
        assert _flat_outputs() == _flat_expected(flat), f"step {step}"


@pytest.mark.parametrize("mode", ["write-once", None])
def test_a_listing_of_files_the_pattern_gives_one_extension_holds_their_names_only(flat, luisy_working_dir,
                                                                                  monkeypatch, mode):
    monkeypatch.setattr(Flat, "input_fingerprint", mode)
    with config.working_dir(luisy_working_dir):
        listed = Flat().output().listing()
        whole = listed.whole() if hasattr(listed, "whole") else listed
    assert whole.paths.suffix == ".txt" and whole.paths.names is whole.names
    assert sorted(os.path.basename(path) for path in whole.paths) == sorted(f"f{i:02d}.txt" for i in range(40))


@luisy.interim
@luisy.requires(Flat)
@luisy.directory_output(format="json")
class FlatSizedAgain(luisy.DirectoryTask):
    """A second task over the folder: its first run goes over the remembered listing."""

    def process(self, name, obj):
        PROCESSED.append(name)
        if len(PROCESSED) == 1:
            HOOK[0]()
        return {"chars": len(obj)}


HOOK: list = []


def test_a_first_run_over_a_remembered_listing_is_not_changed_by_another_listing_meanwhile(flat, luisy_working_dir,
                                                                                          monkeypatch):
    from luisy import parts
    from luisy.parts import part_of

    monkeypatch.setattr(parts, "PART_ITEMS", 8)  # 40 files in 8 parts
    _flat_build(luisy_working_dir)
    listed = _flat_expected(flat)
    late = next(f"a{i}" for i in range(100) if part_of(f"a{i}", 8) == 7)  # first in its part

    def another_run():  # a file comes, and another run over the folder remembers its listing
        (flat / f"{late}.txt").write_text("late")
        _age(flat / f"{late}.txt", flat)
        assert late in Flat().output().listing().names  # within the build: remembered

    monkeypatch.setattr(sys.modules[__name__], "HOOK", [another_run])
    PROCESSED.clear()
    assert luisy.build(FlatSizedAgain(), working_dir=luisy_working_dir)
    published = {name: obj["chars"] for name, obj in FlatSizedAgain().output().items()}
    assert published == listed, "the items of the listing taken at the start, no more, no fewer"
