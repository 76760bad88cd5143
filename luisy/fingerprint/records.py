"""The recorded fingerprints: ``<working_dir>/<project>/.luisy.hash``, as in luisy 1.x.

A JSON object keyed by output path relative to the working directory. luisy 1.x stored a hash
string per key; luisy 2 stores an object (the fingerprint and what it was made of, so ``plan``
can say what changed) and reads 1.x strings as "recorded by another algorithm".

Writers hold the storage's lock on the file and replace it atomically, so tasks finishing at
the same time in several processes never lose each other's records. The file lives where the
outputs do (:mod:`luisy.storage`): on disk, or in memory in ``LuisyTestCase``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import storage
from luisy.config import get_working_dir
from luisy.paths import project_name_of

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
    where = storage.active()
    path = os.fspath(hash_file)
    version = where.token(path)
    if version is None:
        return {}
    try:
        return dict(_parse(where, path, version))
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=16)  # the file is replaced, never edited: its token is its version
def _parse(where: Any, path: str, version: Any) -> dict[str, Any]:
    data = json.loads(where.read_bytes(path))
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
    path = os.fspath(hash_file)
    with storage.active().lock(path):
        records = load_all(hash_file)
        records[key] = record
        storage.active().put_bytes(path, json.dumps(records, indent=1, sort_keys=True).encode("utf-8"))
