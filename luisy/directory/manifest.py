"""The manifest of a directory output: which items exist, where, and what they came from.

Invariant: an item exists for readers iff the manifest lists it. The manifest is written last,
replacing the previous one in one ``os.replace``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Item:
    """One published item: its file (relative to the folder), size, checksum, and input fingerprint."""

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

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["items"] = {name: {"file": i.file, "size": i.size, "checksum": i.checksum, "source": i.source}
                         for name, i in self.items.items()}
        data["schema"] = SCHEMA
        # No indent: only then does json use its C encoder (100 000 items in a fraction of a second).
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("schema", None)
        data["items"] = {name: Item(**entry) for name, entry in data.get("items", {}).items()}
        return cls(**data)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The folder's manifest, or ``None`` if there is none or it cannot be read.

        Parsed manifests are cached by the file's identity (inode, size, mtime): a manifest is
        replaced, never edited, so a changed file is a new entry. Treat the result as read-only.
        """
        path = Path(folder) / MANIFEST_NAME
        try:
            stat = path.stat()
            return _parse(os.fspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except (OSError, ValueError, TypeError):
            return None

    def digest(self) -> str:
        """A fingerprint of the content: item names and checksums, and the failed items."""
        found = self.__dict__.get("_digest")
        if found is None:
            h = hashlib.blake2b(digest_size=16)
            for name in sorted(self.items):
                h.update(f"{name}\0{self.items[name].checksum}\0".encode())
            for name in sorted(self.failed):
                h.update(f"failed\0{name}\0".encode())
            found = self.__dict__["_digest"] = h.hexdigest()
        return found

    def sources(self, with_failed: bool = False) -> dict[str, Any]:
        """Input name → fingerprint of the published (or deliberately skipped) item made from it.

        ``with_failed``: failed items count as settled too.
        """
        done: dict[str, Any] = {name: item.source for name, item in self.items.items()}
        done.update(self.skipped)
        if with_failed:
            done.update((name, self.failed_sources.get(name)) for name in self.failed)
        return done


@functools.lru_cache(maxsize=4)  # a manifest of 100 000 items takes tens of MB parsed
def _parse(path: str, inode: int, size: int, mtime_ns: int) -> Manifest:
    return Manifest.from_json(Path(path).read_text(encoding="utf-8"))


def luisy_version() -> str:
    return sys.modules["luisy"].__version__
