"""Where outputs, fingerprint records, the run journal and luisy's caches live.

Every file of the working directory is reached through the :class:`Storage` in force
(:func:`active`): :class:`~luisy.storage.local.LocalStorage` outside tests, a
:class:`~luisy.storage.memory.MemoryStorage` inside :func:`in_memory` (what ``LuisyTestCase``
uses). A storage is addressed by path strings and knows nothing of tasks; it promises that a save
is atomic (a reader sees the old object or the new one) and published with the enclosing staged
``run()``. Where one storage behaves differently from another, that is a method each implements,
not a flag callers test. A directory output's *place* in a storage is made by
:func:`luisy.directory.places.place`, one implementation per storage class.
"""

from __future__ import annotations

import json
import os
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from luisy import config, urls
from luisy.bounded import BoundedCache
from luisy.sources import SourceItem

Reader = Callable[[str], Any]
#: ``(folder, [(relative path, stat)], scope)`` → the content digest of each file.
ContentDigests = Callable[[str, Sequence[tuple[str, os.stat_result]], str], list[str]]
Writer = Callable[[Any, Path], None]


class Appender(Protocol):
    """A file luisy adds lines to (the run journal): each ``write`` is appended whole."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Storage(ABC):
    """The operations luisy's targets, records, journal and caches need."""

    def __init__(self) -> None:
        # Targets made for a task, kept as long as the task lives and no longer than the storage.
        self._targets: weakref.WeakKeyDictionary[Any, tuple[Hashable, Any]] = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        # Sent to item processes and Dask workers with the targets; what it remembered stays here.
        return {k: v for k, v in self.__dict__.items() if k != "_targets"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._targets = weakref.WeakKeyDictionary()

    def remembered(self, owner: Any, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, made once per ``owner`` (a task) and ``key`` for as long as both live."""
        known = self._targets.get(owner)
        if known is not None and known[0] == key:
            return known[1]
        made = make()
        self._targets[owner] = (key, made)
        return made

    @abstractmethod
    def exists(self, path: str, folder: bool = False) -> bool:
        """Whether an object is stored at ``path`` (a regular file, or with ``folder`` a folder, where files are)."""

    @abstractmethod
    def load(self, path: str, read: Reader, folder: bool = False) -> Any:
        """The object at ``path``; ``read(path)`` reads a file (with ``folder``, a folder) where
        files are stored."""

    @abstractmethod
    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        """Store ``obj`` at ``path`` atomically; ``write(obj, tmp)`` writes it where files are stored."""

    @abstractmethod
    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        """The input items of the folder at ``path``: ``list_files()`` where files are stored."""

    @abstractmethod
    def token(self, path: str) -> Hashable | None:
        """A value that changes whenever what is at ``path`` is replaced; ``None`` if nothing is there."""

    @abstractmethod
    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        """A fingerprint of the data at ``path`` (an input): by size and modification time of each
        file, or by the digests ``by_content`` gives (``luisy.fingerprint.content.digests``, which
        caches them); ``None`` if nothing is there."""

    @abstractmethod
    def modified(self, path: str) -> float | None:
        """When what is at ``path`` was last written (epoch seconds); ``None`` if nothing is there."""

    @abstractmethod
    def size(self, path: str) -> int | None:
        """How many bytes the file (object) at ``path`` holds; ``None`` if there is none, or it is
        not bytes (a folder, an object in memory)."""

    @abstractmethod
    def read_bytes(self, path: str, limit: int) -> bytes:
        """The bytes at ``path`` (``FileNotFoundError`` if none); where files are stored, one of
        luisy's own (see :func:`luisy.regular_files.read_own`), of at most ``limit`` bytes."""

    @abstractmethod
    def put_bytes(self, path: str, data: bytes) -> None:
        """Replace what is at ``path`` by ``data`` atomically, now (where files are stored: never
        through a symbolic link at its folder, see :func:`luisy.atomic.replace_own`)."""

    @abstractmethod
    def appender(self, path: str, new: bool) -> Appender:
        """A file of luisy's own to add to; with ``new``, one that must not exist yet (``FileExistsError``)."""

    @abstractmethod
    def listdir(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is a folder)`` of what is in the folder ``path``, by name; ``[]`` if there is
        no such folder, ``NotADirectoryError`` if a file is in its place."""

    @abstractmethod
    def lock(self, path: str) -> AbstractContextManager[None]:
        """A context manager holding an exclusive lock on ``path`` among all writers."""

    @abstractmethod
    def unwritten(self, targets: Iterable[Any]) -> list[str]:
        """The paths of ``targets`` (a finished ``run()``'s outputs) that were not written."""

    @abstractmethod
    def root_problem(self, path: str) -> str | None:
        """Why the working directory ``path`` cannot be used (``"does not exist"``); ``None`` if it can."""

    def fetch_file(self, path: str, local: Path) -> None:
        """Copy the file at ``path`` to the local file ``local`` (a remote's copy of an output)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no files to share")

    def send_file(self, local: Path, path: str) -> None:
        """Store the local file ``local`` at ``path``, whole or not at all (an output sent to a remote)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no files to share")

    @abstractmethod
    def make_folder(self, path: str) -> None:
        """Make the folder ``path`` (and those it is in) where files are stored: code written
        for luisy 1.x writes files of its own into its task's output folder."""


def active() -> Storage:
    """The storage of the context in force: the innermost :func:`in_memory` block's, else the
    one the working directory is in."""
    found: Storage | None = config.context().storage
    return found if found is not None else for_path(config.get_working_dir())


def for_path(path: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> Storage:
    """The storage ``path`` is in: the local file system, or the object store of its URL (see
    :mod:`luisy.urls`), made with ``options`` (default: those of ``[luisy.storage]``)."""
    scheme = urls.scheme(path)
    if scheme is None:
        return LOCAL
    options = dict(config.storage_options() if options is None else options)
    key = (scheme, json.dumps(options, sort_keys=True, default=str))
    known = _remote_stores.get(key)
    if known is None:
        from luisy.storage.remote import RemoteStorage  # fsspec is imported only for a store that is used

        known = RemoteStorage(scheme, options)
        _remote_stores.put(key, known)
    return known


# One client per store and options in a process (making one reads credentials, opens a session).
_remote_stores: BoundedCache[tuple[str, str], Storage] = BoundedCache(16)


@contextmanager
def in_memory(initial: Mapping[str, Any] | None = None) -> Iterator[MemoryStorage]:
    """Keep every output and record in a :class:`~luisy.storage.memory.MemoryStorage` while the block runs."""
    storage = MemoryStorage(initial)
    with config.scope(storage=storage):
        yield storage


from luisy.storage.local import LOCAL, LocalStorage  # noqa: E402  (they subclass Storage)
from luisy.storage.memory import MemoryStorage  # noqa: E402

__all__ = ["Appender", "ContentDigests", "LOCAL", "LocalStorage", "MemoryStorage", "Reader", "Storage",
           "Writer", "active", "in_memory"]
