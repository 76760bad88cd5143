"""Opening the files luisy reads so that none can block it, exhaust its memory or lead it elsewhere.

Every file luisy reads, its own and input files alike, is opened with ``O_NONBLOCK`` and checked
with ``fstat`` before a byte is read: a FIFO would block the reader until something writes into
it (for ever), a device such as ``/dev/zero`` never ends, a folder is no file. Anything but a
regular file is refused with a one-line :class:`~luisy.errors.BrokenFileError` naming it. Once
the file is known to be regular, ``O_NONBLOCK`` is cleared again before a library reads it (FUSE
and some network file systems pass it on for regular files too); where luisy reads the whole
file itself (:func:`read_own`, :func:`open_or_read`), only after a read said ``EAGAIN``. The check costs an
``fstat`` (and that ``fcntl``) on the open file, nothing per path.

luisy's *own* files (fingerprint records, run journal files, caches, manifests) moreover:

* are never opened through a symbolic link at them (luisy never puts one there), and are read
  only up to a size luisy never writes them beyond, so a link to ``/dev/zero`` or a huge file in
  their place cannot exhaust memory;
* are written only into folders of luisy's own (``.luisy-records``, ``.luisy-journal`` and its
  day folders, ``.luisy-digests``) that are not symbolic links (:func:`own_folder`): luisy would
  otherwise create files wherever such a link points.

Input files may be symbolic links (followed), but what they lead to must be a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from luisy.errors import BrokenFileError

__all__ = ["REMOVE", "advised", "kind", "not_own_folder", "not_regular", "open_fd", "open_regular", "open_or_read",
           "own_folder", "read_own"]

#: What to do about one of luisy's own files that is broken.
REMOVE = "remove it (luisy writes its own file there again)"

_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind(mode: int) -> str:
    """What a file with ``st_mode`` ``mode`` is, in words: ``"a FIFO"``, ``"a symbolic link"``..."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def not_regular(shown: str | os.PathLike[str], what: str, own: bool = True) -> BrokenFileError:
    """The error for ``shown``, which is ``what`` (see :func:`kind`) instead of a regular file;
    for one of luisy's ``own`` files it says what to do."""
    return BrokenFileError(f"{os.fspath(shown)} is {what}, not a regular file" + (f": {REMOVE}" if own else ""))


def not_own_folder(shown: str | os.PathLike[str], what: str) -> BrokenFileError:
    """The error for ``shown``, a folder of luisy's own that is ``what`` (see :func:`kind`) instead."""
    return BrokenFileError(f"{os.fspath(shown)} is {what}, not a folder of luisy's own: remove it "
                           "(luisy makes the folder again)")


def advised(error: BrokenFileError, advice: str) -> BrokenFileError:
    """``error`` about a file luisy reads as its own, saying ``advice`` instead of :data:`REMOVE`
    (for a file luisy reads but never writes)."""
    return BrokenFileError(str(error).replace(REMOVE, advice))


def open_fd(path: str | os.PathLike[str], flags: int = os.O_RDONLY, *, own: bool = False, dir_fd: int | None = None,
            shown: str | os.PathLike[str] | None = None, limit: int | None = None) -> int:
    """``os.open(path, flags)`` of a regular file, never blocking; the descriptor is the caller's to close.

    ``own``: one of luisy's own files, not opened through a symbolic link at it. ``limit``: refuse
    a file larger than that many bytes. ``shown``: the path errors name (default ``path``).
    :class:`~luisy.errors.BrokenFileError` for anything that is not a regular file.
    """
    return _open(path, flags, own, dir_fd, shown, limit)[0]


def open_regular(path: str | os.PathLike[str], *, own: bool = False, limit: int | None = None) -> BinaryIO:
    """``open(path, "rb")`` of a regular file, never blocking (see :func:`open_fd`)."""
    return open(_open(path, os.O_RDONLY, own, None, None, limit)[0], "rb")  # noqa: SIM115 - the caller's to close


def read_own(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of luisy's own file ``path``: never through a symbolic link at it, never more than
    ``limit`` (:class:`~luisy.errors.BrokenFileError` if it has more)."""
    fd, info = _open(path, os.O_RDONLY, True, None, None, limit, reads=False)
    try:
        return _read_all(fd, info.st_size, limit, path)
    finally:
        os.close(fd)


def open_or_read(path: str | os.PathLike[str], *, own: bool = False, at_most: int) -> bytes | BinaryIO:
    """The bytes of the regular file ``path`` (see :func:`open_fd`) if it has at most ``at_most``
    bytes, read in one call; else the file opened (the caller's to close)."""
    fd, info = _open(path, os.O_RDONLY, own, None, None, None, reads=False)
    try:
        if info.st_size > at_most:
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)  # a library reads it (see _open)
            return open(fd, "rb")  # noqa: SIM115 - the caller's to close
        data = _read_all(fd, info.st_size, None, path)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return data


def _read_all(fd: int, size: int, limit: int | None, shown: str | os.PathLike[str]) -> bytes:
    """What is left in ``fd`` (``size`` bytes, as ``fstat`` said), at most ``limit`` bytes."""
    chunks: list[bytes] = []
    total, want, blocking = 0, size + 1, False  # the whole file in one read, and whether it grew meanwhile
    while True:
        try:
            chunk = os.read(fd, want if limit is None else min(want, limit + 1 - total))
        except BlockingIOError:  # a file system that passes O_NONBLOCK on for regular files
            if blocking:
                raise
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)
            blocking = True
            continue
        if not chunk:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise _too_large(shown, total, limit)
        want = 1 << 16


@contextlib.contextmanager
def own_folder(path: str | os.PathLike[str], depth: int = 1, create: bool = False) -> Iterator[int]:
    """The folder ``path``, opened: a descriptor to make files in (``dir_fd``).

    Its last ``depth`` components are folders of luisy's own: a symbolic link (or anything but a
    folder) there is a :class:`~luisy.errors.BrokenFileError`, never followed. The folders above
    may be links (a working directory on another disk). ``create``: make what is missing.
    """
    base, names = os.fspath(path), list[str]()
    for _ in range(depth):
        base, name = os.path.split(base)
        names.insert(0, name)
    fd = _open_folder(base or os.curdir, create)
    try:
        shown = base
        for name in names:
            shown = os.path.join(shown, name)
            inner = _own_folder_in(fd, name, shown, create)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _open(path: str | os.PathLike[str], flags: int, own: bool, dir_fd: int | None,
          shown: str | os.PathLike[str] | None, limit: int | None,
          reads: bool = True) -> tuple[int, os.stat_result]:
    """``reads=False``: the caller reads the file itself, with ``os.read`` (``O_NONBLOCK`` stays set
    until a read says it matters: a call less per file)."""
    shown = path if shown is None else shown
    flags |= os.O_NONBLOCK | os.O_NOCTTY | (os.O_NOFOLLOW if own else 0)
    try:
        fd = os.open(path, flags, 0o644, dir_fd=dir_fd)
    except OSError as error:
        # ELOOP: a link where none may be (or a loop of links); ENXIO: a socket, or a FIFO opened
        # to write that nobody reads.
        if error.errno == errno.ELOOP:
            raise not_regular(shown, "a symbolic link" if own else "a loop of symbolic links", own) from None
        if error.errno == errno.ENXIO:
            raise not_regular(shown, kind(os.stat(path, dir_fd=dir_fd, follow_symlinks=not own).st_mode),
                              own) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise not_regular(shown, kind(info.st_mode), own)
        if limit is not None and info.st_size > limit:
            raise _too_large(shown, info.st_size, limit)
        if reads:  # the library that reads the file would not expect EAGAIN
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & os.O_APPEND)  # O_NONBLOCK was for opening only
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _too_large(shown: str | os.PathLike[str], size: int, limit: int) -> BrokenFileError:
    return BrokenFileError(f"{os.fspath(shown)} is {size} bytes long, longer than luisy ever writes such a file "
                           f"({limit} bytes): {REMOVE}")


def _open_folder(path: str, create: bool) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(path, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _own_folder_in(fd: int, name: str, shown: str, create: bool) -> int:
    """The folder ``name`` in the open folder ``fd``, not through a symbolic link."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
            os.mkdir(name, dir_fd=fd)
        return _own_folder_in(fd, name, shown, create=False)
    except NotADirectoryError:  # what O_DIRECTORY | O_NOFOLLOW says of a link
        raise not_own_folder(shown, kind(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)) from None
