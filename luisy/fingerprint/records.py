"""The recorded fingerprints: one small file per output, in ``<working_dir>/<project>/.luisy-records/``.

A record is a JSON object: the fingerprint and what it was made of, so ``plan`` can say what
changed. Recording writes only the task's own file (beside its place, then ``os.replace``), so
it costs the same with 10 or 10 000 tasks, and several workers — on several machines sharing the
working directory over a network file system — never touch each other's records and need no
lock (see docs/reruns.rst for the measurements behind this).

luisy 1.x kept every hash string of a project in ``<project>/.luisy.hash``; a task without a
record of its own is looked up there, and a 1.x string reads as "recorded by another algorithm".
Records live where the outputs do (:mod:`luisy.storage`): on disk, or in memory in ``LuisyTestCase``.

On disk a record is one of luisy's own files (:mod:`luisy.regular_files`): one that is not a
regular file (a FIFO, a symbolic link, a folder) or is longer than :data:`RECORD_MAX_BYTES` is
none luisy wrote, and reading it is a :class:`~luisy.errors.BrokenFileError` naming it, never a
silent rerun that replaces it; one whose content does not parse, or is not of the shape luisy
writes (:data:`SHAPE`: a field of another type, a time no date shows), counts as missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import storage
from luisy.atomic import fit_name
from luisy.bounded import BoundedCache
from luisy.config import get_working_dir
from luisy.digests import digest
from luisy.errors import BrokenFileError
from luisy.parameters import significant_params
from luisy.paths import project_name_of, relative_posix
from luisy.regular_files import advised
from luisy.shapes import TIME, Check, MapOf, problem

RECORDS_DIR = ".luisy-records"
#: luisy 1.x's file of all a project's hashes, read where a task has no record of its own.
HASH_FILE = ".luisy.hash"
#: What to do about a 1.x hash file that is not one 1.x wrote (luisy 2 never writes it).
HASH_FILE_ADVICE = ("put back the file luisy 1.x wrote, or remove it (luisy 2 only reads that file, never "
                    "writes it; the tasks recorded only there then run again)")
#: A record (or 1.x's hash file) larger than this is not one luisy wrote: it is refused unread.
RECORD_MAX_BYTES = 1 << 26


def _is_requirement(value: Any) -> bool:
    return type(value) is list and len(value) == 2 and type(value[0]) is str and type(value[1]) is dict


_STRINGS = MapOf(str)
#: The shape of a record (see :mod:`luisy.shapes`).
SHAPE: dict[str, Any] = {
    "fingerprint": str, "code": _STRINGS, "versions": _STRINGS, "params": _STRINGS, "upstream": _STRINGS,
    "dynamic": [Check("a [task family, parameters] pair", _is_requirement)],
    "provenance": {
        "task": str, "task_id": str, "family": str, "class": str,
        "requires": [{"task": str, "task_id": str, "outputs": [str]}],
        "written_by": {"run": str, "id": str, "host": str, "user": str, "started": TIME},
    },
}


@dataclass(frozen=True)
class Malformed:
    """A record not of the shape luisy writes (:data:`SHAPE`): the file it is in, and what is wrong."""

    path: str
    problem: str


def location(task: luigi.Task) -> tuple[Path, str] | None:
    """``(project folder, key)`` for a task with a file-system output; ``None`` for one without.

    The key is the first output's path relative to the working directory, as in luisy 1.x.
    """
    outputs = [o for o in flatten(task.output()) if getattr(o, "path", None)]
    if not outputs:
        return None
    # Kept with the target, which a luisy task keeps per working directory: a no-op build of
    # 10 000 tasks asks for each place several times.
    first = outputs[0]
    key = (first.path, get_working_dir())
    known = getattr(first, "_luisy_record_place", None)
    if known is not None and known[0] == key:
        return known[1]
    place = _place(type(task), first.path)
    try:
        first._luisy_record_place = (key, place)
    except AttributeError:  # a target with __slots__
        pass
    return place


def _place(task_cls: type, path: str | os.PathLike[str]) -> tuple[Path, str]:
    """``(project folder, key)`` of the output at ``path`` of a task of ``task_cls``."""
    root = get_working_dir()
    return root / project_name_of(task_cls), relative_posix(path, root)


def record_path(project: Path, key: str, folder: str = RECORDS_DIR) -> Path:
    """The file of the record under ``key`` (in ``folder`` of ``project``): readable, and unique by
    a digest of the whole key."""
    return project / folder / f"{fit_name(key.replace('/', '~'), 180)}.{digest(key, size=8)}.json"


def lookup(task: luigi.Task) -> Any:
    """The task's record (a dict; a str if luisy 1.x wrote it), or ``None``."""
    where = location(task)
    return None if where is None else lookup_at(*where)


def recorded_for_another_task(task: luigi.Task, path: str | os.PathLike[str]) -> bool:
    """Whether luisy 2 recorded the output at ``path`` for a task other than ``task`` (one whose
    parameter values differ); a 1.x output that hash update mode accepted for ``task`` is its own."""
    record = lookup_at(*_place(type(task), path))
    return isinstance(record, dict) and record.get("params") != significant_params(task)


def lookup_at(project: Path, key: str) -> Any:
    """The record under ``key`` in ``project``'s records (or 1.x's hash file), or ``None``: also
    for one of the wrong shape, so that the task runs again and replaces it."""
    found = read_at(project, key)
    return None if isinstance(found, Malformed) else found


def read_at(project: Path, key: str) -> Any:
    """As :func:`lookup_at`, but a record of the wrong shape is a :class:`Malformed` (which
    ``luisy show`` reports)."""
    record = _load(os.fspath(record_path(project, key)))
    if record is not None:
        return record
    return _load(os.fspath(project / HASH_FILE), {}).get(key)


def store(task: luigi.Task, record: dict[str, Any]) -> None:
    """Record ``record`` for ``task``, replacing its previous record."""
    where = location(task)
    if where is not None:
        path = os.fspath(record_path(*where))
        data = json.dumps(record, indent=1, sort_keys=True).encode("utf-8")
        store_in = storage.active()
        store_in.put_bytes(path, data)
        _remember(path, store_in.token(path), _decode(data, path))  # a wrapper asks at once if it is complete


def _load(path: str, default: Any = None) -> Any:
    where = storage.active()
    version = where.token(path)
    if version is None:
        return default
    try:
        # Records are replaced, never edited: the token is the version.
        known = _read.get(path)
        if known is not None and known[0] == version:
            return known[1]
        return _remember(path, version, _decode(where.read_bytes(path, RECORD_MAX_BYTES), path))
    except BrokenFileError as error:  # not a file luisy wrote (a FIFO, a link, a folder): say so, touch nothing
        if path.endswith(HASH_FILE):
            raise advised(error, HASH_FILE_ADVICE) from None
        raise
    # Unreadable, or nested too deeply for the parser: as if never recorded, so the task runs again.
    except (OSError, ValueError, RecursionError):
        return default


# Records read or written by this process, by path, with the token (inode, size, mtime) of the
# file they came from: a file replaced since has another token, so nothing stale is returned.
_read: BoundedCache[str, tuple[Any, Any]] = BoundedCache(8192)


def _remember(path: str, version: Any, record: Any) -> Any:
    _read.put(path, (version, record))
    return record


def _decode(raw: bytes, path: str) -> Any:
    # Checked here, once per version of the file (it is cached), not at every complete().
    data = json.loads(raw)
    if path.endswith(HASH_FILE):  # 1.x's strings; an object there is read as a record
        return {key: _checked(entry, path) for key, entry in data.items()} if isinstance(data, dict) else {}
    return _checked(data, path) if isinstance(data, dict) else None


def _checked(record: Any, path: str) -> Any:
    """``record`` (read from ``path``), or a :class:`Malformed` if it is an object of another shape
    than :data:`SHAPE`."""
    wrong = problem(record, SHAPE) if isinstance(record, dict) else None
    return record if wrong is None else Malformed(path, wrong)
