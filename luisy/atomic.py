"""Atomic replacement of files and folders: write beside the target, then ``os.replace``.

Inside :func:`staged` (luisy wraps every task's ``run()`` in it) finished writes are held back
and published together when the block succeeds, so a run that fails after writing leaves the
previous outputs in place and no new ones.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

TMP_MARKER = ".luisy-tmp-"

_Pending = tuple[Callable[[], None], Callable[[], None]]  # (publish, discard)
_staging: ContextVar[list[_Pending] | None] = ContextVar("luisy_staging", default=None)


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A unique name in the same folder as ``path`` (same filesystem, so ``os.replace`` is atomic).

    The name keeps the original ending, so writers that look at the extension still work.
    """
    path = Path(path)
    return path.with_name(f"{TMP_MARKER}{uuid.uuid4().hex[:12]}-{path.name}")


def defer(publish: Callable[[], None], discard: Callable[[], None] = lambda: None) -> None:
    """Run ``publish`` now, or at the end of the enclosing :func:`staged` block (``discard`` on failure)."""
    pending = _staging.get()
    if pending is None:
        publish()
    else:
        pending.append((publish, discard))


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` once written; on error it is removed."""
    yield from _atomic(Path(path), make_dir=False)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder ``path`` once written.

    Replacing a non-empty folder takes two renames (old out, new in); a reader in between
    sees no folder, never a half-written one.
    """
    yield from _atomic(Path(path), make_dir=True)


def _atomic(final: Path, make_dir: bool) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    if make_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    defer(functools.partial(_replace, tmp, final), functools.partial(_remove, tmp))


def is_staging() -> bool:
    """Whether a :func:`staged` block is active (writes are held back until it ends)."""
    return _staging.get() is not None


@contextmanager
def staged() -> Iterator[None]:
    """Hold back the writes made inside the block; publish them if it succeeds, drop them if not."""
    if _staging.get() is not None:  # nested (a run() calling super().run()): the outer block publishes
        yield
        return
    pending: list[_Pending] = []
    token = _staging.set(pending)
    try:
        yield
    except BaseException:
        _staging.reset(token)
        for _, discard in pending:
            discard()
        raise
    _staging.reset(token)
    for publish, _ in pending:
        publish()


def _replace(tmp: Path, final: Path) -> None:
    if tmp.is_dir() and final.is_dir():
        old = temp_sibling(final)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
