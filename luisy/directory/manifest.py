"""The manifest of a directory output: which items exist, where, and what they came from.

Invariant: an item exists for readers iff the manifest lists it. The manifest is written last,
replacing the previous one in one ``os.replace``.

The file is two lines of JSON. The first, the *header*, holds everything but the per-item
lists: the task, its parameters and code fingerprint, times, counts, and digests of the items
and of the inputs they were made from. Checking whether a directory task is up to date reads
only this line, however many items the second line lists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 2
_BODY = ("items", "failed", "failed_sources", "skipped")


def items_digest(pairs: Iterable[tuple[str, str | None]]) -> str:
    """A digest of ``(name, fingerprint)`` pairs with unique names, independent of their order."""
    by_name = dict(pairs)
    text = "\0".join(f"{name}\0{by_name[name]}" for name in sorted(by_name))  # sorting str is cheap
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Item(NamedTuple):
    """One published item: its file (relative to the folder), size, checksum, and input fingerprint.

    A named tuple: a manifest holds one per item, up to hundreds of thousands, built on every read.
    """

    file: str
    size: int
    checksum: str
    source: str | None = None


@dataclass
class Manifest:
    """What a directory output holds. ``items`` and ``failed`` are keyed by item name."""

    items: dict[str, Item] = field(default_factory=dict)
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

    def header(self) -> ManifestHeader:
        """The first line's content."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BODY}
        items = items_digest((name, item.checksum) for name, item in self.items.items())
        return ManifestHeader(
            **values, item_count=len(self.items), failed_count=len(self.failed), items_digest=items,
            content_digest=items_digest([("", items), *((name, "failed") for name in self.failed)]),
        )

    def to_json(self) -> str:
        header = {"schema": SCHEMA, **asdict(self.header())}
        body: dict[str, Any] = {name: getattr(self, name) for name in _BODY if name != "items"}
        # Items as columns: lists of strings are the fastest JSON there is to read and write.
        columns = list(zip(*self.items.values(), strict=True)) or [(), (), (), ()]
        body.update(names=list(self.items), files=columns[0], sizes=columns[1], checksums=columns[2],
                    sources=columns[3])
        # No indent: only then does json use its C encoder.
        return json.dumps(header, sort_keys=True) + "\n" + json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        head, _, rest = text.partition("\n")
        header = json.loads(head)
        if header.get("schema") != SCHEMA:
            raise ValueError(f"manifest schema {header.get('schema')!r}, this luisy reads {SCHEMA}")
        body = json.loads(rest)
        items = dict(zip(body.pop("names"), map(Item, body.pop("files"), body.pop("sizes"), body.pop("checksums"),
                                                body.pop("sources")), strict=True))
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
        done: dict[str, Any] = {name: item.source for name, item in self.items.items()}
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
