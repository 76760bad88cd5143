"""The manifest of a directory output: which items exist, where, and what they came from.

Invariant: an item exists for readers iff the manifest lists it. The manifest is written last,
replacing the previous one in one ``os.replace``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "_luisy_manifest.json"
SCHEMA = 1


@dataclass(frozen=True)
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
    skipped: dict[str, str | None] = field(default_factory=dict)
    task: str = ""
    params: dict[str, str] = field(default_factory=dict)
    code_fingerprint: str | None = None
    luisy_version: str = ""
    python_version: str = field(default_factory=platform.python_version)
    host: str = field(default_factory=socket.gethostname)
    started: str = ""
    finished: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["schema"] = SCHEMA
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("schema", None)
        data["items"] = {name: Item(**entry) for name, entry in data.get("items", {}).items()}
        return cls(**data)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The folder's manifest, or ``None`` if there is none or it cannot be read."""
        try:
            return cls.from_json((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None

    def sources(self) -> dict[str, Any]:
        """Input name → fingerprint of the published (or deliberately skipped) item made from it."""
        done: dict[str, Any] = {name: item.source for name, item in self.items.items()}
        done.update(self.skipped)
        return done


def luisy_version() -> str:
    return sys.modules["luisy"].__version__
