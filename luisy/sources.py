"""The input items of a directory task: name, fingerprint, file, and how to read it."""

from __future__ import annotations

import bisect
import itertools
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload

from luisy.digests import columns_digest, items_digest, text_digest
from luisy.parts import part_keys, part_of, part_rows, parts_digest


class SourceItem(NamedTuple):
    """An input item: its name, a fingerprint of its content, its file, and the reader of that file."""

    name: str
    fingerprint: str
    path: str
    reader: Callable[[str], Any]

    def load(self) -> Any:
        return self.reader(self.path)


class Joined(Sequence[str]):
    """``os.path.join(folder, name + suffix)`` for each of ``names``, made when asked for: an
    upstream output of a million items would otherwise keep a million paths (90 MB) that a rerun
    never reads. A folder whose files are their item names and one extension keeps the names
    only (``suffix``: that extension)."""

    __slots__ = ("folder", "names", "suffix")

    def __init__(self, folder: str, names: Sequence[str], suffix: str = "") -> None:
        self.folder, self.names, self.suffix = folder, names, suffix

    @property
    def files(self) -> list[str]:
        """The file names, relative to the folder."""
        return [name + self.suffix for name in self.names] if self.suffix else list(self.names)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Joined: ...

    def __getitem__(self, index: int | slice) -> str | Joined:
        if isinstance(index, slice):
            return Joined(self.folder, self.names[index], self.suffix)
        return os.path.join(self.folder, self.names[index] + self.suffix)

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
        self._parts: tuple[int, list[int]] | None = None

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

    def _part_keys(self, count: int) -> list[int]:
        """The part of each row, of ``count`` (kept: a rerun asks for the digests, then a few parts)."""
        if self._parts is None or self._parts[0] != count:
            self._parts = (count, part_keys(self.names, count))
        return self._parts[1]

    def part_digests(self, count: int) -> list[str | None]:
        """The :meth:`digest` of the items in each of ``count`` parts (split by a hash of the name,
        as a manifest's items are)."""
        names, fingerprints = self.names, self.fingerprints
        if count == 1:
            return [self.digest()]
        if None in fingerprints or not all(map(operator.lt, names, itertools.islice(names, 1, None))):
            return [columns_digest([names[row] for row in rows], [fingerprints[row] for row in rows])
                    for rows in part_rows(names, count)]
        # Sorted, so each part is too: its text is joined at once, as columns_digest would. The
        # pairs are made and sorted into parts in one pass in row order: picking each part's rows
        # from a million strings in memory would take twice as long.
        texts: list[list[str]] = [[] for _ in range(count)]
        add = [text.append for text in texts]
        pairs = map("\0".join, zip(names, fingerprints, strict=True))
        for key, pair in zip(self._part_keys(count), pairs, strict=True):
            add[key](pair)
        return [text_digest(["\0".join(text)]) for text in texts]

    def parts(self, count: int, wanted: Iterable[int]) -> dict[int, SourceItems]:
        """The items in each of the ``wanted`` parts of ``count``, in order."""
        wanted = sorted(set(wanted))
        if count == 1:
            return {0: self} if wanted == [0] else {}
        keys = self._part_keys(count)
        chosen = [False] * count
        for p in wanted:
            chosen[p] = True
        rows: dict[int, list[int]] = {p: [] for p in wanted}
        for row in itertools.compress(range(len(keys)), map(chosen.__getitem__, keys)):  # a C loop over all
            rows[keys[row]].append(row)
        return {p: self.select(rows[p]) for p in wanted}

    def find(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` that name an item here."""
        return set(names).intersection(self.names)

    def select(self, rows: Iterable[int]) -> SourceItems:
        """The items at ``rows``, in that order."""
        rows = list(rows)
        paths = self.paths
        picked = (Joined(paths.folder, [paths.names[i] for i in rows], paths.suffix) if isinstance(paths, Joined)
                  else [paths[i] for i in rows])
        return SourceItems([self.names[i] for i in rows], [self.fingerprints[i] for i in rows], picked, self.reader)


class SourcesInParts(SourceItems):
    """Input items held in parts split by a hash of the name (see :mod:`luisy.parts`), each with
    its digest: an upstream output's manifest, or a folder's listing remembered in parts.

    A downstream run compares the parts' digests with those it recorded and reads only the parts
    that differ; the columns are assembled, from every part, only when asked for.
    """

    __slots__ = ("part_count", "_whole")

    def __init__(self, count: int, reader: Callable[[str], Any]) -> None:
        """``count``: how many parts (a power of two)."""
        self.part_count, self.reader = count, reader
        self.held_back = frozenset()
        self._digest = None
        self._parts = None
        self._whole: SourceItems | None = None

    def whole_part_digests(self) -> list[str | None]:
        """The digest of each of the :attr:`count` parts."""
        raise NotImplementedError

    def part(self, p: int) -> SourceItems:
        """The items of part ``p``, sorted by name."""
        raise NotImplementedError

    def whole(self) -> SourceItems:
        """Every item as columns sorted by name."""
        raise NotImplementedError

    def _columns(self) -> SourceItems:
        if self._whole is None:
            self._whole = self.whole()
        return self._whole

    @property
    def names(self) -> list[str]:  # type: ignore[override]
        return self._columns().names

    @property
    def fingerprints(self) -> list[str]:  # type: ignore[override]
        return self._columns().fingerprints

    @property
    def paths(self) -> Sequence[str]:  # type: ignore[override]
        return self._columns().paths

    def digest(self) -> str:
        """The digest of the parts' digests."""
        if self._digest is None:
            self._digest = parts_digest(self.whole_part_digests())  # type: ignore[arg-type]
        return self._digest

    def part_digests(self, count: int) -> list[str | None]:
        return self.whole_part_digests() if count == self.part_count else super().part_digests(count)

    def parts(self, count: int, wanted: Iterable[int]) -> dict[int, SourceItems]:
        if count != self.part_count:
            return super().parts(count, wanted)
        return {p: self.part(p) for p in sorted(set(wanted))}

    def release(self) -> None:
        """Let go of what was read and can be read again (the parts, the columns)."""

    #: Whether the parts are read from files one at a time (so a run may go through them so).
    stored = True

    def part_sizes(self) -> list[int]:
        """How many items each part holds (known without reading the parts)."""
        raise NotImplementedError

    def forget(self, p: int) -> None:
        """Let go of part ``p`` if it can be read again."""

    def find(self, names: Iterable[str]) -> set[str]:
        by_part: dict[int, list[str]] = {}
        for name in names:
            by_part.setdefault(part_of(name, self.part_count), []).append(name)
        return {name for p, wanted in by_part.items() for name in set(wanted).intersection(self.part(p).names)}



class SplitSources(SourcesInParts):
    """Items at hand as columns, seen in ``count`` parts: their digest is that of the parts'
    digests, as for any :class:`SourcesInParts`."""

    __slots__ = ("_split",)
    stored = False

    def __init__(self, items: SourceItems, count: int) -> None:  # noqa: D107
        super().__init__(count, items.reader)
        self._whole = items
        self.held_back = items.held_back
        self._split: list[str | None] | None = None

    def whole_part_digests(self) -> list[str | None]:
        if self._split is None:  # asked for by the digest, then by the run's comparison
            self._split = self.whole().part_digests(self.part_count)
        return self._split

    def part(self, p: int) -> SourceItems:
        return self.whole().parts(self.part_count, [p])[p]

    def parts(self, count: int, wanted: Iterable[int]) -> dict[int, SourceItems]:
        return self.whole().parts(count, wanted)  # one pass for all of them

    def whole(self) -> SourceItems:
        assert self._whole is not None
        return self._whole

    def find(self, names: Iterable[str]) -> set[str]:
        return self.whole().find(names)

    def __len__(self) -> int:
        return len(self.whole())


class Packed:
    """Input items kept as one string a column (NUL between the values) with their digest: what a
    build keeps of a listing a run has taken, in a fraction of the memory (a million items: about
    50 MB, against 250 MB as strings of their own); :meth:`unpack` gives the same items back to
    another task over the folder."""

    __slots__ = ("digest", "reader", "held_back", "part_count", "count", "_columns", "_folder", "_suffix")

    def __init__(self, items: SourceItems, count: int, columns: tuple[str, str, str | None], folder: str | None,
                 suffix: str) -> None:
        """Use :meth:`of`."""
        self.digest, self.reader, self.held_back = items.digest(), items.reader, items.held_back
        self.part_count = items.part_count if isinstance(items, SplitSources) else None
        self.count, self._columns, self._folder, self._suffix = count, columns, folder, suffix

    @classmethod
    def of(cls, items: SourceItems) -> Packed | None:
        """``items`` packed; ``None`` for items held otherwise (in parts read when needed) or with
        a value that is not text or holds a NUL."""
        if type(items) not in (SourceItems, SplitSources):
            return None
        whole = items.whole() if isinstance(items, SplitSources) else items
        paths = whole.paths
        folder, files, suffix = (paths.folder, paths.names, paths.suffix) if isinstance(paths, Joined) else \
            (None, paths, "")
        columns: list[str | None] = []
        for values in (whole.names, whole.fingerprints, files):
            if values is whole.names and columns:  # the files are the names (and a suffix)
                columns.append(None)
                continue
            try:
                text = "\0".join(values)
            except TypeError:  # a fingerprint of None
                return None
            if text.count("\0") != max(len(values) - 1, 0):
                return None
            columns.append(text)
        return cls(items, len(whole), (columns[0], columns[1], columns[2]), folder, suffix)  # type: ignore[arg-type]

    def unpack(self) -> SourceItems:
        """The items packed."""
        names, fingerprints, files = (None if text is None else text.split("\0") if self.count else []
                                      for text in self._columns)
        assert names is not None and fingerprints is not None
        files = names if files is None else files
        paths: Sequence[str] = files if self._folder is None else Joined(self._folder, files, self._suffix)
        items = SourceItems(names, fingerprints, paths, self.reader, self.digest if self.part_count is None else None)
        items.held_back = self.held_back
        return items if self.part_count is None else SplitSources(items, self.part_count)


class InPartOrder(Sequence[SourceItem]):
    """The items of a :class:`SourcesInParts` part after part, each part sorted by name, holding
    only the last few parts read: a first run over an upstream output of a million items goes
    through them without its whole table in memory (about 300 MB)."""

    __slots__ = ("items", "_starts", "_held")

    #: Parts held at once: items are asked for about in order, a few chunks at a time.
    HELD = 4

    def __init__(self, items: SourcesInParts) -> None:  # noqa: D107
        self.items = items
        self._starts = list(itertools.accumulate(items.part_sizes(), initial=0))
        self._held: dict[int, SourceItems] = {}

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> SourceItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[SourceItem]: ...

    def __getitem__(self, index: int | slice) -> SourceItem | list[SourceItem]:
        if isinstance(index, slice):
            return [self[row] for row in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        p = bisect.bisect_right(self._starts, index) - 1  # past any empty parts that start there too
        return self._part(p)[index - self._starts[p]]

    def __iter__(self) -> Iterator[SourceItem]:
        for p in range(self.items.part_count):
            yield from self._part(p)

    def __repr__(self) -> str:
        return f"InPartOrder({len(self)} items in {self.items.part_count} parts)"

    def parts(self) -> Iterator[SourceItems]:
        """Each part in turn."""
        return map(self._part, range(self.items.part_count))

    def _part(self, p: int) -> SourceItems:
        part = self._held.get(p)
        if part is None:
            part = self.items.part(p)
            self.items.forget(p)  # held here, until a later part pushes it out
            if len(self._held) >= self.HELD:
                del self._held[next(iter(self._held))]
            self._held[p] = part
        return part


# Whatever holds the items — a SourceItems of columns (a listing, an upstream output) or a list
# of SourceItem a task's own input_items() made — the functions below give the same answers, so
# that no caller needs to know which it has.


def names_of(items: Sequence[SourceItem]) -> list[str]:
    """The items' names, in order (the column itself where there is one: do not change it)."""
    if isinstance(items, InPartOrder):
        return [name for part in items.parts() for name in part.names]
    return items.names if isinstance(items, SourceItems) else [item.name for item in items]


def fingerprints_of(items: Sequence[SourceItem]) -> list[str]:
    """The items' fingerprints, in order (the column itself where there is one: do not change it)."""
    if isinstance(items, InPartOrder):
        return [fingerprint for part in items.parts() for fingerprint in part.fingerprints]
    return items.fingerprints if isinstance(items, SourceItems) else [item.fingerprint for item in items]


def find(items: Sequence[SourceItem], names: Iterable[str]) -> set[str]:
    """Those of ``names`` that name one of the items (a listing in parts looks in their parts only)."""
    if isinstance(items, InPartOrder):
        items = items.items
    return items.find(names) if isinstance(items, SourceItems) else set(names).intersection(names_of(items))


def release(items: Sequence[SourceItem]) -> None:
    """Let go of what ``items`` read and can read again (an upstream output's parts)."""
    if isinstance(items, InPartOrder):
        items = items.items
    if isinstance(items, SourcesInParts):
        items.release()


def select(items: Sequence[SourceItem], rows: Iterable[int]) -> Sequence[SourceItem]:
    """The items at ``rows``, in that order, held as ``items`` holds them."""
    return items.select(rows) if isinstance(items, SourceItems) else [items[row] for row in rows]


def pairs(items: Sequence[SourceItem]) -> Iterable[tuple[str, str]]:
    """``(name, fingerprint)`` of each item, without building the items of a :class:`SourceItems`."""
    if isinstance(items, InPartOrder):
        return itertools.chain.from_iterable(map(pairs, items.parts()))
    if isinstance(items, SourceItems):
        return zip(items.names, items.fingerprints, strict=True)
    return ((item.name, item.fingerprint) for item in items)


def digest(items: Sequence[SourceItem]) -> str:
    """:func:`~luisy.digests.items_digest` of the items' names and fingerprints."""
    return items.digest() if isinstance(items, SourceItems) else items_digest(pairs(items))
