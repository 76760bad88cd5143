"""The storages on their own: local files and memory keep the same promises."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from luisy import storage
from luisy.atomic import staged


def _write_text(obj, path):
    path.write_text(obj)


def _read_text(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(params=["local", "memory"])
def where(request, tmp_path):
    if request.param == "local":
        yield storage.LOCAL, str(tmp_path / "sub" / "out.txt")
    else:
        with storage.in_memory() as memory:
            yield memory, str(tmp_path / "sub" / "out.txt")


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
