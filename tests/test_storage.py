"""The storages on their own: local files and memory keep the same promises."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from luisy import storage
from luisy.atomic import staged
from luisy.storage.remote import RemoteStorage


def _write_text(obj, path):
    path.write_text(obj)


def _read_text(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(params=["local", "memory", "fsspec memory"])
def where(request, tmp_path):
    if request.param == "local":
        yield storage.LOCAL, str(tmp_path / "sub" / "out.txt")
    elif request.param == "memory":
        with storage.in_memory() as memory:
            yield memory, str(tmp_path / "sub" / "out.txt")
    else:  # an object store's storage, on fsspec's in-memory file system
        yield storage.for_path("/memory:/"), f"/memory:/{uuid.uuid4().hex}/sub/out.txt"


def test_save_load_exists_and_token(where):
    store, path = where
    assert not store.exists(path) and store.token(path) is None
    store.save(path, "one", _write_text)
    first = store.token(path)
    assert store.exists(path) and store.load(path, _read_text) == "one" and first is not None
    store.save(path, "two", _write_text)
    assert store.load(path, _read_text) == "two" and store.token(path) != first


def test_a_save_in_a_failed_staged_block_is_dropped(where):
    store, path = where
    store.save(path, "kept", _write_text)
    with pytest.raises(RuntimeError), staged():
        store.save(path, "dropped", _write_text)
        raise RuntimeError("the run fails after writing")
    assert store.load(path, _read_text) == "kept"


def test_bytes_replace_atomically(where):
    store, path = where
    with pytest.raises(FileNotFoundError):
        store.read_bytes(path, 100)
    store.put_bytes(path, b"abc")
    assert store.read_bytes(path, 100) == b"abc"


def test_memory_copies_what_it_stores():
    with storage.in_memory() as memory:
        obj = {"a": [1]}
        memory.save("p", obj, _write_text)
        obj["a"].append(2)
        loaded = memory.load("p", _read_text)
        loaded["a"].append(3)
        assert memory.load("p", _read_text) == {"a": [1]}
    assert storage.active() is storage.LOCAL


def test_memory_input_items_from_a_mapping_or_a_list():
    memory = storage.MemoryStorage({"in": {"x": 1, "y": 2}, "listed": ["a", "b"]})
    items = memory.input_items("in", lambda: pytest.fail("no files are listed in memory"))
    assert [(i.name, i.load()) for i in items] == [("x", 1), ("y", 2)]
    assert items[0].fingerprint != items[1].fingerprint
    assert [(i.name, i.load()) for i in memory.input_items("listed", list)] == [("0", "a"), ("1", "b")]


def test_the_local_lock_excludes_other_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    script = textwrap.dedent(f"""
        from luisy import storage
        for _ in range(200):
            with storage.LOCAL.lock({str(counter)!r}):
                value = int(open({str(counter)!r}).read())
                storage.LOCAL.put_bytes({str(counter)!r}, str(value + 1).encode())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert counter.read_text() == "600", "no increment was lost"


def test_fingerprints_change_with_the_data(where):
    store, path = where
    assert store.fingerprint(path) is None
    store.save(path, "one", _write_text)
    first = store.fingerprint(path)
    store.save(path, "another", _write_text)
    assert first is not None and store.fingerprint(path) not in (None, first)


def test_an_object_store_url_is_kept_as_an_alias_path_and_shown_as_its_url():
    from luisy import urls

    assert urls.alias("s3://lake/data/") == "/s3:/lake/data"
    assert urls.alias("az://c") == "/az:/c" and urls.alias("/tmp/data") is None and urls.alias("file:///x") is None
    assert urls.local_path("file:///tmp/x") == "/tmp/x"
    assert urls.url("/s3:/lake/data/p/x.csv") == "s3://lake/data/p/x.csv"
    assert urls.url("/tmp/s3:/x") is None
    shown = urls.shown("wrote /s3:/lake/x and /gs:/b/y, not /tmp/a:/b")
    assert shown == "wrote s3://lake/x and gs://b/y, not /tmp/a:/b"
    assert storage.for_path("/tmp/x") is storage.LOCAL
    in_memory = storage.for_path("/memory:/x")
    assert isinstance(in_memory, RemoteStorage) and in_memory.scheme == "memory"


def test_a_directory_pipeline_runs_in_an_fsspec_store_and_reruns_nothing(tmp_path, monkeypatch):
    """``memory://`` stands for any object store here (the real servers' tests are slow)."""
    import io

    import fsspec
    import numpy as np

    import luisy

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "memstore_tasks.py").write_text(textwrap.dedent("""
        import luisy

        @luisy.raw
        @luisy.directory_input(pattern="*.npy")
        class Frames(luisy.ExternalTask):
            def get_folder_name(self):
                return "frames"

        @luisy.interim
        @luisy.requires(Frames)
        @luisy.directory_output(format="npy")
        class Doubled(luisy.DirectoryTask):
            def process(self, name, obj):
                return obj * 2

        @luisy.final
        @luisy.requires(Doubled)
        @luisy.json_output
        class Total(luisy.Task):
            def run(self):
                self.write({"total": int(sum(a.sum() for a in self.input().read()))})
    """))
    from memstore_tasks import Total

    root = f"mem-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    for i in range(4):
        data = io.BytesIO()
        np.save(data, np.full((2, 2), i))
        fs.pipe_file(f"/{root}/memstore_tasks/raw/frames/f{i}.npy", data.getvalue())
    assert luisy.build([Total()], working_dir=f"memory://{root}")
    assert fs.cat_file(f"/{root}/memstore_tasks/final/Total.json") == b'{"total": 48}'
    manifest = f"/{root}/memstore_tasks/interim/Doubled/_luisy_manifest.json"
    version = fs.info(manifest)["created"]
    with luisy.working_dir(f"memory://{root}"):
        assert Total().complete(), "complete() asks the store, outside a build too"
    assert luisy.build([Total()], working_dir=f"memory://{root}")
    assert fs.info(manifest)["created"] == version, "a rerun publishes nothing"


def test_input_folders_in_a_store_list_paths_and_marked_sub_folders(tmp_path):
    """``paths()`` and ``len()`` of an input folder in a store come from its listing; a sub-folder
    item is read from a local copy of the whole folder, and its marker counts though hidden."""
    import fsspec

    import luisy
    from luisy.targets import DirectoryInputTarget

    root = f"/memory:/in-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    for rel in ("a.txt", "b.txt", "skip.csv", "runs/r1/x.txt", "runs/r1/.done", "runs/r2/x.txt"):
        fs.pipe_file(f"{root[len('/memory:'):]}/{rel}", b"data of " + rel.encode())
    with luisy.working_dir(root.replace("/memory:/", "memory://")):
        files = DirectoryInputTarget(root, pattern="*.txt")
        assert [p.name for p in files.paths()] == ["a.txt", "b.txt"] and len(files) == 2
        assert len(list(files.read())) == 2
        runs = DirectoryInputTarget(os.path.join(root, "runs"), folders=True, marker=".done",
                                    read_file_func=lambda path: sorted(os.listdir(path)))
        assert [(name, obj) for name, obj in runs.items()] == [("r1", [".done", "x.txt"])]


def test_sub_folder_items_are_read_by_the_given_reader(tmp_path):
    from luisy.targets import DirectoryInputTarget

    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "x.txt").write_text("x")
    (tmp_path / "runs" / "r1" / ".done").write_text("")
    (tmp_path / "runs" / "r2").mkdir()
    (tmp_path / "runs" / "r2" / "x.txt").write_text("x")
    runs = DirectoryInputTarget(tmp_path / "runs", folders=True, marker=".done",
                                read_file_func=lambda path: sorted(os.listdir(path)))
    assert list(runs.items()) == [("r1", [".done", "x.txt"])]
