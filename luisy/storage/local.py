"""Files on the local file system (or a network file system mounted like one)."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from luisy.atomic import TMP_MARKER, atomic_dir, atomic_file, make_folders, replace_own
from luisy.digests import digest, stat_fingerprint
from luisy.regular_files import kind, not_own_folder, open_fd, open_regular, own_folder, read_own
from luisy.sources import SourceItem
from luisy.storage import Appender, ContentDigests, Reader, Storage, Writer


class LocalStorage(Storage):
    """Files on the local file system, written beside their place and moved in with ``os.replace``."""

    def exists(self, path: str, folder: bool = False) -> bool:
        # A FIFO, a socket or a device where a file output belongs is none luisy wrote: reading it
        # would block or fail for ever, so the task counts as not run and its write replaces it.
        return os.path.isdir(path) if folder else os.path.isfile(path)

    def load(self, path: str, read: Reader, folder: bool = False) -> Any:
        return read(path)

    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        with (atomic_dir if folder else atomic_file)(path) as tmp:
            write(obj, tmp)

    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        return list_files()

    def token(self, path: str) -> Hashable | None:
        try:
            stat = os.lstat(path)  # a link put in a record's place is another version: read, and refused
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        if os.path.isfile(path):
            folder, name = os.path.split(path)
            stat = os.stat(path)
            return by_content(folder, [(name, stat)], name)[0] if by_content else stat_fingerprint(stat)
        if not os.path.isdir(path):
            return None
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                if TMP_MARKER not in name:
                    file = os.path.join(root, name)
                    files.append((Path(os.path.relpath(file, path)).as_posix(), os.stat(file)))
        found = by_content(path, files, "**") if by_content else [stat_fingerprint(s) for _, s in files]
        return digest(*(f"{rel}:{value}" for (rel, _), value in zip(files, found, strict=True)))

    def size(self, path: str) -> int | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def read_bytes(self, path: str, limit: int) -> bytes:
        return read_own(path, limit)

    def put_bytes(self, path: str, data: bytes) -> None:
        replace_own(path, data)

    def modified(self, path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None

    def appender(self, path: str, new: bool) -> Appender:
        folder, name = os.path.split(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_EXCL if new else 0)
        with own_folder(folder, depth=_own_depth(folder), create=True) as fd:
            return _FileAppender(open_fd(name, flags, own=True, dir_fd=fd, shown=path))

    def listdir(self, path: str) -> list[tuple[str, bool]]:
        try:
            with os.scandir(path) as entries:
                return sorted((entry.name, entry.is_dir()) for entry in entries)
        except FileNotFoundError:
            return []
        except NotADirectoryError:  # a file, a FIFO put in a folder's place: say what it is
            raise not_own_folder(path, kind(os.stat(path).st_mode)) from None

    def unwritten(self, targets: Iterable[Any]) -> list[str]:
        return [str(getattr(t, "path", t)) for t in targets if not t.exists()]

    def root_problem(self, path: str) -> str | None:
        if os.path.isdir(path):
            return None
        try:
            return f"is {kind(os.stat(path).st_mode)}, not a folder"
        except OSError:  # nothing there, or a folder on the way is not one
            return "does not exist"

    def fetch_file(self, path: str, local: Path) -> None:
        with open_regular(path) as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)

    def send_file(self, local: Path, path: str) -> None:
        with atomic_file(path) as tmp:
            shutil.copyfile(local, tmp)

    def make_folder(self, path: str) -> None:
        make_folders(path)

    @contextmanager
    def lock(self, path: str) -> Iterator[None]:
        # The file itself is replaced, so the lock is on its folder (no lock file left behind).
        os.makedirs(os.path.dirname(path), exist_ok=True)
        folder = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)


class _FileAppender:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        written = os.write(self.fd, data)
        if written != len(data):  # a file system that writes in pieces: finish; readers skip it meanwhile
            os.write(self.fd, data[written:])

    def close(self) -> None:
        os.close(self.fd)


def _own_depth(folder: str) -> int:
    """How many of ``folder``'s last components are luisy's own: ``.luisy-journal`` and below."""
    parts = Path(folder).parts
    first = next((i for i, part in enumerate(parts) if part.startswith(".luisy-")), len(parts) - 1)
    return len(parts) - first


LOCAL = LocalStorage()
