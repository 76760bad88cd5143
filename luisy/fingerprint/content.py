"""Input files fingerprinted by content: BLAKE2b digests, cached by (size, mtime, inode).

``[luisy] input_fingerprint = content`` (or ``input_fingerprint = "content"`` on an external
task) fingerprints input files by their bytes instead of their size and modification time, so a
file rewritten with the same bytes, or copied over with the same bytes, does not make anything
rerun. Hashing reads every byte; to do it only for files that may have changed, each digest is
kept with the file's size, modification time and inode in
``<working_dir>/.luisy-digests/<digest of folder and selection>.json``. A file whose three
values are unchanged is not read again.

The cache is written by runs (``luisy run``, ``luisy.build``) and by ``luisy watch``'s rescans;
``plan`` and ``status`` read it and write nothing, so ``plan`` can say which files were touched
since the last run without their content changing. A file modified within
:data:`~luisy.cachefiles.RACY_SECONDS` of being hashed is not cached (a second write within the
same clock tick would go unnoticed), as git does. Cache
files are replaced atomically; two writers at once lose at most each other's new entries, which
costs a re-read, never a wrong digest.

The cache files are disposable (see :mod:`luisy.cachefiles`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from luisy import config
from luisy.cachefiles import RACY_SECONDS, cache_path, read_cache, write_cache
from luisy.digests import file_digest
from luisy.errors import LuisyError

__all__ = ["MODES", "mode_of", "digests", "noticing_touched", "keeping_digests"]

logger = logging.getLogger("luisy")

MODES = config.INPUT_FINGERPRINTS


def mode_of(task_or_class: Any) -> str:
    """How the inputs of an external task are fingerprinted: its ``input_fingerprint`` (or luisy
    1.x-era ``fingerprint_content = True``), else ``[luisy] input_fingerprint`` of the run."""
    own = getattr(task_or_class, "input_fingerprint", None)
    if own is None and getattr(task_or_class, "fingerprint_content", False):
        own = "content"
    if own is None:
        return config.current().input_fingerprint
    if own not in MODES:
        name = task_or_class.__name__ if isinstance(task_or_class, type) else type(task_or_class).__name__
        raise LuisyError(f"{name}.input_fingerprint = {own!r}: must be one of {', '.join(MODES)}")
    return own


@contextmanager
def keeping_digests() -> Iterator[None]:
    """Inside the block, computing digests updates the cache outside a run too (``luisy watch``:
    its rescans would hash every new file again on each rescan until the first run)."""
    with config.caching("digests", make=lambda: True):
        yield


@contextmanager
def noticing_touched() -> Iterator[dict[str, set[str]]]:
    """Inside the block, collect input files whose content is unchanged though their size,
    modification time or inode changed since the last run: folder → relative paths."""
    with config.caching("touched", fresh=True) as found:
        yield found


def digests(folder: str, files: Sequence[tuple[str, os.stat_result]], scope: str) -> list[str]:
    """The content digest of each file (path relative to ``folder``, its ``stat``), in order.

    ``scope`` names the selection of files (a pattern): each folder and scope has its own cache,
    so that entries of files no longer selected can be dropped.
    """
    path = cache_path(folder, scope)
    cache = _load(path)
    fresh: dict[str, list[Any]] = {}
    touched = []
    out = []
    now = time.time()
    for rel, stat in files:
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = cache.get(rel)
        if entry is not None and entry[:3] == key:
            fresh[rel] = entry
            out.append(entry[3])
            continue
        found = file_digest(os.path.join(folder, rel))
        if entry is not None and entry[3] == found:
            touched.append(rel)
        if now - stat.st_mtime_ns / 1e9 > RACY_SECONDS:
            fresh[rel] = [*key, found]
        out.append(found)
    caches = config.context().caches
    if caches.touched is not None and touched:
        caches.touched.setdefault(folder, set()).update(touched)
    if fresh != cache and (config.current().id or caches.digests):  # see the module docstring
        _save(path, fresh)
    return out


def _load(path: str) -> dict[str, list[Any]]:
    data = read_cache(path)  # none yet, or unreadable: every file is hashed
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, list) and len(v) == 4}


def _save(path: str, entries: dict[str, list[Any]]) -> None:
    write_cache(path, {"files": entries})
