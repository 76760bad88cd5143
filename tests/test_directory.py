from __future__ import annotations

import json
import os
import re
from pathlib import Path

import luigi
import numpy as np
import pytest
from directory_tasks import PROCESSED, Doubled, Frames, Summed, _build, files_of, files_on_disk

import luisy
from luisy.digests import file_digest as checksum
from luisy.directory import MANIFEST_NAME, DirectoryTarget


def test_process_publish_and_read(frames, luisy_working_dir):
    _build(Summed())
    out = Doubled().output()
    folder = luisy_working_dir / "dirs" / "interim" / "Doubled"
    assert out.path == str(folder)
    assert len(out) == 4 and [p.name for p in out.paths()] == ["f0.npy", "f1.npy", "f2.npy", "f3.npy"]
    names, arrays = zip(*out.items(), strict=True)
    assert names == ("f0", "f1", "f2", "f3") and [int(a[0, 0]) for a in arrays] == [0, 2, 4, 6]
    assert [int(a.sum()) for a in Doubled().read()] == [0, 8, 16, 24]
    assert [d["sum"] for d in Summed().read()] == [0, 8, 16, 24]
    assert sorted(os.listdir(folder)) == [MANIFEST_NAME, "f0.npy", "f1.npy", "f2.npy", "f3.npy"]


def test_manifest_content(frames):
    _build(Doubled())
    manifest = Doubled().output().manifest
    head, body = (Doubled().output().folder / MANIFEST_NAME).read_text().splitlines()
    raw, listed = json.loads(head), json.loads(body)
    assert raw["schema"] == 5 and raw["body_bytes"] == len(body) and raw["resumed"] == 0 and raw["part_count"] == 1
    assert raw["task"] == "Doubled" and raw["failed_count"] == 0 and listed["failed"] == {}
    assert raw["item_count"] == len(listed["names"]) == len(listed["checksums"]) == 4 and raw["processed"] == 4
    for key in ("luisy_version", "python_version", "host", "started", "finished", "items_digest", "inputs_digest"):
        assert raw[key], key
    assert Doubled().output().header.items_digest == raw["items_digest"]
    item = manifest.items["f1"]
    path = Doubled().output().folder / item.file
    assert item.size == path.stat().st_size and item.checksum == checksum(path)
    stat = (frames / "f1.npy").stat()
    assert item.source == f"{stat.st_size}-{stat.st_mtime_ns}"


def test_incremental_add_change_remove(frames):
    _build(Summed())
    assert sorted(PROCESSED) == ["f0", "f1", "f2", "f3"]
    assert Summed().complete()

    PROCESSED.clear()
    _build(Summed())
    assert PROCESSED == [], "a no-op rerun processes nothing"

    np.save(frames / "f4.npy", np.full((2, 2), 4))
    np.save(frames / "f1.npy", np.full((2, 2), 10))
    os.utime(frames / "f1.npy", ns=(1, 1))  # a different mtime even on coarse clocks
    (frames / "f0.npy").unlink()
    assert not Doubled().complete()
    _build(Summed())
    assert sorted(PROCESSED) == ["f1", "f4"]
    assert [d["sum"] for d in Summed().read()] == [80, 16, 24, 32]
    assert [n for n, _ in Doubled().output().items()] == ["f1", "f2", "f3", "f4"]
    manifest = Doubled().output().manifest
    assert files_on_disk(Doubled().output().folder) == files_of(manifest)
    assert sorted(manifest.retired) == ["f0.npy", "f1.npy"], "replaced files are kept for readers"


def test_skipped_items_are_not_redone(frames):
    np.save(frames / "empty.npy", np.zeros((0,)))
    _build(Doubled())
    assert "empty" in PROCESSED and len(Doubled().output()) == 4
    PROCESSED.clear()
    assert Doubled().complete()
    _build(Doubled())
    assert PROCESSED == []


def test_on_error_raise_names_item_and_file_publishes_nothing_and_keeps_the_finished_items(frames):
    np.save(frames / "bad.npy", np.array(["x"]))
    (frames / "f1.npy").rename(frames / "a1.npy")  # made before bad fails; the f* frames come after it
    task = Doubled()
    with pytest.raises(luisy.LuisyError, match=r"Doubled\(\): item 'bad' \(input file .*frames/bad\.npy\) failed: "
                                                r"ValueError: text is not a frame"):
        task.run()
    assert not task.output().exists()
    assert PROCESSED == ["a1", "bad"]
    (frames / "bad.npy").unlink()  # the user fixes the input; the next run keeps what was finished
    PROCESSED.clear()
    task.run()
    assert PROCESSED == ["f0", "f2", "f3"] and sorted(task.output().manifest.items) == ["a1", "f0", "f2", "f3"]
    assert not any(p.name.startswith(".luisy-tmp") for p in task.output().folder.parent.iterdir())


def test_on_error_raise_keeps_previous_state(frames):
    _build(Doubled())
    before = Doubled().output().manifest.items
    np.save(frames / "bad.npy", np.array(["x"]))
    _build(Doubled(), ok=False)
    assert Doubled().output().manifest.items == before


def test_on_error_skip_records_and_retries(frames):
    np.save(frames / "bad.npy", np.array(["x"]))

    @luisy.project_name("dirs")
    @luisy.requires(Frames)
    @luisy.directory_output(format="npy")
    class Lenient(Doubled):
        on_error = "skip"

    _build(Lenient())
    manifest = Lenient().output().manifest
    assert manifest.failed == {"bad": "ValueError: text is not a frame"}
    assert len(Lenient().output()) == 4 and not Lenient().complete()

    PROCESSED.clear()
    np.save(frames / "bad.npy", np.ones((2, 2)))
    _build(Lenient())
    assert PROCESSED == ["bad"]
    assert Lenient().output().manifest.failed == {} and Lenient().complete()


def test_custom_run_with_writer(luisy_working_dir):
    @luisy.project_name("dirs")
    @luisy.directory_output(format="txt")
    class Written(luisy.DirectoryTask):
        def run(self):
            with self.output().writer(self) as writer:
                for i in range(3):
                    writer.write(f"part/{i}", f"text {i}")
                assert not self.output().exists(), "nothing is visible before run() returns"

    _build(Written())
    assert dict(Written().output().items()) == {"part/0": "text 0", "part/1": "text 1", "part/2": "text 2"}
    assert Written().output().paths()[0].relative_to(Written().output().folder).as_posix() == "part/0.txt"


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/../../b", "x\0y", "_luisy_manifest.json", "", "a//b"])
def test_item_names_that_escape_are_rejected(tmp_path, name):
    target = DirectoryTarget(tmp_path / "out", owner="T()")
    with pytest.raises(ValueError, match=r"T\(\): item name"):
        with target.writer() as writer:
            writer.write(name, b"x")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_publish_that_fails_keeps_the_old_state_and_no_staging(tmp_path):
    target = DirectoryTarget(tmp_path / "out", owner="T()")
    target.write({"a": 1})
    with pytest.raises(FileNotFoundError):
        with target.writer() as writer:
            writer.write("b", 2)
            writer.write("part/c", 3)
            (writer.staging.path / "part" / "c.pkl").unlink()  # the publish cannot move it in
    assert dict(target.items()) == {"a": 1}
    assert not any(p.name.startswith(".luisy-tmp") for p in tmp_path.iterdir())

    target.write({"b": 2, "part/c": 3})
    assert dict(target.items()) == {"b": 2, "part/c": 3}
    assert files_on_disk(target.folder) == files_of(target.manifest)


def test_a_folder_where_an_item_file_goes_is_left_alone_and_the_item_named_otherwise(frames):
    task = Doubled()
    (task.output().folder / "f1.npy").mkdir(parents=True)
    (task.output().folder / "f1.npy" / "inside.txt").write_text("put here")
    _build(task)
    out = Doubled().output()
    assert int(dict(out.items())["f1"][0, 0]) == 2
    assert out.manifest.items["f1"].file != "f1.npy"
    assert (out.folder / "f1.npy" / "inside.txt").read_text() == "put here"


def test_unknown_directory_format():
    with pytest.raises(ValueError, match="unknown format 'xyz'"):
        @luisy.directory_output(format="xyz")
        class Bad(luisy.DirectoryTask):
            pass


def test_processes_2_gives_the_same_result_and_tolerates_lambdas(frames, luisy_working_dir):
    @luisy.project_name("dirs")
    @luisy.raw
    @luisy.make_directory_output(lambda path: np.load(path), regex_pattern=r"\.npy$")
    class ByLambda(luisy.ExternalTask):
        def get_folder_name(self):
            return "frames"

    @luisy.project_name("dirs")
    @luisy.requires(ByLambda)
    @luisy.directory_output(format="npy")
    class Parallel(luisy.DirectoryTask):
        processes = 2

        def process(self, name, obj):
            return np.array([obj[0, 0], os.getpid()])

    for i in range(4, 40):
        np.save(frames / f"f{i:02d}.npy", np.full((2, 2), i))
    _build(Parallel())
    items = dict(Parallel().output().items())
    assert len(items) == 40 and int(items["f17"][0]) == 17
    pids = {int(item[1]) for item in items.values()}
    assert len(pids) == 2 and os.getpid() not in pids, "items ran in two other processes"
    for name, item in Parallel().output().manifest.items.items():
        assert checksum(Parallel().output().folder / item.file) == item.checksum, name


def test_processes_from_luigi_config(frames):
    from luisy.config import Run, current

    parser = luigi.configuration.get_config()
    if not parser.has_section("luisy"):
        parser.add_section("luisy")
    parser.set("luisy", "processes", "3")
    try:
        assert current().processes == 3 and current().processes_for(1) == 1
        assert Run.resolve(processes=2).processes_for(None) == 2, "luisy.build(processes=...) wins over the config"
    finally:
        parser.remove_option("luisy", "processes")
    assert current().processes == 1


def test_parallel_on_error_raise_publishes_nothing(frames):
    np.save(frames / "bad.npy", np.array(["x"]))

    @luisy.project_name("dirs")
    @luisy.requires(Frames)
    @luisy.directory_output(format="npy")
    class ParallelStrict(Doubled):
        processes = 2

        def process(self, name, obj):
            if name == "bad":
                raise ValueError(f"in process {os.getpid()}")
            return obj

    with pytest.raises(luisy.LuisyError, match=r"item 'bad' \(input file .*bad\.npy\) failed: ValueError") as error:
        ParallelStrict().run()
    worker = int(re.search(r"in process (\d+)", str(error.value))[1])
    assert worker != os.getpid(), "the item ran in a worker process"
    assert not ParallelStrict().output().exists()


def test_progress_percentage_and_status_message(frames):
    task = Doubled()
    percentages, messages = [], []
    task.set_progress_percentage = percentages.append
    task.set_status_message = messages.append
    task.run()
    assert percentages[-1] == 100
    assert messages[-1].startswith("4/4 items, 0 failed, ETA 0s")


def test_two_processes_publishing_at_once_never_mix(frames, luisy_working_dir):
    import subprocess
    import sys
    import textwrap

    for i in range(4, 150):
        np.save(frames / f"f{i:03d}.npy", np.full((8, 8), i))
    script = textwrap.dedent(f"""
        import sys, luisy, numpy as np
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        luisy.set_working_dir({str(luisy_working_dir)!r})
        from directory_tasks import Doubled
        Doubled().run()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    out = Doubled().output()
    manifest = out.manifest
    assert len(manifest.items) == 150
    assert files_on_disk(out.folder) == files_of(manifest), "no unlisted or half-published files"
    for name, item in manifest.items.items():
        assert checksum(out.folder / item.file) == item.checksum, name
    assert not any(p.name.startswith(".luisy-tmp") for p in out.folder.parent.iterdir())


def test_a_live_writers_staging_folder_is_never_removed_and_a_dead_ones_is(tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap
    import threading
    import time

    out = tmp_path / "out"
    marker, go = tmp_path / "staged", tmp_path / "go"
    # Earlier, a writer made its staging folder, then took a lock in it to show it was alive; another
    # writer could remove the folder in between. The patched flock widens that moment to a second.
    script = textwrap.dedent(f"""
        import fcntl, os, time
        from luisy.directory import DirectoryTarget
        lock = fcntl.flock
        def slow_flock(file, operation):
            if str(getattr(file, "name", "")).endswith(".alive"):
                open({str(marker)!r}, "w").close()
                time.sleep(1)
            return lock(file, operation)
        fcntl.flock = slow_flock
        writer = DirectoryTarget({str(out)!r}).writer()
        open({str(marker)!r}, "w").close()  # the staging folder exists from here on
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
        writer.write("late", 1)
        writer.commit()
    """)

    def staging_of_child():
        child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
        for _ in range(1000):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.02)
        assert marker.exists(), child.stderr.read()
        marker.unlink()
        return child, [p for p in tmp_path.iterdir() if p.name.startswith(".luisy-tmp-")]

    live, (staging,) = staging_of_child()

    def write_early():
        with DirectoryTarget(out).writer() as writer:  # another writer of the same output meanwhile
            writer.write("early", 0)

    other = threading.Thread(target=write_early)
    other.start()
    other.join(timeout=1)
    assert other.is_alive(), "the other writer waits for the live one"
    assert staging.is_dir(), "a live writer's staging folder was removed"
    go.touch()
    assert live.wait(timeout=60) == 0, live.stderr.read()
    other.join(timeout=60)
    assert sorted(DirectoryTarget(out).manifest.items) == ["early"], "the waiting writer published last"

    go.unlink()
    dead, (staging,) = staging_of_child()
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    with DirectoryTarget(out).writer() as writer:
        writer.write("after", 2)
    assert not staging.exists(), "a dead writer's staging folder stayed"


@pytest.mark.parametrize("by_content", [False, True], ids=["size and mtime", "content"])
def test_a_file_moved_away_while_the_folder_is_listed_is_left_out(tmp_path, by_content):
    from luisy.directory.inputs import list_files, source_items

    for name in "abc":
        (tmp_path / f"{name}.txt").write_text(name)
    listed = list_files(str(tmp_path), "*.txt")
    (tmp_path / "b.txt").unlink()  # a hot folder's consumer moved it away meanwhile
    content = (lambda stats: [f"{rel}:{stat.st_size}" for rel, stat in stats]) if by_content else None
    items = source_items(str(tmp_path), listed, str, by_content=content)
    assert items.names == ["a", "c"]
    assert [os.path.basename(path) for path in items.paths] == ["a.txt", "c.txt"]
    assert len(items.fingerprints) == 2


def test_item_paths_are_joined_when_asked_for(tmp_path):
    import pickle

    from luisy.sources import Joined, SourceItems

    paths = Joined(str(tmp_path), ["a.txt", "sub/b.txt", "c.txt"])
    assert list(paths) == [str(tmp_path / "a.txt"), str(tmp_path / "sub" / "b.txt"), str(tmp_path / "c.txt")]
    assert list(paths[1:]) == list(paths)[1:] and isinstance(paths[1:], Joined)
    assert list(pickle.loads(pickle.dumps(paths))) == list(paths)
    items = SourceItems(["a", "sub/b", "c"], ["1", "2", "3"], paths, str)
    assert [item.path for item in items.select([2, 0])] == [paths[2], paths[0]]
    assert items[1:][0].load() == paths[1]


@luisy.project_name("dirs")
@luisy.interim
@luisy.requires(Frames)
@luisy.directory_output(format="npy")
class TripledFrames(luisy.DirectoryTask):
    """A second task over the folder of ``Doubled``."""

    priority = 1  # runs first

    def process(self, name, obj):
        if name == "f0":  # a file comes while the build runs: the next build processes it
            np.save(Frames().output().path + "/f9.npy", np.full((2, 2), 9))
        return obj * 3


@luisy.project_name("dirs")
@luisy.final
class BothOverFrames(luisy.Task):
    def requires(self):
        return [Doubled(), TripledFrames()]

    def run(self):
        self.write({"done": True})


def test_every_task_over_a_folder_gets_the_builds_one_listing_after_a_run_took_it(frames, luisy_working_dir,
                                                                                monkeypatch):
    from luisy import targets

    listed = []
    real = targets.list_files
    monkeypatch.setattr(targets, "list_files", lambda *args, **kwargs: listed.append(args[0]) or real(*args, **kwargs))
    assert luisy.build(BothOverFrames(), working_dir=luisy_working_dir)
    # The first run took the listing; the build kept it packed and gave the second the same
    # items, although a file came meanwhile: both are complete for the rest of the build.
    assert len(listed) == 1
    assert {name: int(a[0, 0]) for name, a in TripledFrames().output().items()} == {f"f{i}": 3 * i for i in range(4)}
    assert {name: int(a[0, 0]) for name, a in Doubled().output().items()} == {f"f{i}": 2 * i for i in range(4)}
    PROCESSED.clear()
    assert luisy.build(BothOverFrames(), working_dir=luisy_working_dir)
    assert PROCESSED == ["f9"], "the file that came is the next build's"


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("by_names", [False, True])
def test_a_packed_listing_unpacks_to_the_same_items(split, by_names):
    from luisy.sources import Joined, Packed, SourceItems, SplitSources

    names = [f"n{i}" for i in range(3000)] + ["ü/x"]
    paths = Joined("/in", names, ".txt") if by_names else Joined("/in", [f"{n}.txt" for n in names])
    items = SourceItems(names, [f"{i}-{i * 7}" for i in range(len(names))], paths, str)
    items.held_back = frozenset({"late"})
    given = SplitSources(items, 2) if split else items
    back = Packed.of(given).unpack()
    assert type(back) is type(given) and back.digest() == given.digest() and back.held_back == {"late"}
    assert list(back) == list(given) and back.part_digests(2) == given.part_digests(2)
    assert back.whole().paths.files == [f"{n}.txt" for n in names] if split else back.paths.files == paths.files
    assert Packed.of(SourceItems(["a\0b"], ["1-1"], ["/in/a"], str)) is None, "a NUL would split a value"
    assert Packed.of(SourceItems(["a"], [None], ["/in/a"], str)) is None
    assert Packed.of(SourceItems([], [], [], str)).unpack().names == []


@luisy.project_name("dirs")
@luisy.interim
@luisy.requires(Frames)
@luisy.directory_output(format="npy")
class AllButTheFirst(luisy.DirectoryTask):
    def input_items(self):
        return [item for item in super().input_items() if item.name != "f0"]

    def process(self, name, obj):
        PROCESSED.append(name)
        return obj


@luisy.project_name("dirs")
@luisy.final
@luisy.requires(AllButTheFirst)
@luisy.directory_output(format="json")
class SummedButTheFirst(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"sum": int(obj.sum())}


def test_a_task_picking_some_of_its_input_items_is_complete_after_its_run(frames, luisy_working_dir):
    assert luisy.build(SummedButTheFirst(), working_dir=luisy_working_dir)
    assert sorted(PROCESSED) == ["f1", "f2", "f3"] and AllButTheFirst().complete() and SummedButTheFirst().complete()
    PROCESSED.clear()
    assert luisy.build(SummedButTheFirst(), working_dir=luisy_working_dir)
    assert PROCESSED == []
    np.save(frames / "f4.npy", np.full((2, 2), 4))
    assert not AllButTheFirst().complete()
    assert luisy.build(SummedButTheFirst(), working_dir=luisy_working_dir)
    assert PROCESSED == ["f4"] and sorted(name for name, _ in SummedButTheFirst().output().items()) == [
        "f1", "f2", "f3", "f4"]


@pytest.mark.parametrize(("files", "suffix", "by_names"), [
    (["a.txt", "b.txt", "c.d.txt", "x/e.txt"], ".txt", True),
    (["a.txt", "..txt"], ".txt", False),  # a name that keeps its extension: the file is not its name and ".txt"
    (["a.txt", "b.txt"], "", False),  # no suffix the pattern promises
])
def test_a_listing_holds_its_files_by_name_where_each_is_its_name_and_the_patterns_extension(tmp_path, files,
                                                                                          suffix, by_names):
    from luisy.directory.inputs import source_items

    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    items = source_items(str(tmp_path), sorted(files), lambda path: Path(path).read_text(), suffix=suffix)
    assert [item.load() for item in items] == sorted(files)
    assert items.paths.files == sorted(files) and list(items.paths) == [str(tmp_path / f) for f in sorted(files)]
    if by_names:
        assert items.paths.names is items.names and items.paths.suffix == suffix, "no list of file names beside"
    else:
        assert items.paths.names == sorted(files) and items.paths.suffix == ""
    assert items[1:].paths.files == sorted(files)[1:] and items.select([0]).paths.files == sorted(files)[:1]


@pytest.mark.parametrize(("pattern", "suffix"), [
    ("*.txt", ".txt"), ("frame_*.png", ".png"), ("sub/*.npy", ".npy"), ("*", ""), ("*.tar.gz", ""),
    ("*.t?t", ""), ("data.txt", ""), ("*/x.txt", ""), ("*.[tc]sv", ""),
])
def test_the_extension_a_pattern_gives_every_file(pattern, suffix):
    from luisy.directory.inputs import pattern_suffix

    assert pattern_suffix(pattern) == suffix
