"""Where outputs and fingerprint records live: the local file system, or memory while testing.

Targets and the fingerprint records do their I/O through the :class:`Storage` in force
(:func:`active`): :class:`LocalStorage` outside tests, a :class:`MemoryStorage` inside
:func:`in_memory` (what ``LuisyTestCase`` uses). A storage is addressed by path strings and
knows nothing of tasks; it promises that a save is atomic (a reader sees the old object or the
new one) and published with the enclosing staged ``run()``. Nothing outside the local
implementation relies on inodes or ``flock``.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import os
import pickle
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from luisy import config
from luisy.atomic import TMP_MARKER, atomic_dir, atomic_file, defer, replace_own
from luisy.digests import bytes_digest, digest, stat_fingerprint
from luisy.regular_files import read_own
from luisy.sources import SourceItem

Reader = Callable[[str], Any]
#: ``(folder, [(relative path, stat)], scope)`` → the content digest of each file.
ContentDigests = Callable[[str, Sequence[tuple[str, os.stat_result]], str], list[str]]
Writer = Callable[[Any, Path], None]


class Storage(Protocol):
    """The operations luisy's targets and records need."""

    #: Whether outputs are files (which item processes can write, and publishing can move).
    holds_files: bool

    def exists(self, path: str, folder: bool = False) -> bool:
        """Whether an object is stored at ``path`` (a regular file, or with ``folder`` a folder, where files are)."""

    def load(self, path: str, read: Reader) -> Any:
        """The object at ``path``; ``read(path)`` reads a file (or folder) where files are stored."""

    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        """Store ``obj`` at ``path`` atomically; ``write(obj, tmp)`` writes it where files are stored."""

    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        """The input items of the folder at ``path``: ``list_files()`` where files are stored."""

    def token(self, path: str) -> Hashable | None:
        """A value that changes whenever what is at ``path`` is replaced; ``None`` if nothing is there."""

    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        """A fingerprint of the data at ``path`` (an input): by size and modification time of each
        file, or by the digests ``by_content`` gives (``luisy.fingerprint.content.digests``, which
        caches them); ``None`` if nothing is there."""

    def read_bytes(self, path: str, limit: int) -> bytes:
        """The bytes at ``path`` (``FileNotFoundError`` if none); where files are stored, one of
        luisy's own (see :func:`luisy.regular_files.read_own`), of at most ``limit`` bytes."""

    def put_bytes(self, path: str, data: bytes) -> None:
        """Replace what is at ``path`` by ``data`` atomically, now (where files are stored: never
        through a symbolic link at its folder, see :func:`luisy.atomic.replace_own`)."""

    def lock(self, path: str) -> Any:
        """A context manager holding an exclusive lock on ``path`` among all writers."""


class LocalStorage:
    """Files on the local file system, written beside their place and moved in with ``os.replace``."""

    holds_files = True

    def exists(self, path: str, folder: bool = False) -> bool:
        # A FIFO, a socket or a device where a file output belongs is none luisy wrote: reading it
        # would block or fail for ever, so the task counts as not run and its write replaces it.
        return os.path.isdir(path) if folder else os.path.isfile(path)

    def load(self, path: str, read: Reader) -> Any:
        return read(path)

    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        with (atomic_dir if folder else atomic_file)(path) as tmp:
            write(obj, tmp)

    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        return list_files()

    def token(self, path: str) -> Hashable | None:
        try:
            stat = os.lstat(path)  # a link put in a record's place is another version: read, and refused
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        if os.path.isfile(path):
            folder, name = os.path.split(path)
            stat = os.stat(path)
            return by_content(folder, [(name, stat)], name)[0] if by_content else stat_fingerprint(stat)
        if not os.path.isdir(path):
            return None
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                if TMP_MARKER not in name:
                    file = os.path.join(root, name)
                    files.append((Path(os.path.relpath(file, path)).as_posix(), os.stat(file)))
        found = by_content(path, files, "**") if by_content else [stat_fingerprint(s) for _, s in files]
        return digest(*(f"{rel}:{value}" for (rel, _), value in zip(files, found, strict=True)))

    def read_bytes(self, path: str, limit: int) -> bytes:
        return read_own(path, limit)

    def put_bytes(self, path: str, data: bytes) -> None:
        replace_own(path, data)

    @contextmanager
    def lock(self, path: str) -> Iterator[None]:
        # The file itself is replaced, so the lock is on its folder (no lock file left behind).
        os.makedirs(os.path.dirname(path), exist_ok=True)
        folder = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)


class MemoryStorage:
    """Objects in a dict keyed by path. Loads and saves copy the object, so a task cannot change
    another task's output by mutating it."""

    holds_files = False

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        #: Path → stored object (bytes for records).
        self.objects: dict[str, Any] = {os.fspath(k): copy.deepcopy(v) for k, v in (initial or {}).items()}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def exists(self, path: str, folder: bool = False) -> bool:
        return path in self.objects

    def load(self, path: str, read: Reader) -> Any:
        return copy.deepcopy(self.objects[path])

    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        defer(functools.partial(self._set, path, copy.deepcopy(obj)))

    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        """Items from the stored object: a mapping name → object, or luisy 1.x's list of objects."""
        given = self.objects[path]
        pairs = given.items() if hasattr(given, "items") else ((str(i), o) for i, o in enumerate(given))
        return [SourceItem(str(name), bytes_digest(pickle.dumps(obj)), os.path.join(path, str(name)),
                           functools.partial(_copy_of, obj)) for name, obj in pairs]

    def token(self, path: str) -> Hashable | None:
        return self._versions.get(path) if path in self.objects else None

    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        return bytes_digest(pickle.dumps(self.objects[path])) if path in self.objects else None

    def read_bytes(self, path: str, limit: int) -> bytes:
        try:
            data: bytes = self.objects[path]
        except KeyError:
            raise FileNotFoundError(path) from None
        return data

    def put_bytes(self, path: str, data: bytes) -> None:
        self._set(path, data)

    @contextmanager
    def lock(self, path: str) -> Iterator[None]:
        with self._lock:
            yield

    def _set(self, path: str, obj: Any) -> None:
        self.objects[path] = obj
        self._versions[path] = self._versions.get(path, 0) + 1


def _copy_of(obj: Any, path: str | None = None) -> Any:
    return copy.deepcopy(obj)


LOCAL = LocalStorage()


def active() -> Storage:
    """The storage of the context in force: the innermost :func:`in_memory` block's, else the
    local file system."""
    return config.context().storage or LOCAL


@contextmanager
def in_memory(initial: Mapping[str, Any] | None = None) -> Iterator[MemoryStorage]:
    """Keep every output and record in a :class:`MemoryStorage` while the block runs."""
    storage = MemoryStorage(initial)
    with config.scope(storage=storage):
        yield storage
