"""Atomic replacement of files and folders: write beside the target, then ``os.replace``."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARKER = ".luisy-tmp-"


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A unique name in the same folder as ``path`` (same filesystem, so ``os.replace`` is atomic).

    The name keeps the original ending, so writers that look at the extension still work.
    """
    path = Path(path)
    return path.with_name(f"{TMP_MARKER}{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder ``path`` when the block succeeds.

    Replacing a non-empty folder takes two renames (old out, new in); a reader in between
    sees no folder, never a half-written one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = temp_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
