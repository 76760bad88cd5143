"""The input items of a directory task: name, fingerprint, file, and how to read it."""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload

from luisy.digests import columns_digest, items_digest, text_digest
from luisy.parts import part_rows


class SourceItem(NamedTuple):
    """An input item: its name, a fingerprint of its content, its file, and the reader of that file."""

    name: str
    fingerprint: str
    path: str
    reader: Callable[[str], Any]

    def load(self) -> Any:
        return self.reader(self.path)


class Joined(Sequence[str]):
    """``os.path.join(folder, name)`` for each of ``names``, made when asked for: an upstream
    output of a million items would otherwise keep a million paths (90 MB) that a rerun never
    reads."""

    __slots__ = ("folder", "names")

    def __init__(self, folder: str, names: Sequence[str]) -> None:
        self.folder, self.names = folder, names

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Joined: ...

    def __getitem__(self, index: int | slice) -> str | Joined:
        if isinstance(index, slice):
            return Joined(self.folder, self.names[index])
        return os.path.join(self.folder, self.names[index])

    def __len__(self) -> int:
        return len(self.names)


class SourceItems(Sequence[SourceItem]):
    """Input items as columns sharing one reader; a :class:`SourceItem` is built when one is asked for.

    A folder can hold 100 000 files and a rerun compares every one of them with the manifest:
    three lists of strings cost a fraction of 100 000 tuples, and give Python's garbage collector
    nothing to traverse.
    """

    __slots__ = ("names", "fingerprints", "paths", "reader", "held_back", "_digest", "_parts")

    def __init__(self, names: list[str], fingerprints: list[str], paths: Sequence[str],
                 reader: Callable[[str], Any], digest: str | None = None) -> None:
        """``digest``: the :func:`digest` of these items, if already known."""
        if not len(names) == len(fingerprints) == len(paths):
            raise ValueError("source item columns of different lengths")
        self.names, self.fingerprints, self.paths, self.reader = names, fingerprints, paths, reader
        #: Names of items that are in the folder but not settled yet (see ``luisy watch``): a run
        #: neither processes them nor counts them as removed.
        self.held_back: frozenset[str] = frozenset()
        self._digest = digest
        self._parts: tuple[int, list[list[int]]] | None = None

    @overload
    def __getitem__(self, index: int) -> SourceItem: ...

    @overload
    def __getitem__(self, index: slice) -> SourceItems: ...

    def __getitem__(self, index: int | slice) -> SourceItem | SourceItems:
        if isinstance(index, slice):
            return SourceItems(self.names[index], self.fingerprints[index], self.paths[index], self.reader)
        return SourceItem(self.names[index], self.fingerprints[index], self.paths[index], self.reader)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[SourceItem]:
        reader = self.reader
        for name, fingerprint, path in zip(self.names, self.fingerprints, self.paths, strict=True):
            yield SourceItem(name, fingerprint, path, reader)

    def __repr__(self) -> str:
        return f"SourceItems({len(self)} items)"

    def digest(self) -> str:
        """:func:`~luisy.digests.items_digest` of the names and fingerprints."""
        if self._digest is None:  # the columns are never changed: once is enough
            self._digest = columns_digest(self.names, self.fingerprints)
        return self._digest

    def _part_rows(self, count: int) -> list[list[int]]:
        if self._parts is None or self._parts[0] != count:
            self._parts = (count, part_rows(self.names, count))
        return self._parts[1]

    def part_digests(self, count: int) -> list[str | None]:
        """The :meth:`digest` of the items in each of ``count`` parts (split by a hash of the name,
        as a manifest's items are)."""
        names, fingerprints = self.names, self.fingerprints
        if count == 1:
            return [self.digest()]
        # A listing is sorted, so each part is: its text is joined at once (as columns_digest would).
        ordered = all(map(operator.lt, names, itertools.islice(names, 1, None)))
        found: list[str | None] = []
        for rows in self._part_rows(count):
            pick = operator.itemgetter(*rows) if len(rows) > 1 else lambda column, rows=rows: [column[r] for r in rows]
            part_names, part_fingerprints = pick(names), pick(fingerprints)  # itemgetter: the rows in one C call
            if ordered and None not in part_fingerprints:
                pairs = zip(part_names, part_fingerprints, strict=True)
                found.append(text_digest(["\0".join(itertools.chain.from_iterable(pairs))]))
            else:
                found.append(columns_digest(part_names, part_fingerprints))
        return found

    def part(self, count: int, p: int) -> SourceItems:
        """The items in part ``p`` of ``count``, in order."""
        return self.select(self._part_rows(count)[p])

    def select(self, rows: Iterable[int]) -> SourceItems:
        """The items at ``rows``, in that order."""
        rows = list(rows)
        return SourceItems([self.names[i] for i in rows], [self.fingerprints[i] for i in rows],
                           [self.paths[i] for i in rows], self.reader)


# Whatever holds the items — a SourceItems of columns (a listing, an upstream output) or a list
# of SourceItem a task's own input_items() made — the functions below give the same answers, so
# that no caller needs to know which it has.


def names_of(items: Sequence[SourceItem]) -> list[str]:
    """The items' names, in order (the column itself where there is one: do not change it)."""
    return items.names if isinstance(items, SourceItems) else [item.name for item in items]


def fingerprints_of(items: Sequence[SourceItem]) -> list[str]:
    """The items' fingerprints, in order (the column itself where there is one: do not change it)."""
    return items.fingerprints if isinstance(items, SourceItems) else [item.fingerprint for item in items]


def select(items: Sequence[SourceItem], rows: Iterable[int]) -> Sequence[SourceItem]:
    """The items at ``rows``, in that order, held as ``items`` holds them."""
    return items.select(rows) if isinstance(items, SourceItems) else [items[row] for row in rows]


def pairs(items: Sequence[SourceItem]) -> Iterable[tuple[str, str]]:
    """``(name, fingerprint)`` of each item, without building the items of a :class:`SourceItems`."""
    if isinstance(items, SourceItems):
        return zip(items.names, items.fingerprints, strict=True)
    return ((item.name, item.fingerprint) for item in items)


def digest(items: Sequence[SourceItem]) -> str:
    """:func:`~luisy.digests.items_digest` of the items' names and fingerprints."""
    return items.digest() if isinstance(items, SourceItems) else items_digest(pairs(items))
