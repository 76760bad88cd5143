"""The one kind of cache that outlives a build: per process, with a bound on its size.

Everything a build computes once lives in the build's context (:class:`luisy.config.Caches`) and
goes with it. A few things are worth keeping across builds in one process (a notebook, a
long-running ``luisy watch``): what a file said, keyed or checked by the file's version, and a
class's code fingerprint. They sit in a :class:`BoundedCache`, which never holds more than its
bound — the least recently used entry goes first — and, with ``weak_keys``, does not keep its
keys alive. The bounds:

- fingerprint records read or written (``luisy.fingerprint.records``): 8 192, a few reads each
  for a build of 10 000 tasks;
- manifest headers (``luisy.directory.manifest``): 64;
- code fingerprints of task classes (``luisy.fingerprint.code``): 4 096 classes, weakly.

Parsed manifests, tens of MB each at 100 000 items, are kept two at a time (a stage and its
upstream) by ``luisy.directory.manifest`` itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, MutableMapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` entries, the least recently used dropped first; with ``weak_keys`` an entry
    also goes when nothing else refers to its key (a class of a module that was reloaded)."""

    def __init__(self, size: int, weak_keys: bool = False) -> None:
        self.size = size
        self._entries: MutableMapping[K, V] = weakref.WeakKeyDictionary() if weak_keys else {}

    def get(self, key: K, default: V | None = None) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return default
        self._entries[key] = found  # now the most recently used
        return found

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key``; returns it."""
        self._entries[key] = value
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]
        return value

    def get_or_make(self, key: K, make: Callable[[K], V]) -> V:
        """The value under ``key``, made by ``make(key)`` and kept if there is none."""
        found = self.get(key)
        return found if found is not None else self.put(key, make(key))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["BoundedCache"]
