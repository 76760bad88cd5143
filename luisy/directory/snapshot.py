"""Remembering an input folder's listing by the modification times of its folders.

With ``input_fingerprint = "write-once"`` input files are taken to be written once, under their
final name, and never edited in place (detector frames, exports, downloads moved into place). A
folder's modification time changes whenever an entry is added to it, removed or renamed; so
while every folder a listing went through has the modification time (and inode) it had then,
the listing is unchanged, and its digest is reused without listing and ``stat``-ing a million
files again. A file edited in place changes no folder's time: it is noticed at the next listing,
when a file is added, removed or renamed in its folder.

A snapshot is kept per folder and selection in
``<working_dir>/.luisy-digests/<folder>.<digest>.listing.json``. Runs write it; ``plan`` and
``status`` only read it. A folder modified within :data:`RACY_SECONDS` of being listed is not
remembered: a second change within the same clock tick would leave its time as it was (git's
"racy" rule). A snapshot is a cache: one that is broken is ignored and made again (see
:mod:`luisy.fingerprint.content`).
"""

from __future__ import annotations

import os
import time

from luisy import config
from luisy.cachefiles import RACY_SECONDS, cache_path, read_cache, write_cache
from luisy.digests import newest_mtime_ns
from luisy.sources import SourceItems

#: ``(folder path, inode, modification time in ns)`` of each folder a listing went through; ``None``
#: for a file reached through a symbolic link, whose folder is not among them (its target can be
#: replaced or removed without any of them changing), so the listing cannot be remembered.
Folders = list[tuple[str, int, int] | None]


def recall(folder: str, scope: str) -> str | None:
    """The digest of the folder's last remembered listing, if none of its folders changed since."""
    data = read_cache(_path(folder, scope))
    try:
        seen, known = data["folders"], data["digest"]
        if not seen or not isinstance(known, str):
            return None
        for path, inode, mtime_ns in seen:
            info = os.stat(path)
            if (info.st_ino, info.st_mtime_ns) != (inode, mtime_ns):
                return None
    except (OSError, ValueError, KeyError, TypeError):  # none yet, gone, or unreadable: list again
        return None
    return known


def remember(folder: str, scope: str, seen: Folders, items: SourceItems) -> None:
    """Keep the digest of ``items`` as the listing of ``folder`` while the folders in ``seen``
    (stat'ed before each was listed) keep their times. Only within a run; not if a file was
    reached through a symbolic link, nor if a folder or a file was modified within
    :data:`RACY_SECONDS` (a file still being written under its final name would be remembered
    half-written)."""
    if not config.current().id or not seen or None in seen:
        return
    known = [entry for entry in seen if entry is not None]
    recent = time.time_ns() - int(RACY_SECONDS * 1e9)
    if any(mtime_ns > recent for _, _, mtime_ns in known) or newest_mtime_ns(items.fingerprints) > recent:
        return
    folders = [(os.path.abspath(where), inode, mtime_ns) for where, inode, mtime_ns in known]  # any cwd
    write_cache(_path(folder, scope), {"folders": folders, "digest": items.digest()})


def _path(folder: str, scope: str) -> str:
    return cache_path(folder, scope, "listing")
