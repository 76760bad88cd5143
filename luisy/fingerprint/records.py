"""The recorded fingerprints: ``<working_dir>/<project>/.luisy.hash``, as in luisy 1.x.

A JSON object keyed by output path relative to the working directory. luisy 1.x stored a hash
string per key; luisy 2 stores an object (the fingerprint and what it was made of, so ``plan``
can say what changed) and reads 1.x strings as "recorded by another algorithm".

Writers take an exclusive ``flock`` on the project folder and replace the file atomically, so
tasks finishing at the same time in several processes never lose each other's records. Inside
:func:`luisy.targets.memory_store` (``LuisyTestCase``) records live in the store instead.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy.atomic import temp_sibling
from luisy.config import get_working_dir
from luisy.paths import project_name_of
from luisy.targets import active_memory_store

HASH_FILE = ".luisy.hash"


def location(task: luigi.Task) -> tuple[Path, str] | None:
    """``(hash file, key)`` for a task with a file-system output; ``None`` for one without."""
    outputs = [o for o in flatten(task.output()) if getattr(o, "path", None)]
    if not outputs:
        return None
    root = get_working_dir()
    key = Path(os.path.relpath(os.path.abspath(outputs[0].path), root)).as_posix()
    return root / project_name_of(type(task)) / HASH_FILE, key


def load_all(hash_file: Path) -> dict[str, Any]:
    """Every record of one hash file (``{}`` if there is none or it is unreadable)."""
    store = active_memory_store()
    if store is not None:
        return dict(store.get(os.fspath(hash_file), {}))
    try:
        stat = hash_file.stat()
        return dict(_parse(os.fspath(hash_file), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=16)  # the file is replaced, never edited: its identity is its version
def _parse(path: str, inode: int, size: int, mtime_ns: int) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def lookup(task: luigi.Task) -> Any:
    """The task's record (a dict; a str if luisy 1.x wrote it), or ``None``."""
    where = location(task)
    return None if where is None else load_all(where[0]).get(where[1])


def store(task: luigi.Task, record: dict[str, Any]) -> None:
    """Record ``record`` for ``task``, merging with records other processes write at the same time."""
    where = location(task)
    if where is None:
        return
    hash_file, key = where
    memory = active_memory_store()
    if memory is not None:
        memory.setdefault(os.fspath(hash_file), {})[key] = record
        return
    hash_file.parent.mkdir(parents=True, exist_ok=True)
    # The file itself is replaced, so the lock is on its folder (no lock file left behind).
    folder = os.open(hash_file.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        records = load_all(hash_file)
        records[key] = record
        tmp = temp_sibling(hash_file)
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, hash_file)
    finally:
        os.close(folder)
