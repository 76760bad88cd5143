"""Listing an input folder: the files a pattern selects, and the input items they make."""

from __future__ import annotations

import array
import fnmatch
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast

from luisy.atomic import TMP_MARKER
from luisy.digests import digest, stat_fingerprint
from luisy.errors import FileReadError
from luisy.sources import Joined, SourceItems, SourcesInParts, SplitSources

#: Names writers give files while they are still being written, and hidden files: never input items.
TEMP_NAMES = ("*.part", "*.tmp", "*.crdownload", ".*")

#: ``(folder path, inode, modification time in ns)`` of each folder a listing went through; ``None``
#: for a file reached through a symbolic link, whose folder is not among them (its target can be
#: replaced or removed without any of them changing). See :mod:`luisy.directory.snapshot`.
Folders = list[tuple[str, int, int] | None]


class Entries(NamedTuple):
    """The names and inode numbers of a folder's entries, in the order the file system lists them."""

    names: list[str]
    inodes: array.array[int]

    @classmethod
    def new(cls) -> Entries:
        return cls([], array.array("Q"))


def ignore_rule(patterns: Iterable[str]) -> Callable[[str], Any]:
    """Whether a file or folder name matches one of the glob ``patterns`` (never, without any)."""
    patterns = list(patterns)
    if not patterns:
        return lambda name: False
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


def file_rule(pattern: str = "*", regex: re.Pattern[str] | None = None) -> Callable[[str, str], Any]:
    """Whether a file (its path relative to the listed folder, and its name) is selected by the
    glob ``pattern`` (against the relative path if it contains ``/``, else the name) and ``regex``
    (searched in the name); a file being written by luisy never is."""
    matches = re.compile(fnmatch.translate(pattern)).match
    whole_path = "/" in pattern
    if regex is None:
        return lambda rel, name: matches(rel if whole_path else name) and TMP_MARKER not in name
    return lambda rel, name: matches(rel if whole_path else name) and TMP_MARKER not in name and regex.search(name)


def list_files(folder: str, pattern: str = "*", regex: re.Pattern[str] | None = None, recursive: bool = False,
               owner: str = "", ignore: Iterable[str] = (), seen: Folders | None = None,
               entries: Entries | None = None) -> list[str]:
    """The path relative to ``folder`` of each matching file (see :func:`file_rule`), sorted.

    Files and folders whose name matches a glob in ``ignore`` are left out. ``os.scandir`` rather
    than ``Path.glob``: a folder can hold a million files; only their relative paths are kept (a
    ``DirEntry`` costs five times as much, and more once it has cached a ``stat``). A missing
    ``folder`` raises ``FileNotFoundError`` (the input is missing); any other listing error, or a
    symbolic link loop, a ``FileReadError``. ``seen``, if given, gets each folder listed, as
    ``stat`` found it before listing it (see :mod:`luisy.directory.snapshot`); ``entries`` every
    entry of ``folder`` itself.
    """
    found = []
    chosen = file_rule(pattern, regex)
    ignored = ignore_rule(ignore)
    root = os.stat(folder)
    folders = [("", folder, frozenset([(root.st_dev, root.st_ino)]), root)]
    while folders:
        prefix, current, above, info = folders.pop()
        if seen is not None:
            seen.append((current, info.st_ino, info.st_mtime_ns))
        listed = entries if entries is not None and current is folder else None
        try:
            with os.scandir(current) as scan:  # iterated, not listed: one DirEntry at a time
                for entry in scan:
                    name = entry.name
                    if listed is not None:
                        listed.names.append(name)
                        listed.inodes.append(entry.inode())
                    if ignored(name):
                        continue
                    if entry.is_dir():
                        if recursive:
                            folders.append(_below(prefix, entry, above, owner))
                        continue
                    rel = prefix + name
                    if chosen(rel, name):
                        if entry.is_file():
                            found.append(rel)
                        if seen is not None and entry.is_symlink():  # dangling too: its file may come
                            seen.append(None)  # its file is in a folder not listed: see Folders
        except OSError as error:
            raise FileReadError(f"{owner}: cannot list {current}: {error.strerror}") from None
    found.sort()
    return found


def _below(prefix: str, entry: os.DirEntry, above: frozenset[tuple[int, int]],
           owner: str) -> tuple[str, str, frozenset[tuple[int, int]], os.stat_result]:
    """The subfolder to list next, unless it leads back to a folder above it."""
    info = entry.stat()
    key = (info.st_dev, info.st_ino)
    if key in above:
        raise FileReadError(f"{owner}: {entry.path} leads back to a folder above it "
                            "(a symbolic link loop); remove the link or use recursive=False")
    return prefix + entry.name + "/", entry.path, above | {key}, info


def source_items(folder: str, files: list[str], reader: Callable[[str], Any], owner: str = "",
                 by_content: Callable[[list[tuple[str, os.stat_result]]], list[str]] | None = None,
                 suffix: str = "") -> SourceItems:
    """The listed files (paths relative to ``folder``; each ending with ``suffix``, if given: see
    :func:`pattern_suffix`) as input items: named by relative path without extension,
    fingerprinted by size and modification time (so a rerun sees edited files), or by
    ``by_content`` (which gets each file's relative path and ``stat``). A file moved away since
    the folder was listed is left out, as if listed a moment later (hot folders see that all the
    time)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # each file looked up from its folder, not from /
    try:
        if by_content is not None:
            stats = [(rel, _stat(rel, fd)) for rel in files]
            files = [rel for rel, stat in stats if stat is not None]
            fingerprints = by_content([(rel, stat) for rel, stat in stats if stat is not None])
        else:  # a stat_result each would take 800 MB at a million files: only the strings are kept
            found = [_size_mtime(rel, fd) for rel in files]
            if None in found:
                files = [rel for rel, fp in zip(files, found, strict=True) if fp is not None]
                fingerprints = [fp for fp in found if fp is not None]
            else:
                fingerprints = cast(list[str], found)
    finally:
        os.close(fd)
    names = [item_name(rel) for rel in files]
    if len(set(names)) < len(names):
        name_clash(files, names, owner)
    return SourceItems(names, fingerprints, _paths(folder, files, names, suffix), reader)


def pattern_suffix(pattern: str) -> str:
    """The extension every file the glob ``pattern`` chooses ends with, where it names one of a
    single dot (``*.txt``, ``frame_*.png``); else ``""``."""
    tail = pattern.rpartition("*")[2] if "*" in pattern else ""
    return tail if tail.startswith(".") and tail.count(".") == 1 and not set(tail) & set("?[]/\\") else ""


def _paths(folder: str, files: list[str], names: list[str], suffix: str) -> Joined:
    """The paths of ``files`` (each ending with ``suffix``, if given): by their ``names`` and that
    suffix where every file is its name and the suffix (a million file names less to hold)."""
    # The suffix holds the file's last dot, so a name is its file without it, unless the name
    # is the file itself (a stem of dots only): told by identity, not by reading a million strings.
    if suffix and not any(map(operator.is_, names, files)):
        return Joined(folder, names, suffix)
    return Joined(folder, files)


def _stat(rel: str, fd: int) -> os.stat_result | None:
    try:
        return os.stat(rel, dir_fd=fd)
    except FileNotFoundError:
        return None


def _size_mtime(rel: str, fd: int) -> str | None:
    stat = _stat(rel, fd)
    return None if stat is None else stat_fingerprint(stat)


def folder_items(folder: str, pattern: str = "*", marker: str | None = None, ignore: Iterable[str] = (),
                 reader: Callable[[str], Any] = str, owner: str = "") -> SourceItems:
    """Each sub-folder of ``folder`` matching ``pattern`` as one input item, named by the folder.

    Its fingerprint covers the path, size and modification time of every file in it (files and
    folders matching ``ignore`` left out), so it changes whenever one of them does. Empty
    folders, and with ``marker`` those without that file at their top, are not items yet.
    """
    matches = re.compile(fnmatch.translate(pattern)).match
    ignored = ignore_rule(ignore)
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise FileReadError(f"{owner}: cannot list {folder}: {error.strerror}") from None
    names, fingerprints, paths = [], [], []
    for entry in entries:
        if (not matches(entry.name) or ignored(entry.name) or TMP_MARKER in entry.name or not entry.is_dir()
                or (marker is not None and not os.path.isfile(os.path.join(entry.path, marker)))):
            continue
        parts = _folder_parts(entry.path, ignored, owner)
        if parts:
            names.append(entry.name)
            fingerprints.append(digest(*parts))
            paths.append(entry.path)
    return SourceItems(names, fingerprints, paths, reader)


def _folder_parts(path: str, ignored: Callable[[str], Any], owner: str) -> list[str]:
    """``relative path:size-mtime`` of each file below ``path``, sorted."""
    parts = []

    def fail(error: OSError) -> None:
        raise FileReadError(f"{owner}: cannot list {error.filename}: {error.strerror}")

    for root, dirs, files in os.walk(path, onerror=fail):
        dirs[:] = [d for d in dirs if not ignored(d)]
        rel = os.path.relpath(root, path)
        for name in files:
            if ignored(name) or TMP_MARKER in name:
                continue
            try:
                stat = os.stat(os.path.join(root, name))
            except FileNotFoundError:  # removed while listed: not part of the folder now
                continue
            parts.append(f"{name if rel == '.' else rel + '/' + name}:{stat_fingerprint(stat)}")
    parts.sort()
    return parts


def stored_items(entries: Iterable[tuple[str, int, str]], folder: str, pattern: str = "*",
                 regex: re.Pattern[str] | None = None, recursive: bool = False, ignore: Iterable[str] = (),
                 folders: bool = False, marker: str | None = None, reader: Callable[[str], Any] = str,
                 owner: str = "") -> SourceItems:
    """The input items among ``entries`` — ``(path relative to folder, size, version tag)`` of
    every object below ``folder``, as one listing of an object store gives them — chosen by the
    same rules as :func:`list_files` (or, with ``folders``, :func:`folder_items`). A file's
    fingerprint is its version tag (an ETag changes with the bytes) and size."""
    matches = re.compile(fnmatch.translate(pattern)).match
    ignored = ignore_rule(ignore)
    entries = list(entries)
    kept = [(rel, size, tag) for rel, size, tag in entries
            if TMP_MARKER not in rel and not any(ignored(part) for part in rel.split("/"))]
    if folders:
        # The marker is looked for among all files: the default ignore (hidden files) may match it.
        marked = {rel.partition("/")[0] for rel, _, _ in entries if rel.partition("/")[2] == marker}
        grouped: dict[str, list[str]] = {}
        for rel, size, tag in kept:
            top, _, rest = rel.partition("/")
            if rest and matches(top):
                grouped.setdefault(top, []).append(f"{rest}:{tag}:{size}")
        names = sorted(n for n in grouped if marker is None or n in marked)
        return SourceItems(names, [digest(*sorted(grouped[n])) for n in names],
                           [os.path.join(folder, n) for n in names], reader)
    whole_path = "/" in pattern
    files, fingerprints = [], []
    for rel, size, tag in sorted(kept):
        name = rel.rsplit("/", 1)[-1]
        if ("/" in rel and not recursive) or not matches(rel if whole_path else name):
            continue
        if regex is None or regex.search(name):
            files.append(rel)
            fingerprints.append(digest(tag, str(size)))
    names = [item_name(rel) for rel in files]
    if len(set(names)) < len(names):
        name_clash(files, names, owner)
    return SourceItems(names, fingerprints, _paths(folder, files, names, pattern_suffix(pattern)), reader)


def hold_back(items: SourceItems, settled: Mapping[str, str]) -> SourceItems:
    """The items whose fingerprint is the one in ``settled`` (name → fingerprint); the names of the
    others become the result's :attr:`~luisy.sources.SourceItems.held_back`."""
    rows, held = [], []
    for row, (name, fingerprint) in enumerate(zip(items.names, items.fingerprints, strict=True)):
        if settled.get(name) == fingerprint:
            rows.append(row)
        else:
            held.append(name)
    kept = items.select(rows)
    kept.held_back = frozenset(held)
    return SplitSources(kept, items.part_count) if isinstance(items, SourcesInParts) else kept


def item_name(rel: str) -> str:
    """``os.path.splitext(rel)[0]``, three times faster (it runs once per input file)."""
    start = rel.rfind("/") + 1
    dot = rel.rfind(".")
    return rel[:dot] if dot > start and rel[start:dot].strip(".") else rel


def name_clash(files: list[str], names: list[str], owner: str) -> None:
    """Raise the error that says which two of ``files`` give the same item name."""
    first: dict[str, str] = {}
    for rel, name in zip(files, names, strict=True):
        if name in first:
            raise FileReadError(f"{owner}: {first[name]} and {os.path.basename(rel)} would both be item {name!r}; "
                                f"narrow the pattern")
        first[name] = os.path.basename(rel)
