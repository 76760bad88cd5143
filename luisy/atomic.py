"""Atomic replacement of files and folders: write beside the target, then ``os.replace``.

Inside :func:`staged` (luisy wraps every task's ``run()`` in it) finished writes are held back
and published together when the block succeeds, so a run that fails after writing leaves the
previous outputs in place and no new ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from luisy import config
from luisy.digests import digest
from luisy.errors import BrokenFileError
from luisy.interrupts import held
from luisy.paths import NAME_MAX, refuse_linked
from luisy.regular_files import kind, not_regular, own_folder

TMP_MARKER = ".luisy-tmp-"
#: A temporary file of a writer on another machine is left alone until it is this old (seconds):
#: from here luisy cannot tell whether that writer is alive.
FOREIGN_TEMP_MAX_AGE = 24 * 3600
#: No process id reaches this: ``pid_t`` is a signed 32-bit integer.
PID_LIMIT = 1 << 31


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A unique name in the same folder as ``path`` (same filesystem, so ``os.replace`` is atomic).

    The name says which process made it (host and pid), so a later run can tell a dead writer's
    leftovers from a live writer's work. It keeps the end of the original name, extension
    included, for writers that look at it, and never exceeds :data:`NAME_MAX` bytes.
    """
    path = Path(path)
    prefix = f"{TMP_MARKER}{_host_tag()}.{os.getpid()}.{uuid.uuid4().hex[:8]}-"
    return path.with_name(prefix + fit_name(path.name, NAME_MAX - len(prefix)))


def hand_over(path: str | os.PathLike[str]) -> Path:
    """Rename this process's temporary ``path`` so that it reads as a gone writer's (pid 0): a
    later writer in this same process takes it over like one a dead process left."""
    path = Path(path)
    match = _TEMP_NAME.match(path.name)
    if match is None:
        return path
    released = path.with_name(f"{path.name[:match.start('pid')]}0{path.name[match.end('pid'):]}")
    os.replace(path, released)
    return released


def fit_name(name: str, limit: int) -> str:
    """The end of ``name`` that fits in ``limit`` bytes of UTF-8 (the whole name if it fits)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return name
    return encoded[len(encoded) - limit:].decode("utf-8", "ignore")


@functools.cache
def _host_tag() -> str:
    """Which machine and process-id space a pid in a temporary name belongs to: the host name, and
    on Linux the boot and the pid namespace (containers on one host share its name)."""
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("pid") else Path(source).read_text().strip())
        except OSError:
            pass
    return digest(*parts, size=3)


_TEMP_NAME = re.compile(re.escape(TMP_MARKER) + r"(?P<host>[0-9a-f]{6})\.(?P<pid>[0-9]+)\.[0-9a-f]{8}-")


def is_stale_temp(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a temporary file or folder (see :func:`temp_sibling`) of a writer that is gone.

    On this machine: its process no longer runs (or its pid now belongs to a younger process).
    Elsewhere, or made by an older luisy: untouched for :data:`FOREIGN_TEMP_MAX_AGE` seconds.
    """
    try:
        mtime = os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    match = _TEMP_NAME.match(os.path.basename(path))
    if match is None or match["host"] != _host_tag():
        return time.time() - mtime > FOREIGN_TEMP_MAX_AGE
    pid = int(match["pid"])
    return pid == 0 or not process_alive(pid, mtime)


def process_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` runs and was started no later than ``since`` (a reused pid is not it).

    A process that has ended but was not yet reaped by its parent (a zombie) does not run: the
    locks it held are gone, and a writer that waited for them takes its work over. A pid no
    process can have (0, negative, beyond :data:`PID_LIMIT`: a name or record edited by hand)
    does not run either.
    """
    if not 0 < pid < PID_LIMIT:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    state, started = _process_state(pid)
    return state != b"Z" and (started is None or started <= since + 1)


def _process_state(pid: int) -> tuple[bytes | None, float | None]:
    """Process ``pid``'s state letter (``Z``: ended, not reaped) and when it started (epoch
    seconds), where ``/proc`` tells; else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None, None


# Within a build, each folder is listed for temporary files once: a folder of 10 000 outputs is
# otherwise listed once per output written into it. Temporary files that appear later belong to
# writers that are alive, which nobody removes anyway, or were handed over by a writer of this
# build that was interrupted or failed: those wait for the next build.
@contextmanager
def temps_listed_once() -> Iterator[None]:
    """Within the block, :func:`stale_temps` lists each folder once (see above)."""
    with config.caching("temp_listings"):
        yield


def _temp_names(folder: str) -> list[str]:
    listings = config.context().caches.temp_listings
    if listings is not None and folder in listings:
        return listings[folder]
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(TMP_MARKER)]
    except (FileNotFoundError, NotADirectoryError):
        names = []
    if listings is not None:
        listings[folder] = names
    return names


def stale_temps(path: str | os.PathLike[str]) -> list[str]:
    """The temporary siblings of ``path`` that writers which are gone left behind."""
    path = Path(path)
    folder = os.fspath(path.parent)
    entries = [os.path.join(folder, name) for name in _temp_names(folder) if _is_temp_of(name, path.name)]
    return [entry for entry in entries if is_stale_temp(entry)]


def _is_temp_of(name: str, original: str) -> bool:
    """Whether ``name`` is a :func:`temp_sibling` name made for ``original`` (not for a longer name
    that ends like it: ``.luisy-tmp-…-mydata`` is not a temporary of ``data``)."""
    match = _TEMP_NAME.match(name)
    if match is None:  # an older luisy's name: it ended with the original name
        return name.endswith(original)
    rest = name[match.end():]
    # A name too long to fit was cut to its end (fit_name), with the prefix it had then.
    return rest == original or (len(rest.encode("utf-8", "surrogateescape")) > NAME_MAX - 48
                                and original.endswith(rest))


def remove_stale_temps(path: str | os.PathLike[str]) -> None:
    """Remove the temporary siblings of ``path`` that writers which are gone left behind; an
    :class:`~luisy.errors.UnsafePathError` where they are reached through a symbolic link (see
    :func:`~luisy.paths.refuse_linked`)."""
    refuse_linked(Path(path).parent)
    for entry in stale_temps(path):
        remove_path(Path(entry))


def replace_own(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace luisy's own file ``path`` (a record, a cache) by ``data`` now: written beside it,
    then ``os.replace``. Never through a symbolic link at its folder, which is made if missing (see
    :func:`~luisy.regular_files.own_folder`); a folder in the file's place is an error, not removed.
    """
    folder, name = os.path.split(os.fspath(path))
    with own_folder(folder, create=True) as fd:
        tmp = temp_sibling(name).name
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            with open(out, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)
            if isinstance(error, IsADirectoryError):
                raise not_regular(path, kind(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)) from None
            raise


def defer(publish: Callable[[], object], discard: Callable[[], object] = lambda: None) -> None:
    """Run ``publish`` now, or at the end of the enclosing :func:`staged` block (``discard`` on failure)."""
    task = config.context().task
    if task is None or task.pending is None:
        publish()
    else:
        task.pending.append((publish, discard))


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
    remove_stale_temps(final)  # first: it refuses a folder reached through a link, which mkdir would follow
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    if make_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    defer(functools.partial(_replace, tmp, final), functools.partial(remove_path, tmp))


def is_staging() -> bool:
    """Whether a :func:`staged` block is active (writes are held back until it ends)."""
    task = config.context().task
    return task is not None and task.pending is not None


@contextmanager
def staged(then: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold back the writes made inside the block; publish them if it succeeds (then call
    ``then``), drop them if not. Ctrl-C or SIGTERM during the publish lets it finish first."""
    if is_staging():  # nested (a run() calling super().run()): the outer block publishes
        yield
        return
    task = config.context().task or config.TaskScope()
    task.pending = pending = list[tuple[Callable[[], object], Callable[[], object]]]()
    try:
        with config.scope(task=task):
            yield
    except BaseException:
        task.pending, task.stop_after_publish = None, None  # nothing is published, so no stop waits for it
        for _, discard in pending:
            discard()
        raise
    task.pending = None  # what publishing writes is written at once
    with held(task):
        for publish, _ in pending:
            publish()
        then()


def _replace(tmp: Path, final: Path) -> None:
    if tmp.is_dir() and final.is_dir():
        old = temp_sibling(final)
        os.replace(final, old)
        os.replace(tmp, final)
        remove_path(old)
    else:
        try:
            os.replace(tmp, final)
        except IsADirectoryError:
            # A folder where a file belongs may hold someone's data: never removed by luisy.
            remove_path(tmp)
            raise BrokenFileError(f"{final} is a folder where a file belongs: remove it, then run again") from None


def make_folders(folder: str | os.PathLike[str]) -> None:
    """Make ``folder`` and the folders it is in; a file where one of them goes is one line (it
    may hold what others wrote: luisy replaces only what stands at its own output's path)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        path = Path(os.path.abspath(folder))
        blocking = next(p for p in [*reversed(path.parents), path] if os.path.lexists(p) and not p.is_dir())
        raise BrokenFileError(f"{blocking} is {kind(os.lstat(blocking).st_mode)} where luisy needs a folder: "
                              "remove it, then run again") from None


def remove_path(path: Path) -> None:
    """Remove the file or folder ``path`` if it is there; a symbolic link is removed, never followed
    (nor is one inside a removed folder)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
