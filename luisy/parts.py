"""How a table of items is split into parts by a hash of the item name.

A run compares an input with what it recorded part by part, and reads only the parts that
differ; the input folder's listing and a manifest's items are split alike, so that a part of
one is compared with the same part of the other.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Sequence

from luisy.digests import digest

#: About how many items a part holds.
PART_ITEMS = 4096


def part_count(items: int, current: int = 0) -> int:
    """How many parts a table of ``items`` items is split into: a power of two, about
    :data:`PART_ITEMS` items a part. ``current`` (the count so far) is kept while within a
    factor of four of that, so that a table that grows a little is not rewritten whole."""
    target = 1
    while target * PART_ITEMS < items:
        target *= 2
    if current and current <= target * 4 and target <= current * 4:
        return current
    return target


def part_of(name: str, count: int) -> int:
    """The part item ``name`` is in, of ``count`` (a power of two)."""
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) & (count - 1) if count > 1 else 0


def part_keys(names: Sequence[str], count: int) -> list[int]:
    """:func:`part_of` each of ``names``."""
    if count == 1:
        return [0] * len(names)
    mask = count - 1
    encoded = map(str.encode, names, itertools.repeat("utf-8"), itertools.repeat("surrogateescape"))
    return [value & mask for value in map(zlib.crc32, encoded)]


def part_rows(names: Sequence[str], count: int) -> list[list[int]]:
    """The rows of ``names`` in each of ``count`` parts, in order."""
    rows: list[list[int]] = [[] for _ in range(count)]
    add = [part.append for part in rows]
    for row, key in enumerate(part_keys(names, count)):
        add[key](row)
    return rows


def parts_digest(digests: Iterable[str]) -> str:
    """The digest of a table from its parts' digests (a table of one part: that part's digest)."""
    digests = list(digests)
    return digests[0] if len(digests) == 1 else digest(*digests)
