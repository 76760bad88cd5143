"""Digests: the one hash (BLAKE2b) behind every fingerprint, checksum and short name luisy makes."""

from __future__ import annotations

import hashlib
import itertools
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from luisy.regular_files import open_regular


def digest(*parts: str, size: int = 16) -> str:
    """A hex digest of ``size`` bytes of the text ``parts`` (each followed by a NUL byte)."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def stat_fingerprint(stat: os.stat_result) -> str:
    """A file's fingerprint by size and modification time: what tells an edited input by default."""
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def newest_mtime_ns(fingerprints: Iterable[str]) -> int:
    """The latest modification time (ns) in :func:`stat_fingerprint` values; 0 if there are none."""
    parts = map(operator.methodcaller("rpartition", "-"), fingerprints)  # C loops: a million of them
    return max(map(int, map(operator.itemgetter(2), parts)), default=0)


def bytes_digest(data: bytes, size: int = 16) -> str:
    """A hex digest of ``size`` bytes of ``data``."""
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def text_digest(pieces: Iterable[str], size: int = 16) -> str:
    """:func:`bytes_digest` of the pieces' text joined, without holding all of it at once."""
    h = hashlib.blake2b(digest_size=size)
    for piece in pieces:
        h.update(piece.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """The content checksum of a file: :func:`bytes_digest` of its bytes (a regular file: see
    :func:`~luisy.regular_files.open_regular`)."""
    with open_regular(path) as f:
        return stream_digest(f)


def stream_digest(f: BinaryIO) -> str:
    """:func:`bytes_digest` of the rest of an open file, read in 1 MiB blocks (memory stays small)."""
    h = hashlib.blake2b(digest_size=16)
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def items_digest(pairs: Iterable[tuple[str, str | None]]) -> str:
    """A digest of ``(name, fingerprint)`` pairs with unique names, independent of their order."""
    by_name = dict(pairs)
    names = sorted(by_name)  # sorting str, not tuples: twice as fast
    return columns_digest(names, list(map(by_name.__getitem__, names)))


def columns_digest(names: Sequence[str], values: Sequence[str | None]) -> str:
    """:func:`items_digest` of ``zip(names, values)``; no copy when the names are sorted already
    (a listing or a manifest usually is: a million names cost a dict and a sort otherwise)."""
    if not all(map(operator.lt, names, itertools.islice(names, 1, None))):
        return items_digest(zip(names, values, strict=True))
    return text_digest(_joined(names, values))


def _joined(names: Sequence[str], values: Sequence[str | None], step: int = 1 << 14) -> Iterator[str]:
    """``"\\0".join(name, value, name, value...)`` in pieces of ``step`` pairs."""
    for start in range(0, len(names), step):
        pairs = zip(names[start:start + step], values[start:start + step], strict=True)
        try:
            text = "\0".join(itertools.chain.from_iterable(pairs))  # type: ignore[arg-type]  # None: see below
        except TypeError:  # a value that is not a str (None): the same text, built slower
            pairs = zip(names[start:start + step], values[start:start + step], strict=True)
            text = "\0".join(f"{name}\0{value}" for name, value in pairs)
        yield "\0" + text if start else text
