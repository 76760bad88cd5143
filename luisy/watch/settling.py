"""Which items of a watched folder have settled: their fingerprint unchanged for a settle time.

An item's fingerprint is what a directory task compares (size and modification time of a file,
of every file in a dataset folder), so an item that settled is one a run would see as it is now,
and a file still growing, or rewritten, is not settled until its writer has been quiet for the
settle time. Times are taken from the watcher's own clock (``time.monotonic``), never from the
modification times, which a network share's clock or a copy tool may set to anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Observation:
    """One look at a folder: what has settled, and when the next item will if it stays unchanged."""

    #: Item name → fingerprint, for the items that have settled.
    settled: dict[str, str]
    #: Items present but not settled yet.
    pending: int
    #: When (``time.monotonic``) the first pending item settles if it does not change; ``None``: none pending.
    due: float | None
    #: Every name listed, settled or not.
    present: set[str] = field(default_factory=set)


class Settling:
    """The settle state of one folder's items across looks at it."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self._settled: dict[str, str] = {}
        #: Name → (fingerprint, when it was first seen with that fingerprint).
        self._pending: dict[str, tuple[str, float]] = {}

    def observe(self, items: Iterable[tuple[str, str]], now: float) -> Observation:
        """Take in the folder's listing, ``(name, fingerprint)`` per item, made at time ``now``."""
        settle, old_settled, old_pending = self.settle, self._settled, self._pending
        settled: dict[str, str] = {}
        pending: dict[str, tuple[str, float]] = {}
        for name, fingerprint in items:
            if old_settled.get(name) == fingerprint:
                settled[name] = fingerprint
                continue
            seen = old_pending.get(name)
            since = seen[1] if seen is not None and seen[0] == fingerprint else now
            if now - since >= settle:
                settled[name] = fingerprint
            else:
                pending[name] = (fingerprint, since)
        self._settled, self._pending = settled, pending
        due = min(since for _, since in pending.values()) + settle if pending else None
        return Observation(settled, len(pending), due, set(settled).union(pending))


@dataclass(frozen=True)
class Changes:
    """How the settled items differ from those a previous run was given."""

    new: int = 0
    changed: int = 0
    removed: int = 0

    def __bool__(self) -> bool:
        return bool(self.new or self.changed or self.removed)

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.new + other.new, self.changed + other.changed, self.removed + other.removed)


def changes(before: dict[str, str], now: Observation) -> Changes:
    """What settled since ``before`` (the settled items a run was given): new and changed items,
    and items gone from the folder (an item that is only being rewritten is not gone)."""
    new = changed = 0
    for name, fingerprint in now.settled.items():
        old = before.get(name)
        if old is None:
            new += 1
        elif old != fingerprint:
            changed += 1
    removed = sum(1 for name in before if name not in now.present)
    return Changes(new, changed, removed)
