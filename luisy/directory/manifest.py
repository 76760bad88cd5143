"""The manifest of a directory output: which items exist, where, and what they came from.

Invariant: an item exists for readers iff the manifest lists it. The manifest is written last,
replacing the previous one in one ``os.replace``.

The file is two lines of JSON. The first, the *header*, holds everything but the per-item
lists: the task, its parameters and code fingerprint, times, counts, digests of the items
and of the inputs they were made from, and the byte length of the second line. Checking
whether a directory task is up to date reads only this line (and the file's size), however
many items the second line lists.

A manifest is checked against its schema when it is read: a file that is not a regular file
(a symbolic link, dangling or not, a FIFO, a device, a folder), does not parse, has the wrong
shape, a length other than its header says, lists a file outside its folder (an absolute path,
``..``, a name luisy reserves) or an item name that could not name such a file, is *corrupt*. It
is never followed: the task runs again and ``luisy verify`` reports it.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import os
import platform
import re
import socket
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from luisy.bounded import BoundedCache
from luisy.digests import bytes_digest, columns_digest, items_digest, stream_digest, text_digest
from luisy.errors import BrokenFileError, ManifestError
from luisy.regular_files import kind, open_regular

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 4
#: Schemas this luisy reads; an older one is rewritten in the current schema by the next publish.
READABLE_SCHEMAS = (2, 3, 4)
_BODY = ("items", "failed", "failed_sources", "failed_details", "skipped", "retired")
#: What :attr:`Manifest.failed_details` may say about a failed item.
FAILURE_DETAILS = ("input", "traceback")
#: A header line longer than this is not a manifest's (the parameters are in it, nothing per item).
HEADER_MAX_BYTES = 1 << 22
#: Files that item files may not be named like: luisy's own, in the folder and beside it.
RESERVED_PREFIXES = (".luisy", "_luisy")
#: What to do about a bad item file.
REPAIR = "`luisy verify TASK --repair` drops bad items, so that the next run makes them again"


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
    def _from_columns(cls, columns: list[list[Any]]) -> ItemTable:
        names, files, sizes, checksums, sources = columns
        return cls(names, files, sizes, checksums, sources)

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
        if any(name in keep for name in new):  # rare: a kept row is replaced too
            keep = keep.difference(new)
        mask = list(map(keep.__contains__, self.names))  # a C loop: a million rows on every rerun
        kept: list[list[Any]] = [list(itertools.compress(column, mask))
                                 for column in (self.names, self.files, self.sizes, self.checksums, self.sources)]
        if not new:  # the common incremental case: a subset of the current rows, in order
            return ItemTable._from_columns(kept)
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
        return ItemTable._from_columns(out)

    def digest(self) -> str:
        """:func:`items_digest` of ``(name, checksum)``."""
        if self._digest is None:  # the table is never changed: once is enough
            self._digest = columns_digest(self.names, self.checksums)
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
    #: Of failed items: their input file (``"input"``) and where the item's code failed
    #: (``"traceback"``, see :mod:`luisy.tracebacks`), where known. Kept for failed items only,
    #: so it costs nothing while items succeed.
    failed_details: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str | None] = field(default_factory=dict)
    #: Files of replaced items kept (in ``.luisy-retired/``) for readers of an earlier manifest,
    #: with the time (epoch seconds) they were replaced.
    retired: dict[str, float] = field(default_factory=dict)
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
    #: Items it took over, made by an interrupted run (published, not counted in ``processed``).
    resumed: int = 0
    #: Identity of the ``luisy.build`` call that wrote it (failed items do not block that run).
    run: str = ""

    #: Digest of the input items (name, fingerprint) the run saw; ``None`` for hand-written outputs.
    inputs_digest: str | None = None

    def __post_init__(self) -> None:
        self.items = ItemTable.of(self.items)

    def header(self, body_bytes: int | None = None, body_digest: str | None = None) -> ManifestHeader:
        """The first line's content."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BODY}
        items = self.items.digest()
        return ManifestHeader(
            **values, item_count=len(self.items), failed_count=len(self.failed), items_digest=items,
            content_digest=items_digest([("", items), *((name, "failed") for name in self.failed)]),
            body_bytes=body_bytes, body_digest=body_digest,
        )

    def to_json(self) -> str:
        return self.encoded()[0]

    def encoded(self) -> tuple[str, ManifestHeader]:
        """The file's text, and its header."""
        head, body, header = self.encoded_lines()
        return head + "\n" + "".join(body), header

    def encoded_lines(self) -> tuple[str, list[str], ManifestHeader]:
        """The first line, the second line in pieces (one per column: at a million items the
        whole line, copied to be hashed and written, would be the largest thing in memory), and
        the header."""
        body: dict[str, Any] = {name: getattr(self, name) for name in _BODY if name != "items"}
        table = self.items
        body.update(names=table.names, files=table.files, sizes=table.sizes, checksums=table.checksums,
                    sources=table.sources)
        # No indent: only then does json use its C encoder. ASCII only, so characters are bytes.
        pieces = [f'{"," if i else "{"}{json.dumps(key)}:{json.dumps(value, separators=(",", ":"))}'
                  for i, (key, value) in enumerate(body.items())]
        pieces.append("}")
        header = self.header(sum(map(len, pieces)), text_digest(pieces))
        return json.dumps({"schema": SCHEMA, **asdict(header)}, sort_keys=True), pieces, header

    @classmethod
    def from_json(cls, text: str, where: str = "manifest", body_checked: bool = False) -> Manifest:
        """Parse and validate a manifest; :class:`~luisy.errors.ManifestError` if it is corrupt.

        ``body_checked``: the second line's length and digest are known to match the header.
        """
        end = text.find("\n")
        if end < 0:  # no second line: the body parsed below is empty, hence corrupt
            end = len(text)
        header = _header_fields(_json(text[:end], where), where)
        if not body_checked:
            _check_body_bytes(header, text[end + 1:].encode("utf-8", "surrogateescape"), where)
        body = _json(text, where, start=end + 1)
        _check_body(body, header, where)
        names, files, sizes, checksums, sources = (body.pop(column) for column in
                                                   ("names", "files", "sizes", "checksums", "sources"))
        items = ItemTable(names, files, sizes, checksums, sources, digest=header["items_digest"])  # as written
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in header.items() if k in known}, items=items, **body)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The folder's manifest, or ``None`` if there is none or it is corrupt (see :meth:`read`).

        Parsed manifests are cached by the file's identity (inode, size, mtime): a manifest is
        replaced, never edited, so a changed file is a new entry. Treat the result as read-only.
        """
        try:
            return cls.read(folder)
        except ManifestError:
            return None

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The folder's manifest; ``None`` if there is none, :class:`~luisy.errors.ManifestError` if corrupt."""
        return _read_current(folder, _parsed.get)

    @staticmethod
    def load_header(folder: str | os.PathLike[str]) -> ManifestHeader | None:
        """Only the first line of the folder's manifest (cheap however many items it lists).

        ``None`` if there is none or it is corrupt. The header is checked against the schema and
        the file's length; a manifest of an older schema, which records no length, is read whole.
        """
        def header_of(identity: tuple[str, int, int, int]) -> ManifestHeader:
            header = _parse_header(*identity)
            if header.body_bytes is None:
                _parsed.get(identity)
            return header

        try:
            return _read_current(folder, header_of)
        except ManifestError:
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
    #: Length and digest of the second line; ``None`` in manifests of schema 2.
    body_bytes: int | None = None
    body_digest: str | None = None
    #: Items taken over from an interrupted run; 0 in manifests before schema 4.
    resumed: int = 0


class _Replaced(Exception):
    """The manifest file was replaced between looking at it and opening it."""


def _read_current(folder: str | os.PathLike[str], read: Any) -> Any:
    """``read(identity)`` of the folder's manifest as it is now; ``None`` if there is none."""
    while True:
        identity = _identity(folder)
        if identity is None:
            return None
        try:
            return read(identity)
        except _Replaced:  # another publish replaced it meanwhile: read the new one
            continue


def _open_as(identity: tuple[str, int, int, int]) -> Any:
    """The manifest file, opened; :class:`_Replaced` if it is no longer the one ``identity`` describes."""
    try:
        f = open_regular(identity[0], own=True)
    except BrokenFileError:  # no longer the regular file it was a moment ago: look again
        raise _Replaced from None
    stat = os.fstat(f.fileno())
    if (stat.st_ino, stat.st_size, stat.st_mtime_ns) != identity[1:]:
        f.close()
        raise _Replaced
    return f


def _identity(folder: str | os.PathLike[str]) -> tuple[str, int, int, int] | None:
    path = os.path.join(folder, MANIFEST_NAME)
    try:
        info = os.lstat(path)  # luisy never makes it a link: a dangling one is no missing manifest
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):  # a link, a folder, a FIFO (which would block a reader), a device
        raise ManifestError(f"{path} is corrupt: {kind(info.st_mode)}, not a regular file")
    return path, info.st_ino, info.st_size, info.st_mtime_ns


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
            _parse_header(*identity)  # the header and the file's length are checked before the body is read
            with _open_as(identity) as f:
                text = f.read().decode("utf-8", "surrogateescape")
            found = Manifest.from_json(text, identity[0], body_checked=True)
        self.put(identity, found)
        return found

    def put(self, identity: tuple[str, int, int, int], manifest: Manifest) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k[0] != identity[0]}  # one per path
        self.entries[identity] = manifest
        while len(self.entries) > self.size:  # a manifest of 100 000 items takes tens of MB parsed
            del self.entries[next(iter(self.entries))]


_parsed = _ParsedManifests(size=2)  # a stage and its upstream


def remember(folder: str | os.PathLike[str], manifest: Manifest, header: ManifestHeader) -> None:
    """Note that ``manifest`` (with ``header``) is what the folder's manifest file now holds (just
    written), so neither is read back in this process."""
    identity = _identity(folder)
    if identity is not None:
        _parsed.put(identity, manifest)
        _headers.put(identity, header)


_headers: BoundedCache[tuple[str, int, int, int], ManifestHeader] = BoundedCache(64)


def _parse_header(path: str, inode: int, size: int, mtime_ns: int) -> ManifestHeader:
    """The header of the manifest at ``path``, checked, by the file's identity (a manifest is
    replaced, never edited)."""
    identity = (path, inode, size, mtime_ns)
    return _headers.get_or_make(identity, lambda key: _read_header(*key))


def _read_header(path: str, inode: int, size: int, mtime_ns: int) -> ManifestHeader:
    """Read and check a header; reads at most :data:`HEADER_MAX_BYTES` of it."""
    with _open_as((path, inode, size, mtime_ns)) as f:
        line = f.readline(HEADER_MAX_BYTES + 1)
        if not line.endswith(b"\n"):
            raise ManifestError(f"{path} is corrupt: no header line")
        header = _header_fields(_json(line.decode("utf-8", "surrogateescape"), path), path)
        if header["body_bytes"] is not None:
            if size != len(line) + header["body_bytes"]:
                raise ManifestError(f"{path} is corrupt: {size} bytes long, its header says "
                                    f"{len(line) + header['body_bytes']}")
            if stream_digest(f) != header["body_digest"]:
                raise ManifestError(f"{path} is corrupt: its second line is not the one its header describes")
    return ManifestHeader(**header)


def _check_body_bytes(header: dict[str, Any], body: bytes, where: str) -> None:
    """The second line is as long as the header says, with the digest it says (manifests of schema 3)."""
    if header["body_bytes"] is not None and (len(body) != header["body_bytes"]
                                             or bytes_digest(body) != header["body_digest"]):
        raise ManifestError(f"{where} is corrupt: its second line is not the one its header describes")


def _json(text: str, where: str, start: int = 0) -> Any:
    """The JSON document that is ``text[start:]``, parsed in place (a manifest's second line can
    be 100 MB: no copy of it is made)."""
    try:
        if not start:
            return json.loads(text)
        found, end = _DECODER.raw_decode(text, _skip_whitespace(text, start))  # as json.loads
        if text[end:].strip():
            raise json.JSONDecodeError("Extra data", text, end)
        return found
    except (ValueError, RecursionError) as error:  # a deeply nested document exhausts the parser
        raise ManifestError(f"{where} is corrupt: not JSON ({type(error).__name__})") from None


_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip_whitespace(text: str, start: int) -> int:
    """Where the JSON value after ``start`` begins (the pattern matches the empty string too)."""
    match = _WHITESPACE.match(text, start)
    return match.end() if match is not None else start


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_optional_str(value: Any) -> bool:
    return value is None or type(value) is str


def _is_str_dict(value: Any, values: Any = _is_str) -> bool:
    return type(value) is dict and all(type(k) is str and values(v) for k, v in value.items())


def _is_details(value: Any) -> bool:
    return _is_str_dict(value) and value.keys() <= set(FAILURE_DETAILS)


_HEADER_FIELDS = {
    "task": _is_str, "params": _is_str_dict, "code_fingerprint": _is_optional_str, "luisy_version": _is_str,
    "python_version": _is_str, "host": _is_str, "started": _is_str, "finished": _is_str, "processed": _is_int,
    "run": _is_str, "inputs_digest": _is_optional_str, "item_count": _is_int, "failed_count": _is_int,
    "items_digest": _is_str, "content_digest": _is_str,
}


def _header_fields(header: Any, where: str) -> dict[str, Any]:
    """The header's fields, checked against the schema."""
    if type(header) is not dict:
        raise ManifestError(f"{where} is corrupt: its header is not a JSON object")
    schema = header.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise ManifestError(f"{where} has manifest schema {schema!r}; this luisy reads {READABLE_SCHEMAS}")
    checked = {}
    for name, valid in _HEADER_FIELDS.items():
        if name not in header or not valid(header[name]):
            raise ManifestError(f"{where} is corrupt: header field {name!r} is missing or of the wrong type")
        checked[name] = header[name]
    for name, valid in (("body_bytes", _is_int), ("body_digest", _is_str)):
        if schema >= 3 and not valid(header.get(name)):
            raise ManifestError(f"{where} is corrupt: header field {name!r} is missing or of the wrong type")
        checked[name] = header[name] if schema >= 3 else None
    if schema >= 4 and not _is_int(header.get("resumed")):
        raise ManifestError(f"{where} is corrupt: header field 'resumed' is missing or of the wrong type")
    checked["resumed"] = header["resumed"] if schema >= 4 else 0
    return checked


# A component that is empty, '.' or '..', or starts like a file luisy reserves; or a backslash.
# Matched against all file names joined by NUL, so 100 000 names are checked in one C call.
_BAD_FILE = re.compile(
    r"(?:\A|\x00|/)(?:\.{0,2}(?=\Z|\x00|/)|" + "|".join(map(re.escape, RESERVED_PREFIXES)) + r")|\\"
)


def bad_file_name(files: list[str]) -> str | None:
    """The first of ``files`` that is not a plain relative path inside a folder, or a name luisy reserves."""
    joined = "\x00".join(files)
    if joined.count("\x00") == max(len(files) - 1, 0):  # no name holds a NUL byte
        # Substring tests first (a C scan each); the regex only runs when one of them finds a suspect.
        if not files or not (not joined or joined[0] in "./_\x00" or joined[-1] in "/\x00"
                             or any(mark in joined for mark in _SUSPECT)) or not _BAD_FILE.search(joined):
            return None
    return next(f for f in files if f == "" or "\x00" in f or _BAD_FILE.search(f))


# Where a component that _BAD_FILE refuses can start, after a separator.
_SUSPECT = ("\\", "//", "/\x00", "\x00/", "\x00\x00", "/.", "\x00.", "/_luisy", "\x00_luisy")


def _check_body(body: Any, header: dict[str, Any], where: str) -> None:
    """Raise :class:`~luisy.errors.ManifestError` unless ``body`` has the schema's shape."""

    def corrupt(what: str) -> ManifestError:
        return ManifestError(f"{where} is corrupt: {what}")

    if type(body) is not dict:
        raise corrupt("its second line is not a JSON object")
    body.setdefault("retired", {})  # schema 2 had none
    body.setdefault("failed_details", {})  # nor had schema 3
    # The types each column may hold, checked by C loops: this runs for 100 000 items per read.
    columns: dict[str, set[type]] = {"names": {str}, "files": {str}, "sizes": {int}, "checksums": {str},
                                     "sources": {str, type(None)}}
    expected = set(columns) | {"failed", "failed_sources", "failed_details", "skipped", "retired"}
    if set(body) != expected:
        raise corrupt(f"its item lists are {sorted(body)}, expected {sorted(expected)}")
    for name, types in columns.items():
        column = body[name]
        if type(column) is not list or len(column) != header["item_count"] or not types.issuperset(map(type, column)):
            raise corrupt(f"item list {name!r} is not {header['item_count']} values of the right type")
    names, files = body["names"], body["files"]
    if body["sizes"] and min(body["sizes"]) < 0:
        raise corrupt("an item has a negative size")
    if not all(map(operator.lt, names, itertools.islice(names, 1, None))):
        raise corrupt("item names are not unique and sorted")
    if not _is_str_dict(body["failed"]) or len(body["failed"]) != header["failed_count"]:
        raise corrupt("the failed items do not match the header")
    for name in ("failed_sources", "skipped"):
        if not _is_str_dict(body[name], _is_optional_str):
            raise corrupt(f"{name!r} is not a mapping of names")
    details = body["failed_details"]
    if not _is_str_dict(details, _is_details) or not details.keys() <= body["failed"].keys():
        raise corrupt("'failed_details' is not a mapping of failed items to their details")
    retired = body["retired"]
    if not _is_str_dict(retired, lambda t: type(t) in (int, float)):
        raise corrupt("'retired' is not a mapping of files to times")
    every = [*files, *retired]
    bad = bad_file_name(every)
    if bad is not None:
        raise corrupt(f"it lists the file {bad!r}, outside its folder or reserved")
    # A name is the item's name downstream too, where it names a file: one no writer could
    # have written would fail every task that reads the items.
    bad = bad_file_name(names)
    if bad is not None:
        raise corrupt(f"it lists the item name {bad!r}, which cannot name a file inside a folder")
    if len(set(every)) != len(every):
        raise corrupt("it lists one file twice")


def luisy_version() -> str:
    return sys.modules["luisy"].__version__
