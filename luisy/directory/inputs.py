"""Listing an input folder: the files a pattern selects, and the input items they make."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from typing import Any

from luisy.atomic import TMP_MARKER
from luisy.directory.sources import SourceItems
from luisy.errors import FileReadError


def list_files(folder: str, pattern: str = "*", regex: re.Pattern[str] | None = None, recursive: bool = False,
               owner: str = "") -> list[tuple[str, os.DirEntry]]:
    """``(path relative to folder, entry)`` per matching file, sorted by relative path.

    Files match the glob ``pattern`` (against the relative path if it contains ``/``, else the
    name) and ``regex`` (searched in the name). ``os.scandir`` rather than ``Path.glob``: a
    folder can hold 100 000 files. A missing ``folder`` raises ``FileNotFoundError`` (the input
    is missing); any other listing error, or a symbolic link loop, a ``FileReadError``.
    """
    found = []
    matches = re.compile(fnmatch.translate(pattern)).match
    whole_path = "/" in pattern
    root = os.stat(folder)
    folders = [("", folder, frozenset([(root.st_dev, root.st_ino)]))]
    while folders:
        prefix, current, above = folders.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as error:
            raise FileReadError(f"{owner}: cannot list {current}: {error.strerror}") from None
        for entry in entries:
            if entry.is_dir():
                if recursive:
                    key = (entry.stat().st_dev, entry.stat().st_ino)
                    if key in above:
                        raise FileReadError(f"{owner}: {entry.path} leads back to a folder above it "
                                            "(a symbolic link loop); remove the link or use recursive=False")
                    folders.append((prefix + entry.name + "/", entry.path, above | {key}))
                continue
            rel = prefix + entry.name
            if (matches(rel if whole_path else entry.name) and TMP_MARKER not in entry.name
                    and entry.is_file() and (regex is None or regex.search(entry.name))):
                found.append((rel, entry))
    found.sort()  # relative paths are unique: entries are never compared
    return found


def source_items(files: list[tuple[str, os.DirEntry]], reader: Callable[[str], Any], owner: str = "",
                 by_content: Callable[[list[tuple[str, os.stat_result]]], list[str]] | None = None) -> SourceItems:
    """The listed files as input items: named by relative path without extension, fingerprinted
    by size and modification time (so a rerun sees edited files), or by ``by_content`` (which
    gets each file's relative path and ``stat``)."""
    names = [item_name(rel) for rel, _ in files]
    if len(set(names)) < len(names):
        _name_clash(files, names, owner)
    if by_content is not None:
        fingerprints = by_content([(rel, entry.stat()) for rel, entry in files])
    else:
        fingerprints = []
        for _, entry in files:
            stat = entry.stat()
            fingerprints.append(f"{stat.st_size}-{stat.st_mtime_ns}")
    return SourceItems(names, fingerprints, [entry.path for _, entry in files], reader)


def item_name(rel: str) -> str:
    """``os.path.splitext(rel)[0]``, three times faster (it runs once per input file)."""
    start = rel.rfind("/") + 1
    dot = rel.rfind(".")
    return rel[:dot] if dot > start and rel[start:dot].strip(".") else rel


def _name_clash(files: list[tuple[str, os.DirEntry]], names: list[str], owner: str) -> None:
    first: dict[str, str] = {}
    for (_, entry), name in zip(files, names, strict=True):
        if name in first:
            raise FileReadError(f"{owner}: {first[name]} and {entry.name} would both be item {name!r}; "
                                f"narrow the pattern")
        first[name] = entry.name
