"""The fingerprint an output is shared under on a remote: the same on every machine that has the same code and data.

A task's own fingerprint (:mod:`luisy.fingerprint.task`) takes external inputs by size and
modification time by default, which differ between two machines holding the same bytes. The
shared fingerprint takes them by content:

* an external task: the content digests of its files (the digests ``[luisy] input_fingerprint =
  content`` uses, cached the same way). Where its files are not here, the fingerprint the remote
  recorded for them, since they can be fetched from there; else ``missing``;
* any other task: its code fingerprint, its significant parameters and the shared fingerprints
  of what it requires (statically, and the dynamic requirements its last run yielded). A
  directory task counts as such a task: its output is not shared, what it depends on is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import luigi
from luigi.task import flatten

from luisy import config, storage
from luisy.digests import digest
from luisy.fingerprint.code import code_fingerprint
from luisy.fingerprint.content import digests as content_digests
from luisy.fingerprint.task import MISSING, Vanished, is_external, recorded_dynamic
from luisy.parameters import significant_params

__all__ = ["shared", "file_digests"]

#: The remote's recorded fingerprint of an external task (``None``: it has none).
Recorded = Callable[[luigi.Task], "str | None"]


def shared(task: luigi.Task, recorded: Recorded) -> str:
    """The shared fingerprint of ``task``; ``recorded`` answers for external inputs that are not here."""
    memo = config.context().caches.sharing
    key = "fingerprint:" + task.task_id
    if memo is not None and key in memo:
        return str(memo[key])
    found = _shared(task, recorded)
    if memo is not None:
        memo[key] = found
    return found


def _shared(task: luigi.Task, recorded: Recorded) -> str:
    if isinstance(task, Vanished):
        return MISSING
    if is_external(task):
        here = [file_digests(os.fspath(o.path)) for o in flatten(task.output()) if getattr(o, "path", None)]
        found = [files for files in here if files is not None]
        if here and len(found) == len(here):
            return digest(*(f"{rel}:{value}" for files in found for rel, (value, _) in sorted(files.items())))
        return recorded(task) or MISSING
    required = flatten(task.requires()) + recorded_dynamic(task)
    return digest(code_fingerprint(type(task)).digest,
                  *(f"{k}={v}" for k, v in significant_params(task).items()),
                  *sorted(f"{t.task_id}>{shared(t, recorded)}" for t in required))


def file_digests(path: str) -> dict[str, tuple[str, int]] | None:
    """The content digest and size of each file at ``path`` in the working directory's storage
    (a file: under its own name; a folder: under each file's path relative to it), or ``None``
    if nothing is there. The digests come from (and go to) the digest cache of
    :mod:`luisy.fingerprint.content`."""
    found: dict[str, tuple[str, int]] = {}

    def collect(folder: str, files: Sequence[tuple[str, os.stat_result]], scope: str) -> list[str]:
        values = content_digests(folder, files, scope)
        found.update((rel, (value, stat.st_size)) for (rel, stat), value in zip(files, values, strict=True))
        return values

    if storage.active().fingerprint(path, collect) is None:
        return None
    return found
