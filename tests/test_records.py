"""Fingerprint records: one file per task, written by many processes at once, 1.x's file still read."""

from __future__ import annotations

import json
import multiprocessing

import luisy
from luisy.fingerprint import records


@luisy.project_name("rec")
@luisy.interim
@luisy.json_output
class Part(luisy.Task):
    n = luisy.IntParameter()


def _store_many(args: tuple[str, int, int]) -> None:
    working_dir, writer, count = args
    luisy.set_working_dir(working_dir)
    for n in range(count):
        records.store(Part(n=writer * 1000 + n), {"fingerprint": f"w{writer}-{n}", "writer": writer})
        records.store(Part(n=-1), {"fingerprint": f"shared by {writer}", "pad": "x" * (n * 50)})


def test_processes_writing_at_once_lose_no_record_and_leave_none_torn(luisy_working_dir):
    writers, count = 4, 150
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        pool.map(_store_many, [(str(luisy_working_dir), w, count) for w in range(writers)])
    for w in range(writers):
        for n in range(count):
            assert records.lookup(Part(n=w * 1000 + n)) == {"fingerprint": f"w{w}-{n}", "writer": w}
    shared = records.lookup(Part(n=-1))
    assert shared["fingerprint"].startswith("shared by ") and len(shared["pad"]) % 50 == 0
    folder = luisy_working_dir / "rec" / records.RECORDS_DIR
    assert len(list(folder.iterdir())) == writers * count + 1, "no temporary file is left behind"


def test_a_task_without_a_record_is_looked_up_in_1x_hash_file(luisy_working_dir):
    project = luisy_working_dir / "rec"
    project.mkdir()
    (project / records.HASH_FILE).write_text(json.dumps({"rec/interim/Part_n=1.json": "0123abcd"}))
    assert records.lookup(Part(n=1)) == "0123abcd"
    assert records.lookup(Part(n=2)) is None
    records.store(Part(n=1), {"fingerprint": "new"})
    assert records.lookup(Part(n=1)) == {"fingerprint": "new"}, "a record of its own wins over 1.x's"


def test_an_unreadable_record_counts_as_none(luisy_working_dir):
    records.store(Part(n=3), {"fingerprint": "f"})
    path = records.record_path(*records.location(Part(n=3)))
    path.write_text("{torn")
    assert records.lookup(Part(n=3)) is None


def test_records_kept_in_memory_do_not_keep_the_storage_alive():
    import gc
    import weakref

    from luisy import storage

    with storage.in_memory() as memory:
        records.store(Part(n=5), {"fingerprint": "f"})
        assert records.lookup(Part(n=5)) == {"fingerprint": "f"}
        gone = weakref.ref(memory)
    del memory
    gc.collect()
    assert gone() is None, "a cache holds a test's in-memory storage"
