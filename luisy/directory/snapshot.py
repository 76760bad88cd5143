"""Remembering an input folder's listing, in parts, by the modification times of its folders.

With ``input_fingerprint = "write-once"`` input files are taken to be written once, under their
final name, and never edited in place (detector frames, exports, downloads moved into place). A
folder's modification time changes whenever an entry is added to it, removed or renamed; so
while every folder a listing went through has the modification time (and inode) it had then,
the listing is unchanged, and its digest is reused without listing and ``stat``-ing a million
files again.

The listing is remembered in parts split by a hash of the item name, as a manifest's items are
(:mod:`luisy.parts`), each part with its digest; the listing's digest is that of its parts'
digests. When a single folder (not ``recursive``) did change, a run reads its entries' names and
inodes only, finds those added and removed since the remembered listing (an entry under a known
name with a new inode counts as both: a file renamed over another), ``stat``-s the new files
only, and makes again only the parts they fall in. Every other file keeps the size and time
remembered for it: at a million files that is a tenth of a full listing, but a file edited in
place is never noticed (a ``recursive`` listing, whenever one of its folders changed, is made
again whole, and sees such edits then).

A snapshot is kept per folder and selection in ``<working_dir>/.luisy-digests/``:
``<folder>.<digest>.listing.json`` (the folders' times, the parts' digests and sizes, the
entries added and removed since the entries file was written), ``….listing-<p>.json`` (part
``p``: files and fingerprints) and ``….listing.entries`` (the folder's entries, in the order the
file system lists them: written again only after :data:`_NOTED` changes). The root is written last and names
what the others must hold, so a snapshot half written, or written by two runs at once, is one
that does not match: it is ignored, and the folder listed whole. Runs write snapshots; ``plan``
and ``status`` only read them. A folder modified within :data:`RACY_SECONDS` of being listed is
not remembered: a second change within the same clock tick would leave its time as it was (git's
"racy" rule). A snapshot is a cache: one that is broken is ignored and made again (see
:mod:`luisy.cachefiles`).
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
import os
import stat
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from luisy import config
from luisy.cachefiles import RACY_SECONDS, cache_path, read_cache, read_cache_bytes, write_cache, write_cache_bytes
from luisy.digests import digest, newest_mtime_ns, stat_fingerprint
from luisy.directory.inputs import Entries, Folders, item_name, name_clash
from luisy.parts import part_count, part_of
from luisy.sources import Joined, SourceItems, SourcesInParts, SplitSources

__all__ = ["Entries", "Folders", "RememberedListing", "in_parts", "recall", "relist", "remember"]

#: How often the entries of a new listing may part from the remembered ones before the two are
#: compared as sets (the order changed: a folder rebuilt, another file system).
_STEPS = 256
#: How far ahead a walk through the entries looks for one it lost.
_AHEAD = 1024
#: How many entries the walk compares at once, where they are the same.
_RUN = 4096
_NAME = operator.attrgetter("name")
#: How many entries added and removed since a folder's entries file was written its snapshot's
#: root notes, before the entries are written again (21 MB at a million): each is one more step
#: of the walk that compares the folder's entries with that file.
_NOTED = 128


def recall(folder: str, scope: str) -> str | None:
    """The digest of the folder's last remembered listing, if none of its folders changed since."""
    root = _root(folder, scope)
    if root is None or _changed(root["folders"]):
        return None
    return root["digest"]


class RememberedListing(SourcesInParts):
    """A folder's items as remembered in parts, each read when first needed; ``loaded`` parts
    (those a change made again) are at hand."""

    __slots__ = ("folder", "scope", "digests", "sizes", "loaded", "changed", "entries", "fresh", "base", "changes",
                 "_full")
    #: Not gone through part by part: another run over the folder may write its part files
    #: meanwhile, and a part read again would then not be the one read first.
    stored = False

    def __init__(self, folder: str, scope: str, digests: list[str], sizes: list[int],
                 reader: Callable[[str], Any], full: Callable[[], SourceItems]) -> None:
        """``full()`` lists the folder whole: for a part whose file is gone or no longer matches."""
        super().__init__(len(digests), reader)
        self.folder, self.scope, self.digests, self.sizes = folder, scope, digests, sizes
        self.loaded: dict[int, SourceItems] = {}
        #: The parts that differ from the remembered ones.
        self.changed: set[int] = set()
        #: The folder's entries, where the listing read them (the folder changed).
        self.entries: Entries | None = None
        #: The fingerprints of the files found new.
        self.fresh: list[str] = []
        #: The token of the entries file the entries were compared with, and the entries added
        #: to and removed from it since, as (name, inode): what a snapshot notes instead of
        #: writing the entries again (see :func:`_noted`).
        self.base: str | None = None
        self.changes: tuple[set[tuple[str, int]], set[tuple[str, int]]] = (set(), set())
        self._full = full

    def whole_part_digests(self) -> list[str | None]:
        return list(self.digests)

    def __len__(self) -> int:
        return sum(self.sizes)

    def part(self, p: int) -> SourceItems:
        found = self.loaded.get(p)
        if found is None:
            found = _read_part(self.folder, self.scope, p, self.digests[p], self.reader)
            if found is None:  # replaced or removed since the root was read: the folder as it is now
                if self._whole is None:
                    self._whole = self._full()
                found = SplitSources(self._whole, self.part_count).part(p)
            self.loaded[p] = found
        return found

    def whole(self) -> SourceItems:
        parts = [self.part(p) for p in range(self.part_count)]
        files = [file for part in parts for file in _files_of(part, self.folder)]
        fingerprints = [fp for part in parts for fp in part.fingerprints]
        order = sorted(range(len(files)), key=files.__getitem__)  # as a listing is: by relative path
        files = [files[row] for row in order]
        return SourceItems([item_name(file) for file in files], [fingerprints[row] for row in order],
                           Joined(self.folder, files), self.reader)

    def __repr__(self) -> str:
        return f"RememberedListing({len(self)} items in {self.part_count} parts, {len(self.changed)} changed)"


def relist(folder: str, scope: str, ignored: Callable[[str], Any], chosen: Callable[[str, str], Any],
           reader: Callable[[str], Any], owner: str, full: Callable[[], SourceItems],
           ) -> tuple[RememberedListing, Folders] | None:
    """The items of ``folder`` (a single folder: ``ignored`` and ``chosen`` select its files, see
    :func:`~luisy.directory.inputs.file_rule`) from its remembered listing and the entries added
    and removed since, and the folder as ``stat`` found it before listing it; ``None`` where it
    has to be listed whole (nothing remembered, or it no longer matches)."""
    root = _root(folder, scope)
    # The entries file: "base" where the root notes changes since it was written ("entries",
    # which a luisy that knows no notes compares with, is then left empty), else "entries".
    token = root.get("base", root.get("entries")) if root is not None else None
    if (root is None or "parts" not in root or len(root["folders"]) != 1
            or root["folders"][0][0] != os.path.abspath(folder) or not isinstance(token, str)):
        return None
    digests, sizes = root["parts"], root["sizes"]
    listing = RememberedListing(folder, scope, list(digests), list(sizes), reader, full)
    try:
        info = os.stat(folder)
        seen: Folders = [(folder, info.st_ino, info.st_mtime_ns)]
        if not _changed(root["folders"]):
            listing._digest = root["digest"]
            return listing, seen
        if info.st_ino != root["folders"][0][1]:
            return None  # another folder in its place: its entries are not those remembered
        entries = scan(folder)
    except OSError:  # gone, or not readable: the whole listing says which
        return None
    before = _read_entries(folder, scope, token)
    noted = _noted(root.get("changes", [[], []]))
    if before is None or noted is None:
        return None
    added_rows, removed_rows = _difference(before, entries)
    added = {(entries.names[row], entries.inodes[row]) for row in added_rows}
    removed = {(before.names[row], before.inodes[row]) for row in removed_rows}
    listing.entries, listing.base, listing.changes = entries, token, (added, removed)
    # Since the listing remembered: what is added since the entries file and was not noted then
    # (or was noted removed and is back), and what is removed since and was not noted, or was
    # noted added and is gone again.
    new_entries = (added - noted[0]) | (noted[1] - removed)
    gone_entries = (removed - noted[1]) | (noted[0] - added)
    changes = _changes(folder, [name for name, _ in sorted(new_entries)], [name for name, _ in gone_entries],
                       ignored, chosen, listing.part_count)
    if changes is None:
        return None
    gone, new = changes
    listing.fresh = [fingerprint for found in new.values() for _, fingerprint in found]
    total = len(listing) + sum(map(len, new.values())) - sum(map(len, gone.values()))
    if part_count(total, listing.part_count) != listing.part_count:
        return None  # split again: every part changes
    for p in sorted(set(gone).union(new)):
        part = _read_part(folder, scope, p, digests[p], reader)
        if part is None:
            return None
        part = _changed_part(part, folder, gone.get(p, set()), new.get(p, []), reader, owner)
        listing.loaded[p], listing.digests[p], listing.sizes[p] = part, part.digest(), len(part)
        listing.changed.add(p)
    return listing, seen


def scan(folder: str) -> Entries:
    """The entries of ``folder``: names and inodes, as ``readdir`` gives them (no ``stat``)."""
    entries = Entries.new()
    with os.scandir(folder) as scanned:
        # A thousand DirEntry objects at a time: a million of them would take 150 MB.
        for chunk in iter(lambda: list(itertools.islice(scanned, 1024)), []):
            entries.names.extend(map(_NAME, chunk))
            entries.inodes.extend(map(os.DirEntry.inode, chunk))
    return entries


def in_parts(items: SourceItems, folder: str, scope: str) -> SplitSources:
    """A folder's whole listing in as many parts as it is remembered in (or as its size asks)."""
    root = _root(folder, scope)
    return SplitSources(items, part_count(len(items), root["count"] if root is not None and "parts" in root else 0))


def remember(folder: str, scope: str, seen: Folders, items: SourcesInParts, entries: Entries | None = None) -> None:
    """Keep ``items`` as the listing of ``folder`` while the folders in ``seen`` (stat'ed before
    each was listed) keep their times; ``entries``: the folder's entries, where it is a single
    one. Only within a run; not if a file was reached through a symbolic link, nor if a folder or
    a new file was modified within :data:`RACY_SECONDS` (a file still being written under its
    final name would be remembered half-written)."""
    if not config.current().id or not seen or None in seen:
        return
    known = [entry for entry in seen if entry is not None]
    recent = time.time_ns() - int(RACY_SECONDS * 1e9)
    changes: list[list[list[Any]]] = [[], []]
    token = None
    if isinstance(items, RememberedListing):
        if items.entries is None:
            return  # as remembered
        fresh: Iterable[str] = items.fresh
        changed, entries = sorted(items.changed), items.entries
        if sum(map(len, items.changes)) <= _NOTED:  # the entries file as it is, and what changed since
            token, entries = items.base, None
            changes = [sorted(map(list, found)) for found in items.changes]
    else:
        fresh, changed = items.whole().fingerprints, list(range(items.part_count))
    if any(mtime_ns > recent for _, _, mtime_ns in known) or newest_mtime_ns(fresh) > recent:
        return
    digests = items.whole_part_digests()
    sizes = _sizes(items)
    if not all(_write_part(folder, scope, p, digests[p], part)  # type: ignore[arg-type]
               for p, part in _parts(items, changed)):
        return
    if entries is not None:
        token = digest(folder, str(time.time_ns()), str(os.getpid()), size=8)
        if not _write_entries(folder, scope, token, entries):
            return
    folders = [(os.path.abspath(where), inode, mtime_ns) for where, inode, mtime_ns in known]  # any cwd
    noted = any(changes)
    write_cache(_path(folder, scope), {"folders": folders, "digest": items.digest(), "count": items.part_count,
                                       "parts": digests, "sizes": sizes, "entries": None if noted else token,
                                       "base": token, "changes": changes})


def _root(folder: str, scope: str) -> dict[str, Any] | None:
    """The snapshot's root, if it has the shape one has."""
    data = read_cache(_path(folder, scope))
    try:
        folders, known = data["folders"], data["digest"]
        if not folders or not isinstance(known, str) or not all(
                isinstance(path, str) and isinstance(inode, int) and isinstance(mtime_ns, int)
                for path, inode, mtime_ns in folders):
            return None
        count, digests, sizes = data.get("count"), data.get("parts"), data.get("sizes")
        if not (isinstance(count, int) and isinstance(digests, list) and isinstance(sizes, list)
                and count >= 1 and not count & (count - 1) and len(digests) == len(sizes) == count
                and all(isinstance(d, str) for d in digests) and all(isinstance(n, int) for n in sizes)):
            data.pop("parts", None)  # an older snapshot, of the digest only: recalled, not relisted
    except (TypeError, ValueError, KeyError):
        return None
    return data


def _changed(folders: list[list[Any]]) -> bool:
    """Whether a folder of ``folders`` (path, inode, time) is gone or has another inode or time."""
    for path, inode, mtime_ns in folders:
        try:
            info = os.stat(path)
        except OSError:
            return True
        if (info.st_ino, info.st_mtime_ns) != (inode, mtime_ns):
            return True
    return False


def _difference(before: Entries, now: Entries) -> tuple[list[int], list[int]]:
    """The rows of ``now`` added and of ``before`` removed: an entry under a known name with
    another inode is both. A folder lists its entries in the same order from one listing to the
    next, new ones put in among them, so the two are walked side by side in C loops; they are
    compared as sets only where they part more than :data:`_STEPS` times."""
    old, new = before.names, now.names
    added: list[int] = []
    removed: list[int] = []
    i = j = 0
    for _ in range(_STEPS):
        step = _same_run(old, new, i, j)
        if before.inodes[i:i + step] != now.inodes[j:j + step]:  # renamed over: the same name, a new file
            for k in itertools.compress(range(step), map(operator.ne, before.inodes[i:i + step],
                                                         now.inodes[j:j + step])):
                added.append(j + k)
                removed.append(i + k)
        i, j = i + step, j + step
        if i == len(old) or j == len(new):
            added += range(j, len(new))
            removed += range(i, len(old))
            break
        ahead = _index(new, old[i], j + 1)
        behind = _index(old, new[j], i + 1) if ahead is None else None
        if ahead is not None:
            added += range(j, ahead)
            j = ahead
        elif behind is not None:
            removed += range(i, behind)
            i = behind
        else:  # each is missing from the other's next entries: told apart below
            added.append(j)
            removed.append(i)
            i, j = i + 1, j + 1
    else:
        return _set_difference(before, now)
    # A name put in both (found out of place) is the same entry, unless its inode changed.
    at_new, at_old = {new[row]: row for row in added}, {old[row]: row for row in removed}
    moved = {name for name in at_new.keys() & at_old.keys() if now.inodes[at_new[name]] == before.inodes[at_old[name]]}
    if not moved:
        return added, removed
    return [row for row in added if new[row] not in moved], [row for row in removed if old[row] not in moved]


def _same_run(old: list[str], new: list[str], i: int, j: int) -> int:
    """How many names from ``old[i]`` on equal those from ``new[j]`` on: compared :data:`_RUN`
    at a time, then one by one in the run that differs (C loops, no skipping from the start)."""
    step = 0
    while old[i + step:i + step + _RUN] == new[j + step:j + step + _RUN]:
        if i + step + _RUN >= len(old) or j + step + _RUN >= len(new):
            return min(len(old) - i, len(new) - j)
        step += _RUN
    differs = map(operator.ne, old[i + step:i + step + _RUN], new[j + step:j + step + _RUN])
    return step + next(itertools.compress(itertools.count(), differs),
                       min(_RUN, len(old) - i - step, len(new) - j - step))


def _index(names: list[str], name: str, start: int) -> int | None:
    """Where ``name`` is among the :data:`_AHEAD` names from ``start`` on."""
    try:
        return names.index(name, start, start + _AHEAD)
    except ValueError:
        return None


def _noted(changes: Any) -> tuple[set[tuple[str, int]], set[tuple[str, int]]] | None:
    """The entries a snapshot notes added and removed since its entries file was written, as
    sets of (name, inode); ``None`` if ``changes`` is not two lists of such pairs."""
    try:
        added, removed = ({(name, inode) for name, inode in found} for found in changes)
    except (TypeError, ValueError):
        return None
    pairs = itertools.chain(added, removed)
    if not all(type(name) is str and type(inode) is int for name, inode in pairs):
        return None
    return added, removed


def _set_difference(before: Entries, now: Entries) -> tuple[list[int], list[int]]:
    """:func:`_difference` by sets of (name, inode)."""
    old = set(zip(before.names, before.inodes, strict=True))
    new = set(zip(now.names, now.inodes, strict=True))
    return ([row for row, entry in enumerate(zip(now.names, now.inodes, strict=True)) if entry not in old],
            [row for row, entry in enumerate(zip(before.names, before.inodes, strict=True)) if entry not in new])


def _changes(folder: str, added: list[str], removed: list[str], ignored: Callable[[str], Any],
             chosen: Callable[[str, str], Any], count: int,
             ) -> tuple[dict[int, set[str]], dict[int, list[tuple[str, str]]]] | None:
    """The files of ``removed`` entries, and of ``added`` ones with their fingerprints, by part;
    ``None`` if a file added is a symbolic link (see :data:`Folders`)."""
    gone: dict[int, set[str]] = {}
    for name in removed:
        if not ignored(name) and chosen(name, name):
            gone.setdefault(part_of(item_name(name), count), set()).add(name)
    new: dict[int, list[tuple[str, str]]] = {}
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # each file looked up from its folder, not from /
    try:
        for name in added:
            if ignored(name) or not chosen(name, name):
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:  # gone again: as if listed a moment later
                continue
            if stat.S_ISLNK(info.st_mode):
                return None
            if stat.S_ISREG(info.st_mode):
                new.setdefault(part_of(item_name(name), count), []).append((name, stat_fingerprint(info)))
    finally:
        os.close(fd)
    return gone, new


def _changed_part(part: SourceItems, folder: str, gone: set[str], new: list[tuple[str, str]],
                  reader: Callable[[str], Any], owner: str) -> SourceItems:
    """``part`` (sorted by file) without the files ``gone`` and with the ``new`` ones (file,
    fingerprint): a few rows taken out and put in, where sorting it again would name every file."""
    files, names, fingerprints = _files_of(part, folder), list(part.names), list(part.fingerprints)
    for file in gone.union(file for file, _ in new):  # a file read again replaces what was remembered of it
        row = bisect.bisect_left(files, file)
        if row < len(files) and files[row] == file:
            del files[row], names[row], fingerprints[row]
    for file, fingerprint in new:
        row = bisect.bisect_left(files, file)
        files.insert(row, file)
        names.insert(row, item_name(file))
        fingerprints.insert(row, fingerprint)
    if len(set(names)) < len(names):
        name_clash(files, names, owner)
    return SourceItems(names, fingerprints, Joined(folder, files), reader)


def _files_of(items: SourceItems, folder: str) -> list[str]:
    """The items' files, relative to ``folder``."""
    paths = items.paths
    if isinstance(paths, Joined) and paths.folder == folder:
        return paths.files
    return [os.path.relpath(path, folder) for path in paths]


def _parts(items: SourcesInParts, wanted: list[int]) -> Iterable[tuple[int, SourceItems]]:
    if isinstance(items, RememberedListing):
        return ((p, items.loaded[p]) for p in wanted)
    return items.parts(items.part_count, wanted).items()


def _sizes(items: SourcesInParts) -> list[int]:
    if isinstance(items, RememberedListing):
        return list(items.sizes)
    sizes = [0] * items.part_count
    for key, size in Counter(items.whole()._part_keys(items.part_count)).items():  # kept from the digests
        sizes[key] = size
    return sizes


def _read_part(folder: str, scope: str, p: int, digest_: str, reader: Callable[[str], Any]) -> SourceItems | None:
    """Part ``p`` as remembered (sorted by file), if it is the one with the digest ``digest_``."""
    data = read_cache(_path(folder, scope, f"-{p}"))
    try:
        files, names, fingerprints = data["files"], data["names"], data["fingerprints"]
        if (data["digest"] != digest_ or not len(files) == len(names) == len(fingerprints)
                or not set(map(type, itertools.chain(files, names, fingerprints))) <= {str}):
            return None
    except (TypeError, KeyError):
        return None
    return SourceItems(names, fingerprints, Joined(folder, files), reader)


def _write_part(folder: str, scope: str, p: int, digest_: str, part: SourceItems) -> bool:
    return write_cache(_path(folder, scope, f"-{p}"), {"digest": digest_, "files": _files_of(part, folder),
                                                       "names": part.names, "fingerprints": part.fingerprints})


def _read_entries(folder: str, scope: str, token: str) -> Entries | None:
    """The folder's entries as remembered with ``token``: a line of the token, the count and the
    CRC-32 of the rest (a check against a file cut short or damaged, a fifth of a digest's
    cost), then the inodes (8 bytes each) and the names (NUL between them)."""
    data = read_cache_bytes(_path(folder, scope, ext="entries"))
    try:
        end = data.index(b"\n")  # type: ignore[union-attr]
        known, count, checksum = data[:end].decode().split(" ")  # type: ignore[index]
        count = int(count)
        rest = memoryview(data)[end + 1:]  # type: ignore[arg-type]  # 21 MB at a million: not copied
        if known != token or str(zlib.crc32(rest)) != checksum or len(rest) < 8 * count:
            return None
        inodes = array.array("Q")
        inodes.frombytes(rest[:8 * count])
        names = str(rest[8 * count:], "utf-8", "surrogateescape").split("\0") if count else []
    except (AttributeError, ValueError):
        return None
    return Entries(names, inodes) if len(names) == count else None


def _write_entries(folder: str, scope: str, token: str, entries: Entries) -> bool:
    rest = array.array("Q", entries.inodes).tobytes() + "\0".join(entries.names).encode("utf-8", "surrogateescape")
    head = f"{token} {len(entries.names)} {zlib.crc32(rest)}\n".encode()
    return write_cache_bytes(_path(folder, scope, ext="entries"), head + rest)


def _path(folder: str, scope: str, part: str = "", ext: str = "json") -> str:
    return cache_path(folder, scope, "listing" + part, ext)
