"""The item lists of a manifest: a table sorted by name, split into parts by a hash of the name.

A manifest can list a million items and a run reads it whenever an input changed, yet a rerun
after ten new files changes ten items. So the items are grouped into *parts* by a hash of their
name, each part with its own digest and with the digest of the input items it was made from. A
run compares its input's parts with those, and reads, merges and rewrites only the parts that
differ. The number of parts is a power of two chosen so that a part holds about
:data:`PART_ITEMS` items; a table of up to that many is one part.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from luisy.digests import columns_digest
from luisy.errors import ManifestError
from luisy.parts import part_count, part_keys, part_of, part_rows, parts_digest
from luisy.sources import Joined, SourceItems, SourcesInParts


class Item(NamedTuple):
    """One published item: its file (relative to the folder), size, checksum, and input fingerprint."""

    file: str
    size: int
    checksum: str
    source: str | None = None


class ItemTable(Mapping[str, Item]):
    """The published items as a read-only mapping name → :class:`Item`, stored as columns sorted by name.

    A manifest can list hundreds of thousands of items and is read on every run: columns of
    strings are what JSON reads and writes fastest and what takes least memory. An :class:`Item`
    is built only when one is asked for.
    """

    __slots__ = ("names", "files", "sizes", "checksums", "sources", "_positions", "_digest")

    def __init__(self, names: list[str], files: list[str], sizes: list[int], checksums: list[str],
                 sources: list[str | None], digest: str | None = None) -> None:
        """Columns sorted by name; ``digest``: the table's :meth:`digest`, if already known."""
        if not len(names) == len(files) == len(sizes) == len(checksums) == len(sources):
            raise ValueError("item columns of different lengths")
        self.names, self.files, self.sizes, self.checksums, self.sources = names, files, sizes, checksums, sources
        self._positions: dict[str, int] | None = None
        self._digest = digest

    @classmethod
    def _from_columns(cls, columns: list[list[Any]]) -> ItemTable:
        names, files, sizes, checksums, sources = columns
        return cls(names, files, sizes, checksums, sources)

    @classmethod
    def of(cls, items: Mapping[str, Item]) -> ItemTable:
        """The table of ``items``, sorted by name."""
        if isinstance(items, ItemTable):
            return items
        if isinstance(items, NewItems):
            return items.table()
        names = sorted(items)
        rows = [items[name] for name in names]
        return cls(names, [r.file for r in rows], [r.size for r in rows], [r.checksum for r in rows],
                   [r.source for r in rows])

    def positions(self) -> dict[str, int]:
        """Name → row (built on first use: a dict of 100 000 names costs as much as parsing them)."""
        if self._positions is None:
            self._positions = dict(zip(self.names, range(len(self.names)), strict=True))
        return self._positions

    def merged(self, keep: Iterable[str], new: Mapping[str, Item]) -> ItemTable:
        """The rows named in ``keep`` (if present), replaced or extended by ``new``, sorted by name."""
        keep = keep if isinstance(keep, (set, frozenset)) else set(keep)
        new = ItemTable.of(new)
        if any(map(keep.__contains__, new.names)):  # rare: a kept row is replaced too
            keep = keep.difference(new.names)
        mask = list(map(keep.__contains__, self.names))  # a C loop: a million rows on every rerun
        kept: list[list[Any]] = [list(itertools.compress(column, mask)) for column in self.columns()]
        if not new:  # the common incremental case: a subset of the current rows, in order
            return ItemTable._from_columns(kept)
        if not kept[0]:
            return new
        # Few new rows among many kept ones (a rerun): splice them in by bisection.
        out: list[list[Any]] = [[], [], [], [], []]
        start = 0
        for row in zip(*new.columns(), strict=True):
            stop = bisect.bisect_left(kept[0], row[0], start)
            for column, kept_column, value in zip(out, kept, row, strict=True):
                column.extend(kept_column[start:stop])
                column.append(value)
            start = stop
        for column, kept_column in zip(out, kept, strict=True):
            column.extend(kept_column[start:])
        return ItemTable._from_columns(out)

    def columns(self) -> tuple[list[str], list[str], list[int], list[str], list[str | None]]:
        """Names, files, sizes, checksums and sources."""
        return self.names, self.files, self.sizes, self.checksums, self.sources

    def select(self, rows: Sequence[int]) -> ItemTable:
        """The rows at ``rows`` (in increasing order)."""
        if len(rows) == len(self.names):
            return self
        return ItemTable._from_columns([[column[row] for row in rows] for column in self.columns()])

    def digest(self) -> str:
        """:func:`items_digest` of ``(name, checksum)``."""
        if self._digest is None:  # the table is never changed: once is enough
            self._digest = columns_digest(self.names, self.checksums)
        return self._digest

    def __getitem__(self, name: str) -> Item:
        row = self.positions()[name]
        return Item(self.files[row], self.sizes[row], self.checksums[row], self.sources[row])

    def __contains__(self, name: object) -> bool:
        return name in self.positions()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemTable):
            return (self.names, self.files, self.sizes, self.checksums, self.sources) == (
                other.names, other.files, other.sizes, other.checksums, other.sources)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ItemTable({len(self)} items)"


class NewItems(Mapping[str, Item]):
    """The items a run makes, as columns in the order they are made; as a mapping, sorted by
    name, the last made of a name counting.

    A first run of a million items holds them all until it publishes: columns of what each item
    is, without a tuple and a dict entry per item, take half the memory.
    """

    __slots__ = ("names", "files", "sizes", "checksums", "sources", "_table", "_length")

    def __init__(self) -> None:  # noqa: D107
        self.names: list[str] = []
        self.files: list[str] = []
        self.sizes: list[int] = []
        self.checksums: list[str] = []
        self.sources: list[str | None] = []
        self._table: ItemTable | None = None
        self._length: tuple[int, int] | None = None

    def add(self, name: str, item: Item) -> None:
        if self._table is not None and self._table.names is self.names:  # shared: the table must not change
            self.names, self.files, self.sizes = list(self.names), list(self.files), list(self.sizes)
            self.checksums, self.sources = list(self.checksums), list(self.sources)
        self._table = None
        self.names.append(name)
        self.files.append(item.file)
        self.sizes.append(item.size)
        self.checksums.append(item.checksum)
        self.sources.append(item.source)

    def columns(self) -> tuple[list[str], list[str], list[int], list[str], list[str | None]]:
        """Names, files, sizes, checksums and sources, in the order the items were made."""
        return self.names, self.files, self.sizes, self.checksums, self.sources

    def since(self, row: int) -> Iterator[tuple[str, Item]]:
        """``(name, item)`` of each item made from row ``row`` on, in making order (a name made
        twice comes twice: the last counts)."""
        rows = (itertools.islice(column, row, None) for column in self.columns())
        for name, *rest in zip(*rows, strict=True):
            yield name, Item(*rest)

    @property
    def rows(self) -> int:
        """How many items were made (a name made twice counts twice)."""
        return len(self.names)

    def superseded(self) -> list[str]:
        """The files of items a later item of the same name replaced."""
        if self.rows == len(self.table()):
            return []
        last = set(self.table().files)
        return [file for file in self.files if file not in last]

    def table(self) -> ItemTable:
        """The items sorted by name; the columns themselves where they are (a run usually makes
        its items in the order of its sorted input)."""
        if self._table is None:
            self._table = _sorted_table(list(self.columns()))
        return self._table

    def by_part(self, count: int) -> NewParts:
        """The items in ``count`` parts, each sorted by name, the last made of a name counting:
        split column by column, without a sorted copy of them all (a first run over an upstream
        in parts makes its items part after part, not in name order)."""
        if count == 1 or self._table is not None:
            return NewParts.split(self.table(), count)
        keys = part_keys(self.names, count)
        split: list[list[list[Any]]] = []
        for column in self.columns():
            lists: list[list[Any]] = [[] for _ in range(count)]
            add = [part.append for part in lists]
            for key, value in zip(keys, column, strict=True):  # no row numbers: a million ints is 36 MB
                add[key](value)
            split.append(lists)
        del keys
        tables = {}
        for p in range(count):
            if split[0][p]:
                tables[p] = _sorted_table([lists[p] for lists in split])
                for lists in split:
                    lists[p] = []
        parts = NewParts(count, tables)
        self._length = (self.rows, len(parts))
        return parts

    def __getitem__(self, name: str) -> Item:
        return self.table()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.table()

    def __iter__(self) -> Iterator[str]:
        return iter(self.table())

    def __len__(self) -> int:
        if self._table is None and self._length is not None and self._length[0] == self.rows:
            return self._length[1]  # counted when split into parts: no sorted copy for a count
        return len(self.table())

    def __repr__(self) -> str:
        return f"NewItems({self.rows} made)"


def _sorted_table(columns: list[list[Any]]) -> ItemTable:
    """The rows of ``columns`` sorted by name, the last of a name counting (the columns
    themselves where they are sorted)."""
    names = columns[0]
    if not all(map(operator.lt, names, itertools.islice(names, 1, None))):
        order = sorted(range(len(names)), key=names.__getitem__)  # stable: the last of a name is last
        order = [row for row, after in zip(order, [*order[1:], None], strict=True)
                 if after is None or names[after] != names[row]]
        columns = [[column[row] for row in order] for column in columns]
    return ItemTable._from_columns(columns)


class NewParts(Mapping[str, Item]):
    """New items split into ``count`` parts as a manifest's are: the tables of the parts that
    have items, each sorted by name."""

    __slots__ = ("count", "tables")

    def __init__(self, count: int, tables: dict[int, ItemTable]) -> None:  # noqa: D107
        self.count, self.tables = count, tables

    @classmethod
    def split(cls, table: ItemTable, count: int) -> NewParts:
        """``table`` in ``count`` parts."""
        if count == 1:
            return cls(1, {0: table} if len(table) else {})
        return cls(count, {p: table.select(rows) for p, rows in enumerate(part_rows(table.names, count)) if rows})

    def __getitem__(self, name: str) -> Item:
        part = self.tables.get(part_of(name, self.count))
        if part is None:
            raise KeyError(name)
        return part[name]

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self.tables.values())

    def __len__(self) -> int:
        return sum(map(len, self.tables.values()))

    def __repr__(self) -> str:
        return f"NewParts({len(self)} items in {len(self.tables)} of {self.count} parts)"


def empty_table() -> ItemTable:
    return ItemTable([], [], [], [], [])


class PartRecord(NamedTuple):
    """What a manifest records of one part of its items."""

    #: Where the part is stored, relative to the output folder; ``None`` until it is written.
    file: str | None
    #: How many items it holds.
    items: int
    #: :meth:`ItemTable.digest` of the part.
    digest: str
    #: Digest of the input items (name, fingerprint) of this part the run saw; ``None`` if unknown.
    inputs: str | None = None


class Kept:
    """The names a run keeps of the current items: whole parts, and single names of the others.

    A rerun of a million items keeps nearly all of them: naming each would cost a set of a million
    strings, where the parts whose inputs did not change say it in a few numbers."""

    __slots__ = ("count", "whole", "names", "_whole_items")

    def __init__(self, count: int, whole: Iterable[int], whole_items: int, names: Iterable[str] = ()) -> None:
        """``whole``: the parts (of ``count``) kept entirely, ``whole_items`` items in all."""
        self.count, self.whole, self.names = count, frozenset(whole), set(names)
        self._whole_items = whole_items

    def update(self, names: Iterable[str]) -> None:
        self.names.update(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (part_of(name, self.count) in self.whole or name in self.names)

    def __len__(self) -> int:
        keys = part_keys(list(self.names), self.count)  # tens of thousands of names after a change: C loops
        return self._whole_items + len(keys) - sum(map(self.whole.__contains__, keys))

    def __repr__(self) -> str:
        return f"Kept({len(self.whole)} of {self.count} parts, {len(self.names)} more names)"


class PartedItems(Mapping[str, Item]):
    """The items as parts (see the module docstring), each an :class:`ItemTable` read when first
    needed. As a mapping, and through the column attributes, it is the whole table sorted by
    name, assembled on first use; a lookup by name reads only that name's part."""

    __slots__ = ("records", "_tables", "_load", "_full", "_names")

    def __init__(self, records: list[PartRecord], tables: list[ItemTable | None],
                 load: Callable[[int, PartRecord], ItemTable] | None = None) -> None:
        """``tables[p]`` is part ``p`` if at hand; ``load(p, record)`` reads one that is not."""
        count = len(records)
        if count < 1 or count & (count - 1) or len(tables) != count:
            raise ValueError("a table has a power of two parts, each with its record")
        self.records, self._tables, self._load = records, tables, load
        self._full: ItemTable | None = tables[0] if count == 1 else None
        self._names: list[str] | None = None

    @classmethod
    def split(cls, table: Mapping[str, Item], count: int | None = None,
              inputs: Sequence[str | None] | None = None) -> PartedItems:
        """``table`` in ``count`` parts (default: :func:`part_count`); ``inputs``: each part's
        input digest."""
        table = ItemTable.of(table)
        count = part_count(len(table)) if count is None else count
        tables = [table] if count == 1 else [table.select(rows) for rows in part_rows(table.names, count)]
        records = [PartRecord(None, len(t), t.digest(), inputs[p] if inputs is not None else None)
                   for p, t in enumerate(tables)]
        return cls(records, list(tables))

    @property
    def part_count(self) -> int:
        return len(self.records)

    def part(self, p: int) -> ItemTable:
        """Part ``p``, read if not at hand."""
        table = self._tables[p]
        if table is None:
            if self._load is None:
                raise ValueError(f"part {p} of the items is neither at hand nor stored")
            table = self._tables[p] = self._load(p, self.records[p])
        return table

    def release(self, keep: int = 0) -> None:
        """Let go of the parts at hand (they are read again when asked for), unless no more than
        ``keep`` are."""
        if sum(table is not None for table in self._tables) > keep and self._stored():
            self._tables = [None] * len(self.records)
            self._full = self._names = None

    def forget(self, p: int) -> None:
        """Let go of part ``p`` (read again when asked for), where it is stored."""
        if self._stored():
            self._tables[p] = None
            self._full = self._names = None

    def at_hand(self) -> Iterator[tuple[PartRecord, ItemTable]]:
        """Each part read and not let go yet, with its record."""
        for record, table in zip(self.records, self._tables, strict=True):
            if table is not None:
                yield record, table

    def _stored(self) -> bool:
        return self._load is not None and all(record.file for record in self.records)  # else in the manifest

    def stored(self, load: Callable[[int, PartRecord], ItemTable]) -> None:
        """Note how parts are read, now that they are stored (they are at hand: earlier ones may not be)."""
        self._load = load

    def read_part(self, p: int, record: PartRecord) -> ItemTable:
        """Part ``p`` as ``record`` (of an earlier table, split as this one) describes it: the
        current one if that is it, else read from its file (kept for readers of earlier manifests)."""
        if record == self.records[p]:
            return self.part(p)
        if self._load is None or record.file is None:
            raise ManifestError(f"part {p} of an earlier item list is not stored")
        return self._load(p, record)

    def parts(self) -> list[ItemTable]:
        """Every part (read if not at hand)."""
        return [self.part(p) for p in range(self.part_count)]

    def names_and_files(self) -> tuple[list[str], list[str]]:
        """Every item's name and file, sorted by name: a part that is not at hand is read for
        them and not kept (what a reduce folds from, without the whole table in memory)."""
        if self._full is not None:
            return self._full.names, self._full.files
        names: list[str] = []
        files: list[str] = []
        for p, record in enumerate(self.records):
            part = self._tables[p]
            if part is None:
                part = self._load(p, record) if self._load is not None else self.part(p)
            names += part.names
            files += part.files
            del part
        if self.part_count > 1:
            order = sorted(range(len(names)), key=names.__getitem__)
            names, files = [names[row] for row in order], [files[row] for row in order]
        return names, files

    def full(self) -> ItemTable:
        """The whole table, sorted by name (every part is read)."""
        if self._full is None:
            parts = self.parts()
            names = [name for part in parts for name in part.names]
            order = sorted(range(len(names)), key=names.__getitem__)
            files = [file for part in parts for file in part.files]
            sizes = [size for part in parts for size in part.sizes]
            checksums = [checksum for part in parts for checksum in part.checksums]
            sources = [source for part in parts for source in part.sources]
            self._full = ItemTable([names[row] for row in order], [files[row] for row in order],
                                   [sizes[row] for row in order], [checksums[row] for row in order],
                                   [sources[row] for row in order])
        return self._full

    @property
    def names(self) -> list[str]:
        """The names, sorted: merged from the parts (sorted runs, which ``sorted`` merges fast)
        without making the whole table."""
        if self._full is not None:
            return self._full.names
        if self._names is None:
            self._names = sorted(itertools.chain.from_iterable(part.names for part in self.parts()))
        return self._names

    @property
    def files(self) -> list[str]:
        return self.full().files

    @property
    def sizes(self) -> list[int]:
        return self.full().sizes

    @property
    def checksums(self) -> list[str]:
        return self.full().checksums

    @property
    def sources(self) -> list[str | None]:
        return self.full().sources

    def positions(self) -> dict[str, int]:
        return self.full().positions()

    def digest(self) -> str:
        """The digest of the items, from the parts' digests (nothing is read)."""
        return parts_digest(record.digest for record in self.records)

    def inputs(self) -> list[str | None]:
        return [record.inputs for record in self.records]

    def merged(self, keep: Iterable[str] | Kept, new: Mapping[str, Item], count: int | None = None,
               inputs: Sequence[str | None] | None = None) -> PartedItems:
        """The items named in ``keep`` (if present), replaced or extended by ``new``, in ``count``
        parts (default: as many as now, or :func:`part_count` if far off), with each part's input
        digest from ``inputs``. Where ``keep`` is a :class:`Kept` of as many parts, the parts it
        keeps whole and ``new`` does not touch are taken over as they are, unread."""
        if isinstance(keep, Kept) and not self.partwise(keep, count):
            keep = {name for name in self.names if name in keep}
        elif not isinstance(keep, (Kept, set, frozenset)):
            keep = set(keep)
        count = self.count_for(keep, len(new)) if count is None else count
        if count != self.part_count and len(self):  # split otherwise: the whole table, once
            assert not isinstance(keep, Kept)
            full = self.full().merged(keep, new)
            return PartedItems.split(full, count, inputs)
        # Part by part: no copy of the whole table is made beside the parts.
        if not (isinstance(new, NewParts) and new.count == count):
            new = new.by_part(count) if isinstance(new, NewItems) else NewParts.split(ItemTable.of(new), count)
        touched = new.tables
        same = count == self.part_count
        records = list(self.records) if same else [PartRecord(None, 0, empty_table().digest())] * count
        tables: list[ItemTable | None] = list(self._tables) if same else [empty_table() for _ in range(count)]
        for p in range(count):
            given = inputs[p] if inputs is not None else None
            whole = isinstance(keep, Kept) and p in keep.whole
            if whole and p not in touched:
                records[p] = records[p]._replace(inputs=given) if given != records[p].inputs else records[p]
                continue
            part = self.part(p) if same else empty_table()
            kept = keep.names if isinstance(keep, Kept) else keep
            names = part.names if whole else [name for name in part.names if name in kept]
            table = part.merged(names, touched.get(p, empty_table()))
            records[p], tables[p] = PartRecord(None, len(table), table.digest(), given), table
        return PartedItems(records, tables, self._load)

    def count_for(self, keep: Collection[str] | Kept, new: int) -> int:
        """How many parts :meth:`merged` makes of ``keep`` and ``new`` new items when not told: as
        many as now, unless far off."""
        return self.part_count if isinstance(keep, Kept) else part_count(len(keep) + new, self.part_count)

    def partwise(self, keep: Iterable[str] | Kept, count: int | None) -> bool:
        """Whether :meth:`merged` takes over the parts ``keep`` keeps whole, unread."""
        return isinstance(keep, Kept) and keep.count == self.part_count and count in (None, self.part_count)

    def touched(self, keep: Iterable[str] | Kept, new: Iterable[str], count: int | None = None) -> set[int]:
        """The parts :meth:`merged` reads to merge ``new`` (names) in, keeping ``keep``."""
        if not isinstance(keep, Kept) or not self.partwise(keep, count):
            return set(range(self.part_count))
        return {part_of(name, self.part_count) for name in new} | set(range(self.part_count)).difference(keep.whole)

    def dropped_files(self, new: PartedItems, retired: Iterable[str] = ()) -> tuple[list[str], set[str]]:
        """The files this table lists that ``new`` (made from it by :meth:`merged`) does not, and
        those of ``retired`` that ``new`` lists. Parts taken over unchanged are not read, and only
        files that can be dropped or listed again are kept in a set (a first run lists a million)."""
        if new.part_count != self.part_count or self.part_count == 1:
            changed = list(range(self.part_count))
            after: Iterable[str] = itertools.chain.from_iterable(part.files for part in new.parts())
        else:
            changed = [p for p, (before, now) in enumerate(zip(self.records, new.records, strict=True))
                       if before != now or before.file is None]
            after = itertools.chain.from_iterable(new.part(p).files for p in changed)
        watched = set(retired)
        watched.update(itertools.chain.from_iterable(self.part(p).files for p in changed))
        listed = set(filter(watched.__contains__, after))
        dropped = [f for p in changed for f in self.part(p).files if f not in listed]
        return dropped, listed.intersection(retired)

    def __getitem__(self, name: str) -> Item:
        return self.part(part_of(name, self.part_count))[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.part(part_of(name, self.part_count))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return sum(record.items for record in self.records)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PartedItems, ItemTable)):
            return (self.names, self.files, self.sizes, self.checksums, self.sources) == (
                other.names, other.files, other.sizes, other.checksums, other.sources)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PartedItems({len(self)} items in {self.part_count} parts)"


class PartedSources(SourcesInParts):
    """The items of an upstream directory output as input items, its checksums as fingerprints,
    in the parts of its manifest, each read when first needed."""

    __slots__ = ("table", "folder")

    def __init__(self, table: PartedItems, folder: str, reader: Callable[[str], Any]) -> None:  # noqa: D107
        super().__init__(table.part_count, reader)
        self.table, self.folder = table, folder
        self._digest = table.digest()

    def whole_part_digests(self) -> list[str | None]:
        return [record.digest for record in self.table.records]

    def part(self, p: int) -> SourceItems:
        return self._as_sources(self.table.part(p))

    def whole(self) -> SourceItems:
        return self._as_sources(self.table.full())

    def release(self) -> None:
        self._whole = None
        self.table.release()

    def part_sizes(self) -> list[int]:
        return [record.items for record in self.table.records]

    def forget(self, p: int) -> None:
        self.table.forget(p)

    def _as_sources(self, table: ItemTable) -> SourceItems:
        return SourceItems(table.names, table.checksums, Joined(self.folder, table.files), self.reader)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"PartedSources({len(self)} items in {self.table.part_count} parts)"
