"""How to keep fingerprint records: the cost of recording N tasks, three ways, measured side by side.

* ``one file, rewritten``: every record in one JSON file, re-read and atomically replaced after
  each task under a lock (luisy's way until 2.0.0.dev; 1.x's ``.luisy.hash`` worked the same).
* ``append-only log``: one JSON line appended per task (``O_APPEND``); a lookup reads the log once
  and caches it. Appends from several machines over NFS can interleave or be lost, so this is a
  reference only.
* ``file per record``: luisy's way now: each task's record in its own small file, written beside
  its place and moved in with ``os.replace`` (atomic on local and network file systems).
* ``plain write per record``: the baseline: ``open(path, "w").write(...)`` per record, nothing else.

Each row stores N records (about 1 KB each, like a real record), then looks every one up in a
fresh process state. Usage: ``python benchmarks/records.py [--sizes 1000 10000]``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from luisy.digests import digest  # noqa: E402

RECORD = {"fingerprint": "0" * 32, "code": {f"mod.func_{i}": "f" * 32 for i in range(12)}, "params": {"n": "1"},
          "upstream": {"Up(n=1)": "a" * 32}, "versions": {"pandas": "2.3.3"}, "dynamic": []}


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def one_file(root: Path, keys: list[str]) -> tuple[float, float]:
    path = root / "records.json"
    start = time.perf_counter()
    for key in keys:
        with _dir_lock(root):
            records = json.loads(path.read_bytes()) if path.exists() else {}
            records[key] = RECORD
            _replace(path, json.dumps(records).encode())
    stored = time.perf_counter() - start
    start = time.perf_counter()
    records = json.loads(path.read_bytes())
    assert all(records[key] for key in keys)
    return stored, time.perf_counter() - start


def append_log(root: Path, keys: list[str]) -> tuple[float, float]:
    path = root / "records.log"
    start = time.perf_counter()
    for key in keys:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (json.dumps({"key": key, **RECORD}) + "\n").encode())
        os.close(fd)
    stored = time.perf_counter() - start
    start = time.perf_counter()
    records = {}
    for line in path.read_bytes().splitlines():
        entry = json.loads(line)
        records[entry.pop("key")] = entry
    assert all(records[key] for key in keys)
    return stored, time.perf_counter() - start


def file_per_record(root: Path, keys: list[str]) -> tuple[float, float]:
    from luisy.storage import LOCAL

    folder = root / "records"
    names = {key: folder / f"{key.replace('/', '~')}.{digest(key, size=8)}.json" for key in keys}
    start = time.perf_counter()
    for key in keys:
        LOCAL.put_bytes(str(names[key]), json.dumps(RECORD).encode())
    stored = time.perf_counter() - start
    start = time.perf_counter()
    assert all(json.loads(names[key].read_bytes()) for key in keys)
    return stored, time.perf_counter() - start


def plain_write(root: Path, keys: list[str]) -> tuple[float, float]:
    folder = root / "plain"
    folder.mkdir()
    start = time.perf_counter()
    for i, _ in enumerate(keys):
        with open(folder / f"{i}.json", "w") as f:
            f.write(json.dumps(RECORD))
    stored = time.perf_counter() - start
    start = time.perf_counter()
    assert all(json.loads((folder / f"{i}.json").read_bytes()) for i in range(len(keys)))
    return stored, time.perf_counter() - start


class _dir_lock:  # noqa: N801 - the lock the one-file way needs among concurrent writers
    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder, os.O_RDONLY)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)


WAYS = {"one file, rewritten": one_file, "append-only log": append_log, "file per record": file_per_record,
        "plain write per record": plain_write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--one-file-max", type=int, default=10000, help="skip the quadratic way above this N")
    args = parser.parse_args()
    print(f"{'N':>7}  {'way':<24} {'store µs/task':>14} {'lookup µs/task':>15} {'store vs plain':>15}")
    for n in args.sizes:
        keys = [f"proj/interim/Part_day=2026-01-{i:05d}.json" for i in range(n)]
        rows = {}
        for name, way in WAYS.items():
            if way is one_file and n > args.one_file_max:
                continue
            root = Path(tempfile.mkdtemp(prefix="luisy-records-"))
            try:
                (root / "records").mkdir()
                rows[name] = way(root, keys)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        plain = rows["plain write per record"][0]
        for name, (stored, looked) in rows.items():
            print(f"{n:>7}  {name:<24} {1e6 * stored / n:>14.1f} {1e6 * looked / n:>15.1f} {stored / plain:>14.2f}×")


if __name__ == "__main__":
    main()
