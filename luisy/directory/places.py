"""A directory output's place in a storage: one implementation per storage class.

A place holds the output's manifest and item files, stages a writer's items and publishes them;
:class:`~luisy.directory.target.DirectoryTarget` and its writer speak only to it. A new storage
adds its place here with ``@place.register``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from luisy.directory.local import LocalFolder
from luisy.directory.manifest import Manifest, ManifestHeader
from luisy.directory.memory import MemoryFolder
from luisy.directory.remote import RemoteFolder
from luisy.directory.table import Item
from luisy.storage import LocalStorage, MemoryStorage, Storage
from luisy.storage.remote import RemoteStorage

if TYPE_CHECKING:
    from luisy.directory.target import DirectoryWriter
    from luisy.formats import Reading


class Staging(Protocol):
    """Where a writer's items wait until they are published."""

    #: Items an interrupted writer of the same configuration had written, by name.
    resumed: dict[str, Item]

    def write(self, file: str, obj: Any, write: Callable[[Any, Path], None]) -> Item: ...

    def checkpoint(self, state: dict[str, Any], items: Iterable[tuple[str, Item]]) -> None: ...

    def keep(self) -> None: ...

    def discard(self) -> None: ...


class Place(Protocol):
    """What a directory target asks of the place its folder is in."""

    #: Whether item processes may stage items themselves (files), or only this process (memory).
    parallel: bool

    def header(self) -> ManifestHeader | None: ...

    def manifest(self) -> Manifest | None: ...

    def paths(self, files: Iterable[str]) -> list[Path]: ...

    def reader(self, read: Reading) -> Callable[[str], Any]: ...

    def old_version(self, item: Item) -> str | None: ...

    def contains(self, path: str) -> bool: ...

    def restamp(self, change: Callable[[Manifest], Manifest]) -> None: ...

    def staging(self, state: dict[str, Any]) -> Staging: ...

    def checkpointed(self, state: dict[str, Any]) -> dict[str, Item]: ...

    def repair(self, items: Iterable[str], strays: Iterable[str], corrupt: bool,
               checked: ManifestHeader | None = None) -> None: ...

    def blocked(self) -> str | None: ...

    def check(self, manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]: ...

    def broken_locks(self) -> list[tuple[Path, str]]: ...

    def note_verified(self, publication: str, bad: dict[str, str], items: int) -> None: ...

    def verified_bad(self, publication: str, items: int) -> dict[str, str]: ...

    def tidy(self) -> bool: ...

    def publish(self, writer: DirectoryWriter) -> Manifest: ...


@functools.singledispatch
def place(store: Storage, folder: Path, owner: str) -> Place:
    """The place of the directory output ``folder`` (of task ``owner``) in ``store``."""
    raise TypeError(f"{owner}: directory outputs cannot be kept in a {type(store).__name__}")


@place.register
def _local(store: LocalStorage, folder: Path, owner: str) -> Place:
    return LocalFolder(folder, owner)


@place.register
def _remote(store: RemoteStorage, folder: Path, owner: str) -> Place:
    return RemoteFolder(folder, owner, store)


@place.register
def _memory(store: MemoryStorage, folder: Path, owner: str) -> Place:
    return MemoryFolder(folder, owner, store)
