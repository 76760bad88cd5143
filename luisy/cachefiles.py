"""luisy's disposable cache files: what a run learnt about an input folder, kept for the next.

Content digests (:mod:`luisy.fingerprint.content`) and write-once listings
(:mod:`luisy.directory.snapshot`) are kept as JSON files in ``<working_dir>/.luisy-digests/``,
one per folder and selection of its files. A cache is disposable: a cache file that is not a
regular file (a FIFO, a link, a folder) or is larger than :data:`CACHE_MAX_BYTES` is ignored, and
a run replaces it. A symbolic link at the ``.luisy-digests`` folder is never written through (see
:mod:`luisy.regular_files`): the run goes on without keeping the cache, with a warning that names
the link. What was modified within :data:`RACY_SECONDS` of being looked at is not kept: a second
write within the same clock tick would go unnoticed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from luisy import config, storage
from luisy.digests import digest
from luisy.errors import BrokenFileError, LuisyError

__all__ = ["CACHE_DIR", "CACHE_MAX_BYTES", "RACY_SECONDS", "cache_path", "read_cache", "read_cache_bytes",
           "write_cache", "write_cache_bytes"]

logger = logging.getLogger("luisy")

CACHE_DIR = ".luisy-digests"
#: Files or folders modified this recently (seconds) when looked at are looked at again next time.
RACY_SECONDS = 2.0
#: A cache file larger than this is ignored unread (the digests of a million files take about 100 MB).
CACHE_MAX_BYTES = 1 << 30


def cache_path(folder: str, scope: str, kind: str = "", ext: str = "json") -> str:
    """Where what luisy keeps about ``folder`` and a selection of its files (``scope``) goes;
    ``kind`` tells apart several things kept about one selection."""
    where = os.path.abspath(folder)
    name = f"{os.path.basename(where)[:60]}.{digest(where, scope, size=8)}{'.' + kind if kind else ''}.{ext}"
    return os.path.join(config.get_working_dir(), CACHE_DIR, name)


def read_cache(path: str) -> Any:
    """The JSON kept in the cache file ``path``; ``None`` if there is none, or it is unreadable or
    broken (see the module docstring)."""
    data = read_cache_bytes(path)
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def read_cache_bytes(path: str) -> bytes | None:
    """The bytes of the cache file ``path``; ``None`` as for :func:`read_cache`."""
    try:
        return storage.active().read_bytes(path, CACHE_MAX_BYTES)
    except (OSError, LuisyError):
        return None


def write_cache(path: str, data: Any) -> bool:
    """Replace the cache file ``path`` by ``data`` as JSON; whether it was kept. Where it cannot
    be, the cache is made again next time: a symbolic link at its folder, or a folder in its
    place, with a warning."""
    return write_cache_bytes(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def write_cache_bytes(path: str, data: bytes) -> bool:
    """Replace the cache file ``path`` by ``data``, as :func:`write_cache` does."""
    try:
        storage.active().put_bytes(path, data)
    except BrokenFileError as error:
        logger.warning("luisy keeps no cache in %s: %s", os.path.dirname(path), error.format_message())
        return False
    except OSError:  # a read-only working directory
        return False
    return True
