"""A directory output kept in a :class:`~luisy.storage.MemoryStorage`: its manifest and item objects.

What ``LuisyTestCase`` runs directory tasks in: nothing touches the disk. The folder's state is
one object in the storage, replaced as a whole by a publish, so a reader of the previous state
keeps reading it. Items are copied in and out, so no task can change another's by mutation.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luisy.digests import bytes_digest
from luisy.directory.manifest import Manifest, ManifestHeader
from luisy.directory.table import Item

if TYPE_CHECKING:
    from luisy.formats import Reading
    from luisy.storage import MemoryStorage


@dataclass(frozen=True)
class _State:
    manifest: Manifest
    files: dict[str, Any]


class MemoryFolder:
    """The place of a directory output in memory; the same operations as a local folder's."""

    #: Items are written into this process's memory, so they are processed here, one by one.
    parallel = False

    def __init__(self, folder: Path, owner: str, store: MemoryStorage) -> None:
        self.folder, self.owner, self.store = folder, owner, store
        self.key = os.fspath(folder)

    def _state(self) -> _State | None:
        return self.store.objects.get(self.key)

    def header(self) -> ManifestHeader | None:
        state = self._state()
        return state.manifest.header() if state is not None else None

    def manifest(self) -> Manifest | None:
        state = self._state()
        return state.manifest if state is not None else None

    def paths(self, files: Iterable[str]) -> list[Path]:
        return [self.folder / file for file in files]

    def reader(self, read: Reading) -> Callable[[str], Any]:
        state = self._state()
        files = state.files if state is not None else {}  # the state read now, whatever is published later
        return lambda path: copy.deepcopy(files[os.path.relpath(path, self.key)])

    def old_version(self, item: Item) -> str | None:
        """``None``: memory keeps only the items of the current publication."""
        return None

    def restamp(self, change: Callable[[Manifest], Manifest]) -> None:
        state = self._state()
        if state is not None:
            self.store.objects[self.key] = _State(change(state.manifest), state.files)

    def repair(self, items: Iterable[str], strays: Iterable[str], corrupt: bool,
               checked: ManifestHeader | None = None) -> None:
        state = self._state()
        if state is not None and (checked is None or state.manifest.header() == checked):
            dropped = set(items)
            kept = state.manifest.items.merged([n for n in state.manifest.items if n not in dropped], {})
            manifest = replace(state.manifest, items=kept, inputs_digest=None)
            self.store.objects[self.key] = _State(manifest, {f: state.files[f] for f in kept.files})

    def broken_locks(self) -> list[tuple[Path, str]]:
        return []  # no lock files in memory

    def blocked(self) -> str | None:
        return None  # nothing but the output's state can stand at its key

    def contains(self, path: str) -> bool:
        return os.path.normpath(path).startswith(os.path.join(self.key, ""))

    def check(self, manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {}  # objects in memory are copies no other code can change

    def note_verified(self, publication: str, bad: dict[str, str], items: int) -> None:
        self.store.objects[self.key + "#verified"] = (publication, dict(bad))

    def verified_bad(self, publication: str, items: int) -> dict[str, str]:
        noted, bad = self.store.objects.get(self.key + "#verified", ("", {}))
        return dict(bad) if noted == publication else {}

    def checkpointed(self, state: dict[str, Any]) -> dict[str, Item]:
        return {}  # nothing in memory outlives an interrupted run

    def staging(self, state: dict[str, Any]) -> MemoryStaging:
        return MemoryStaging()

    def tidy(self) -> bool:
        return False  # a publish in memory is never interrupted half way

    def publish(self, writer: Any) -> Manifest:
        state = self._state()
        current = state.manifest if state is not None else Manifest()
        items = current.items.merged(writer.kept, writer.new, writer.part_count, writer.inputs_parts)
        old = state.files if state is not None else {}
        files = {**{file: old[file] for file in items.files if file in old}, **writer.staging.objects}
        manifest = writer.manifest(items, current, {})
        self.store.objects[self.key] = _State(manifest, {file: files[file] for file in items.files})
        return manifest


@dataclass
class MemoryStaging:
    """Item objects written by a writer, until it publishes them."""

    objects: dict[str, Any] = field(default_factory=dict)
    #: Nothing is left behind by an interrupted run in memory, so nothing is resumed.
    resumed: dict[str, Item] = field(default_factory=dict)

    def checkpoint(self, state: dict[str, Any], items: Iterable[tuple[str, Item]]) -> None:
        pass

    def keep(self) -> None:
        pass

    def write(self, file: str, obj: Any, write: Callable[[Any, Path], None]) -> Item:
        data = pickle.dumps(obj)  # stands in for the file: its size and checksum
        self.objects[file] = copy.deepcopy(obj)
        return Item(file=file, size=len(data), checksum=bytes_digest(data))

    def discard(self) -> None:
        self.objects.clear()
