"""The manifest of a directory output: which items exist, where, and what they came from.

Invariant: an item exists for readers iff the manifest lists it. The manifest is written last,
replacing the previous one in one ``os.replace``.

The file is two lines of JSON. The first, the *header*, holds everything but the per-item
lists: the task, its parameters and code fingerprint, times, counts, and digests of the items
and of the inputs they were made from. Checking whether a directory task is up to date reads
only this line, however many items the second line lists.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import os
import platform
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 2
_BODY = ("items", "failed", "failed_sources", "skipped")


def items_digest(pairs: Iterable[tuple[str, str | None]]) -> str:
    """A digest of ``(name, fingerprint)`` pairs with unique names, independent of their order."""
    by_name = dict(pairs)
    names = sorted(by_name)  # sorting str, not tuples: twice as fast
    try:
        text = "\0".join(itertools.chain.from_iterable(zip(names, map(by_name.__getitem__, names), strict=True)))
    except TypeError:  # a fingerprint that is not a str (None): the same text, built slower
        text = "\0".join(f"{name}\0{by_name[name]}" for name in names)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Item(NamedTuple):
    """One published item: its file (relative to the folder), size, checksum, and input fingerprint."""

    file: str
    size: int
    checksum: str
    source: str | None = None


class ItemTable(Mapping[str, Item]):
    """The published items as a read-only mapping name → :class:`Item`, stored as columns sorted by name.

    A manifest can list hundreds of thousands of items and is read on every run: columns of
    strings are what JSON reads and writes fastest and what takes least memory. An :class:`Item`
    is built only when one is asked for.
    """

    __slots__ = ("names", "files", "sizes", "checksums", "sources", "_positions", "_digest")

    def __init__(self, names: list[str], files: list[str], sizes: list[int], checksums: list[str],
                 sources: list[str | None], digest: str | None = None) -> None:
        """Columns sorted by name; ``digest``: the table's :meth:`digest`, if already known."""
        if not len(names) == len(files) == len(sizes) == len(checksums) == len(sources):
            raise ValueError("item columns of different lengths")
        self.names, self.files, self.sizes, self.checksums, self.sources = names, files, sizes, checksums, sources
        self._positions: dict[str, int] | None = None
        self._digest = digest

    @classmethod
    def of(cls, items: Mapping[str, Item]) -> ItemTable:
        """The table of ``items``, sorted by name."""
        if isinstance(items, ItemTable):
            return items
        names = sorted(items)
        rows = [items[name] for name in names]
        return cls(names, [r.file for r in rows], [r.size for r in rows], [r.checksum for r in rows],
                   [r.source for r in rows])

    def positions(self) -> dict[str, int]:
        """Name → row (built on first use: a dict of 100 000 names costs as much as parsing them)."""
        if self._positions is None:
            self._positions = dict(zip(self.names, range(len(self.names)), strict=True))
        return self._positions

    def merged(self, keep: Iterable[str], new: Mapping[str, Item]) -> ItemTable:
        """The rows named in ``keep`` (if present), replaced or extended by ``new``, sorted by name."""
        keep = keep if isinstance(keep, (set, frozenset)) else set(keep)
        mask = [name in keep and name not in new for name in self.names]
        kept = [list(itertools.compress(column, mask))
                for column in (self.names, self.files, self.sizes, self.checksums, self.sources)]
        if not new:  # the common incremental case: a subset of the current rows, in order
            return ItemTable(*kept)
        if not kept[0]:
            return ItemTable.of(new)
        # Few new rows among many kept ones (a rerun): splice them in by bisection.
        out: list[list[Any]] = [[], [], [], [], []]
        start = 0
        for name in sorted(new):
            stop = bisect.bisect_left(kept[0], name, start)
            for column, kept_column, value in zip(out, kept, (name, *new[name]), strict=True):
                column.extend(kept_column[start:stop])
                column.append(value)
            start = stop
        for column, kept_column in zip(out, kept, strict=True):
            column.extend(kept_column[start:])
        return ItemTable(*out)

    def digest(self) -> str:
        """:func:`items_digest` of ``(name, checksum)``."""
        if self._digest is None:  # the table is never changed: once is enough
            self._digest = items_digest(zip(self.names, self.checksums, strict=True))
        return self._digest

    def __getitem__(self, name: str) -> Item:
        row = self.positions()[name]
        return Item(self.files[row], self.sizes[row], self.checksums[row], self.sources[row])

    def __contains__(self, name: object) -> bool:
        return name in self.positions()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemTable):
            return (self.names, self.files, self.sizes, self.checksums, self.sources) == (
                other.names, other.files, other.sizes, other.checksums, other.sources)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ItemTable({len(self)} items)"


def _empty_table() -> ItemTable:
    return ItemTable([], [], [], [], [])


@dataclass
class Manifest:
    """What a directory output holds. ``items`` and ``failed`` are keyed by item name.

    ``items`` may be given as any mapping name → :class:`Item`; it is kept as an :class:`ItemTable`.
    """

    items: ItemTable = field(default_factory=_empty_table)
    failed: dict[str, str] = field(default_factory=dict)
    #: Input fingerprint of each failed item, so an unchanged failure need not be retried.
    failed_sources: dict[str, str | None] = field(default_factory=dict)
    skipped: dict[str, str | None] = field(default_factory=dict)
    task: str = ""
    params: dict[str, str] = field(default_factory=dict)
    code_fingerprint: str | None = None
    luisy_version: str = ""
    python_version: str = field(default_factory=platform.python_version)
    host: str = field(default_factory=socket.gethostname)
    started: str = ""
    finished: str = ""
    #: Items the run that wrote this manifest processed (published, failed or skipped ones).
    processed: int = 0
    #: Identity of the ``luisy.build`` call that wrote it (failed items do not block that run).
    run: str = ""

    #: Digest of the input items (name, fingerprint) the run saw; ``None`` for hand-written outputs.
    inputs_digest: str | None = None

    def __post_init__(self) -> None:
        self.items = ItemTable.of(self.items)

    def header(self) -> ManifestHeader:
        """The first line's content."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BODY}
        items = self.items.digest()
        return ManifestHeader(
            **values, item_count=len(self.items), failed_count=len(self.failed), items_digest=items,
            content_digest=items_digest([("", items), *((name, "failed") for name in self.failed)]),
        )

    def to_json(self) -> str:
        header = {"schema": SCHEMA, **asdict(self.header())}
        body: dict[str, Any] = {name: getattr(self, name) for name in _BODY if name != "items"}
        table = self.items
        body.update(names=table.names, files=table.files, sizes=table.sizes, checksums=table.checksums,
                    sources=table.sources)
        # No indent: only then does json use its C encoder.
        return json.dumps(header, sort_keys=True) + "\n" + json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        head, _, rest = text.partition("\n")
        header = json.loads(head)
        if header.get("schema") != SCHEMA:
            raise ValueError(f"manifest schema {header.get('schema')!r}, this luisy reads {SCHEMA}")
        body = json.loads(rest)
        columns = (body.pop(column) for column in ("names", "files", "sizes", "checksums", "sources"))
        items = ItemTable(*columns, digest=header.get("items_digest"))  # written with these columns
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in header.items() if k in known}, items=items, **body)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The folder's manifest, or ``None`` if there is none or it cannot be read.

        Parsed manifests are cached by the file's identity (inode, size, mtime): a manifest is
        replaced, never edited, so a changed file is a new entry. Treat the result as read-only.
        """
        identity = _identity(folder)
        try:
            return _parsed.get(identity) if identity else None
        except (OSError, ValueError, TypeError, KeyError):
            return None

    @staticmethod
    def load_header(folder: str | os.PathLike[str]) -> ManifestHeader | None:
        """Only the first line of the folder's manifest (cheap however many items it lists)."""
        identity = _identity(folder)
        try:
            return _parse_header(*identity) if identity else None
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def sources(self, with_failed: bool = False) -> dict[str, Any]:
        """Input name → fingerprint of the published (or deliberately skipped) item made from it.

        ``with_failed``: failed items count as settled too.
        """
        done: dict[str, Any] = dict(zip(self.items.names, self.items.sources, strict=True))
        done.update(self.skipped)
        if with_failed:
            done.update((name, self.failed_sources.get(name)) for name in self.failed)
        return done


@dataclass(frozen=True)
class ManifestHeader:
    """The first line of a manifest: everything but the per-item lists."""

    task: str
    params: dict[str, str]
    code_fingerprint: str | None
    luisy_version: str
    python_version: str
    host: str
    started: str
    finished: str
    processed: int
    run: str
    inputs_digest: str | None
    item_count: int
    failed_count: int
    items_digest: str
    content_digest: str


def _identity(folder: str | os.PathLike[str]) -> tuple[str, int, int, int] | None:
    path = os.path.join(folder, MANIFEST_NAME)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return path, stat.st_ino, stat.st_size, stat.st_mtime_ns


class _ParsedManifests:
    """The last few parsed manifests, by file identity (inode, size, mtime): a manifest file is
    replaced, never edited, so a new identity is a new manifest. A writer hands in the manifest
    it just published, so the task downstream in the same process does not parse it again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[tuple[str, int, int, int], Manifest] = {}

    def get(self, identity: tuple[str, int, int, int]) -> Manifest:
        found = self.entries.pop(identity, None)
        if found is None:
            found = Manifest.from_json(Path(identity[0]).read_text(encoding="utf-8"))
        self.put(identity, found)
        return found

    def put(self, identity: tuple[str, int, int, int], manifest: Manifest) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k[0] != identity[0]}  # one per path
        self.entries[identity] = manifest
        while len(self.entries) > self.size:  # a manifest of 100 000 items takes tens of MB parsed
            del self.entries[next(iter(self.entries))]


_parsed = _ParsedManifests(size=2)  # a stage and its upstream


def remember(folder: str | os.PathLike[str], manifest: Manifest) -> None:
    """Note that ``manifest`` is what the folder's manifest file now holds (just written)."""
    identity = _identity(folder)
    if identity is not None:
        _parsed.put(identity, manifest)


@functools.lru_cache(maxsize=64)
def _parse_header(path: str, inode: int, size: int, mtime_ns: int) -> ManifestHeader:
    with open(path, encoding="utf-8") as f:
        header = json.loads(f.readline())
    if header.pop("schema", None) != SCHEMA:
        raise ValueError("unknown manifest schema")
    known = {f.name for f in fields(ManifestHeader)}
    return ManifestHeader(**{k: v for k, v in header.items() if k in known})


def luisy_version() -> str:
    return sys.modules["luisy"].__version__
