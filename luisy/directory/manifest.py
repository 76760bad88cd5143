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

import functools
import itertools
import json
import operator
import os
import platform
import re
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from luisy.bounded import BoundedCache
from luisy.digests import bytes_digest, items_digest, stream_digest, text_digest
from luisy.directory.table import ItemTable, PartedItems, PartRecord, empty_table
from luisy.errors import BrokenFileError, ManifestError
from luisy.parts import part_keys, parts_digest
from luisy.regular_files import kind, open_regular, read_own

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 5
#: Schemas this luisy reads; an older one is rewritten in the current schema by the next publish.
READABLE_SCHEMAS = (2, 3, 4, 5)
#: The folder, inside the output folder, of the parts of a manifest of more than one part.
PARTS = "_luisy_manifest.parts"
_BODY = ("items", "failed", "failed_sources", "failed_details", "skipped", "retired", "retired_parts")
_COLUMNS = ("names", "files", "sizes", "checksums", "sources")
#: A part file's name: its content's digest (so a part is never rewritten in place).
_PART_FILE = re.compile(re.escape(PARTS) + r"/([0-9a-f]{32})\.json")
#: What :attr:`Manifest.failed_details` may say about a failed item.
FAILURE_DETAILS = ("input", "traceback")
#: A header line longer than this is not a manifest's (the parameters are in it, nothing per item).
HEADER_MAX_BYTES = 1 << 22
#: Files that item files may not be named like: luisy's own, in the folder and beside it.
RESERVED_PREFIXES = (".luisy", "_luisy")
#: What to do about a bad item file.
REPAIR = "`luisy verify TASK --repair` drops bad items, so that the next run makes them again"


@dataclass
class Manifest:
    """What a directory output holds. ``items`` and ``failed`` are keyed by item name.

    ``items`` may be given as any mapping name → :class:`Item`; it is kept as
    :class:`~luisy.directory.table.PartedItems`. A manifest of one part holds its items in its
    second line; a larger one lists its parts there, each a file of its own in
    ``_luisy_manifest.parts/`` named by its content's digest, read when first needed.
    """

    items: PartedItems = field(default_factory=lambda: PartedItems.split(empty_table(), 1))
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
    #: Part files an earlier manifest listed, kept for its readers, with the time they were replaced.
    retired_parts: dict[str, float] = field(default_factory=dict)
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
        if not isinstance(self.items, PartedItems):
            self.items = PartedItems.split(self.items)

    def header(self, body_bytes: int | None = None, body_digest: str | None = None) -> ManifestHeader:
        """The first line's content."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BODY}
        items = self.items.digest()
        return ManifestHeader(
            **values, item_count=len(self.items), failed_count=len(self.failed), items_digest=items,
            content_digest=items_digest([("", items), *((name, "failed") for name in self.failed)]),
            body_bytes=body_bytes, body_digest=body_digest, part_count=self.items.part_count,
        )

    def new_parts(self) -> Iterator[tuple[str, bytes]]:
        """The part files (path relative to the folder, content) not stored yet, which must be
        written before the manifest is; from then on their records name them. Nothing for a
        manifest of one part, which holds its items itself. One at a time: all of a million
        items as JSON would be the largest thing in memory."""
        table = self.items
        if table.part_count == 1:
            return
        for p, record in enumerate(table.records):
            if record.file is None:
                data = _part_bytes(table.part(p))
                file = f"{PARTS}/{bytes_digest(data)}.json"
                table.records[p] = record._replace(file=file)
                yield file, data

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
        if table.part_count == 1:
            part = table.part(0)
            body.update(names=part.names, files=part.files, sizes=part.sizes, checksums=part.checksums,
                        sources=part.sources)
        else:
            if any(record.file is None for record in table.records):
                raise ValueError("the parts of a manifest are stored before it (see Manifest.new_parts)")
            body["parts"] = [list(record) for record in table.records]
        # No indent: only then does json use its C encoder. ASCII only, so characters are bytes.
        pieces = [f'{"," if i else "{"}{json.dumps(key)}:{json.dumps(value, separators=(",", ":"))}'
                  for i, (key, value) in enumerate(body.items())]
        pieces.append("}")
        header = self.header(sum(map(len, pieces)), text_digest(pieces))
        return json.dumps({"schema": SCHEMA, **asdict(header)}, sort_keys=True), pieces, header

    @classmethod
    def from_json(cls, text: str, where: str = "manifest", body_checked: bool = False,
                  read_part: Callable[[str], bytes] | None = None) -> Manifest:
        """Parse and validate a manifest; :class:`~luisy.errors.ManifestError` if it is corrupt.

        ``body_checked``: the second line's length and digest are known to match the header.
        ``read_part``: the content of a part file (by path relative to the folder), for a manifest
        of several parts; each part is read and checked when first needed.
        """
        end = text.find("\n")
        if end < 0:  # no second line: the body parsed below is empty, hence corrupt
            end = len(text)
        raw = _json(text[:end], where)
        header = _header_fields(raw, where)
        if not body_checked:
            _check_body_bytes(header, text[end + 1:].encode("utf-8", "surrogateescape"), where)
        body = _json(text, where, start=end + 1)
        _check_body(body, header, where)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in header.items() if k in known}
        if "parts" in body:
            records = [PartRecord(*record) for record in body.pop("parts")]
            load = functools.partial(_load_part, read_part, len(records), where)
            return cls(**values, items=PartedItems(records, [None] * len(records), load), **body)
        names, files, sizes, checksums, sources = (body.pop(column) for column in _COLUMNS)
        table = ItemTable(names, files, sizes, checksums, sources, digest=header["items_digest"])  # as written
        # A manifest of an older schema may list more items than one part holds: split (and
        # checked) now, stored in parts by its next publish.
        items = PartedItems.split(table) if raw["schema"] < 5 else \
            PartedItems([PartRecord(None, len(table), table.digest())], [table])
        return cls(**values, items=items, **body)

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
    #: How many parts the items are stored in; 1 in manifests before schema 5.
    part_count: int = 1


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
            found = Manifest.from_json(text, identity[0], body_checked=True,
                                       read_part=_part_reader(os.path.dirname(identity[0])))
        self.put(identity, found)
        return found

    def put(self, identity: tuple[str, int, int, int], manifest: Manifest) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k[0] != identity[0]}  # one per path
        self.entries[identity] = manifest
        while len(self.entries) > self.size:  # a manifest of 100 000 items takes tens of MB parsed
            del self.entries[next(iter(self.entries))]


_parsed = _ParsedManifests(size=2)  # a stage and its upstream

#: A part file longer than this is not one luisy wrote (a part holds thousands of items, not millions).
PART_MAX_BYTES = 1 << 30


def _part_reader(folder: str) -> Callable[[str], bytes]:
    """Reads the part files of the manifest in ``folder``: never through a symbolic link."""
    def read(file: str) -> bytes:
        if os.path.islink(os.path.join(folder, PARTS)):
            raise ManifestError(f"{os.path.join(folder, PARTS)} is a symbolic link; luisy does not follow it: "
                                f"{REPAIR}")
        return read_own(os.path.join(folder, file), PART_MAX_BYTES)
    return read


def remember(folder: str | os.PathLike[str], manifest: Manifest, header: ManifestHeader,
             replaced: Manifest | None = None) -> None:
    """Note that ``manifest`` (with ``header``) is what the folder's manifest file now holds (just
    written), so neither is read back in this process; and the parts of ``replaced`` (the one
    it replaced) that it no longer lists and that are at hand, for a reader of the earlier one."""
    identity = _identity(folder)
    if identity is not None and replaced is not None and replaced.items.part_count > 1:
        listed = {record.file for record in manifest.items.records}
        for record, table in replaced.items.at_hand():
            if record.file is not None and record.file not in listed:
                _replaced_parts.put((identity[0], record.file), table)
    if identity is not None:
        manifest.items.stored(functools.partial(_load_part, _part_reader(os.fspath(folder)), manifest.items.part_count,
                                                identity[0]))
        # A rerun's few changed parts stay at hand for the task downstream; a first run's
        # million items are read again part by part, rather than held whole while it runs.
        manifest.items.release(keep=HELD_PARTS)
        _parsed.put(identity, manifest)
        _headers.put(identity, header)


#: How many parts of a manifest just written stay at hand (about 130 000 items).
HELD_PARTS = 32
#: Parts a publish in this process replaced, by (manifest path, part file), as read then: a
#: reduce compares the items its state covers with those now right after the publish, and reads
#: the parts it covers again otherwise. A part file is never rewritten (named by its digest).
_replaced_parts: BoundedCache[tuple[str, str], ItemTable] = BoundedCache(HELD_PARTS)

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
    count: Any = header.get("part_count") if schema >= 5 else 1
    if not (_is_int(count) and count >= 1 and not count & (count - 1)):
        raise ManifestError(f"{where} is corrupt: header field 'part_count' is missing or not a power of two")
    checked["part_count"] = count
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
    body.setdefault("retired_parts", {})  # nor had schema 4
    parted = header["part_count"] > 1
    expected = {"failed", "failed_sources", "failed_details", "skipped", "retired", "retired_parts"}
    expected |= {"parts"} if parted else set(_COLUMNS)
    if set(body) != expected:
        raise corrupt(f"its item lists are {sorted(body)}, expected {sorted(expected)}")
    if parted:
        _check_parts(body["parts"], header, corrupt)
    else:
        _check_columns(body, header["item_count"], corrupt)
    if not _is_str_dict(body["failed"]) or len(body["failed"]) != header["failed_count"]:
        raise corrupt("the failed items do not match the header")
    for name in ("failed_sources", "skipped"):
        if not _is_str_dict(body[name], _is_optional_str):
            raise corrupt(f"{name!r} is not a mapping of names")
    details = body["failed_details"]
    if not _is_str_dict(details, _is_details) or not details.keys() <= body["failed"].keys():
        raise corrupt("'failed_details' is not a mapping of failed items to their details")
    for name in ("retired", "retired_parts"):
        if not _is_str_dict(body[name], lambda t: type(t) in (int, float)):
            raise corrupt(f"{name!r} is not a mapping of files to times")
    if not all(map(_PART_FILE.fullmatch, body["retired_parts"])):
        raise corrupt("'retired_parts' lists a file that is not a part's")
    retired = list(body["retired"])
    bad = bad_file_name(retired)
    if bad is not None:
        raise corrupt(f"it lists the file {bad!r}, outside its folder or reserved")
    every = retired if parted else [*body["files"], *retired]
    if len(set(every)) != len(every):
        raise corrupt("it lists one file twice")


def _is_part_record(r: Any) -> bool:
    return (type(r) is list and len(r) == 4 and _is_str(r[0]) and _PART_FILE.fullmatch(r[0]) is not None
            and _is_int(r[1]) and _is_str(r[2]) and _is_optional_str(r[3]))


def _check_parts(parts: Any, header: dict[str, Any], corrupt: Callable[[str], ManifestError]) -> None:
    """The part records: one per part, each naming a part file, adding up to the header's items."""
    if type(parts) is not list or len(parts) != header["part_count"] or not all(map(_is_part_record, parts)):
        raise corrupt(f"its parts are not {header['part_count']} records of a part file, count and digests")
    if sum(record[1] for record in parts) != header["item_count"]:
        raise corrupt("its parts do not add up to the items its header counts")
    if parts_digest(record[2] for record in parts) != header["items_digest"]:
        raise corrupt("its parts are not the items its header describes")


def _check_columns(body: dict[str, Any], count: int, corrupt: Callable[[str], ManifestError]) -> None:
    """The item columns: ``count`` values each, of the right types, names unique and sorted,
    files inside the folder, no file twice."""
    # The types each column may hold, checked by C loops: this runs for 100 000 items per read.
    columns: dict[str, set[type]] = {"names": {str}, "files": {str}, "sizes": {int}, "checksums": {str},
                                     "sources": {str, type(None)}}
    for name, types in columns.items():
        column = body[name]
        if type(column) is not list or len(column) != count or not types.issuperset(map(type, column)):
            raise corrupt(f"item list {name!r} is not {count} values of the right type")
    names, files = body["names"], body["files"]
    if body["sizes"] and min(body["sizes"]) < 0:
        raise corrupt("an item has a negative size")
    if not all(map(operator.lt, names, itertools.islice(names, 1, None))):
        raise corrupt("item names are not unique and sorted")
    bad = bad_file_name(files)
    if bad is not None:
        raise corrupt(f"it lists the file {bad!r}, outside its folder or reserved")
    # A name is the item's name downstream too, where it names a file: one no writer could
    # have written would fail every task that reads the items.
    bad = bad_file_name(names)
    if bad is not None:
        raise corrupt(f"it lists the item name {bad!r}, which cannot name a file inside a folder")
    if len(set(files)) != len(files):
        raise corrupt("it lists one file twice")


def _part_bytes(table: ItemTable) -> bytes:
    """A part file's content: the part's columns, one line of JSON."""
    columns = dict(zip(_COLUMNS, (table.names, table.files, table.sizes, table.checksums, table.sources),
                       strict=True))
    return json.dumps(columns, separators=(",", ":")).encode("ascii")


def _load_part(read: Callable[[str], bytes] | None, count: int, where: str, p: int, record: PartRecord) -> ItemTable:
    """Part ``p`` of ``count``, read with ``read`` and checked against its ``record`` (the manifest
    at ``where`` lists it); :class:`~luisy.errors.ManifestError` if it is missing or corrupt."""
    file = str(record.file)
    known = _replaced_parts.get((where, file))
    if known is not None and known.digest() == record.digest and len(known) == record.items:
        return known
    shown = f"{where.rsplit('/', 1)[0]}/{file}" if "/" in where else file
    if read is None:
        raise ManifestError(f"{shown}: the parts of this manifest cannot be read here")
    try:
        data = read(file)
    except FileNotFoundError:
        raise ManifestError(f"{shown} is missing (the manifest listing it was replaced since it was read, "
                            f"or the part was removed); {REPAIR}") from None
    except BrokenFileError as error:  # a link, a FIFO, a folder, or larger than any part luisy writes
        raise ManifestError(f"{error}; {REPAIR}") from None
    match = _PART_FILE.fullmatch(file)
    if match is None or bytes_digest(data) != match.group(1):
        raise ManifestError(f"{shown} is corrupt: its content is not the one its name says; {REPAIR}")

    def corrupt(what: str) -> ManifestError:
        return ManifestError(f"{shown} is corrupt: {what}; {REPAIR}")

    body = _json(data.decode("utf-8", "surrogateescape"), shown)
    if type(body) is not dict or set(body) != set(_COLUMNS):
        raise corrupt(f"it is not an object of the item lists {list(_COLUMNS)}")
    _check_columns(body, record.items, corrupt)
    table = ItemTable(*(body[column] for column in _COLUMNS))
    if not set(part_keys(table.names, count)) <= {p}:
        raise corrupt(f"it lists an item of another part than {p}")
    if table.digest() != record.digest:
        raise corrupt("its items are not the ones the manifest describes")
    return table


def retire_parts(manifest: Manifest, current: Manifest, now: float, keep_for: float) -> list[str]:
    """Record in ``manifest`` (about to replace ``current``) the part files ``current`` lists or
    keeps that it does not list, with when they were replaced; those replaced ``keep_for`` seconds
    ago or earlier are returned instead, to be deleted. Call after :meth:`Manifest.new_parts`."""
    listed = {record.file for record in manifest.items.records}
    replaced = {record.file: now for record in current.items.records if record.file and record.file not in listed}
    kept = {f: t for f, t in current.retired_parts.items() if f not in listed}
    manifest.retired_parts = {f: t for f, t in {**kept, **replaced}.items() if now - t < keep_for or f in replaced}
    return [f for f in kept if f not in manifest.retired_parts]


def luisy_version() -> str:
    return sys.modules["luisy"].__version__
