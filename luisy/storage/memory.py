"""Objects in memory, for tests: what ``LuisyTestCase`` and :func:`luisy.storage.in_memory` use."""

from __future__ import annotations

import copy
import functools
import itertools
import os
import pickle
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from luisy.atomic import defer
from luisy.digests import bytes_digest
from luisy.sources import SourceItem
from luisy.storage import Appender, ContentDigests, Reader, Storage, Writer

# Versions are unique across storages, so that a token never names another storage's object
# (records read are cached by path and token, also between two tests' storages).
_versions = itertools.count(1)


class MemoryStorage(Storage):
    """Objects in a dict keyed by path. Loads and saves copy the object, so a task cannot change
    another task's output by mutating it."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        #: Path → stored object (bytes for records and the journal).
        self.objects: dict[str, Any] = {os.fspath(k): copy.deepcopy(v) for k, v in (initial or {}).items()}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def exists(self, path: str, folder: bool = False) -> bool:
        return path in self.objects

    def load(self, path: str, read: Reader, folder: bool = False) -> Any:
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

    def modified(self, path: str) -> float | None:
        return None  # objects in memory carry no time; nothing reads it in tests

    def size(self, path: str) -> int | None:
        found = self.objects.get(path)
        return len(found) if isinstance(found, bytes) else None

    def read_bytes(self, path: str, limit: int) -> bytes:
        try:
            data: bytes = self.objects[path]
        except KeyError:
            raise FileNotFoundError(path) from None
        return data

    def put_bytes(self, path: str, data: bytes) -> None:
        self._set(path, data)

    def appender(self, path: str, new: bool) -> Appender:
        if new and path in self.objects:
            raise FileExistsError(path)
        self.objects.setdefault(path, b"")
        return _MemoryAppender(self, path)

    def listdir(self, path: str) -> list[tuple[str, bool]]:
        prefix = os.path.join(path, "")
        found: dict[str, bool] = {}
        for key in self.objects:
            if key.startswith(prefix):
                name, _, rest = key[len(prefix):].partition("/")
                found[name] = found.get(name, False) or bool(rest)
        return sorted(found.items())

    def unwritten(self, targets: Iterable[Any]) -> list[str]:
        return []  # as in luisy 1.x's tests: a task that writes nothing lets the others' outputs be returned

    def root_problem(self, path: str) -> str | None:
        return None  # every key is there to be written

    def make_folder(self, path: str) -> None:
        pass  # objects need no folders

    @contextmanager
    def lock(self, path: str) -> Iterator[None]:
        with self._lock:
            yield

    def _set(self, path: str, obj: Any) -> None:
        self.objects[path] = obj
        self._versions[path] = next(_versions)


class _MemoryAppender:
    def __init__(self, store: MemoryStorage, path: str) -> None:
        self.store, self.path = store, path

    def write(self, data: bytes) -> None:
        self.store._set(self.path, self.store.objects.get(self.path, b"") + data)

    def close(self) -> None:
        pass


def _copy_of(obj: Any, path: str | None = None) -> Any:
    return copy.deepcopy(obj)
