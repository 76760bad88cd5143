"""The run journal: small files of JSON lines in ``<working_dir>/.luisy-journal/``.

Every run of a luisy task appends a ``START`` event before ``run()`` and a ``SUCCESS`` or ``FAIL``
event after it; a run killed with ``kill -9`` leaves its ``START`` alone. Events are never
changed or removed.

No two processes ever write to one file, so workers on several machines sharing the working
directory over a network file system lose nothing and need no lock. ``O_APPEND`` to one shared
file is not safe there (an NFS client appends at the size it last saw, so two machines overwrite
each other's lines), and ``flock`` or SQLite's locking cannot be trusted (see docs/history.rst
for the measurements). Each file is created with ``O_CREAT | O_EXCL`` under a name no other
writer can choose, and only its creator appends to it:

* within a build (``luisy.build``, ``luisy run``), a process's events all go to one file it
  keeps open for the build (``<start>.p-<random>.json``): a file per task run would cost two
  more file opens per task, as much again as the task's own output;
* elsewhere (``task.run()`` called directly), each task run gets a file
  (``<start>.<task digest>.<random>.json``) holding its ``START`` and its end.

A reader skips a line that is not complete JSON: it is being written, and the next read sees it.
A file in the journal that is not a regular file (a FIFO, a link, a device) or is larger than
:data:`FILE_MAX_BYTES` is none luisy wrote: reading the journal fails with one line naming it.
Events are written only into a journal folder and day folders of luisy's own, never through a
symbolic link put in their place (see :mod:`luisy.regular_files`).
Files are grouped by UTC day of their first event (``2026-12-01/``), so reading the history of
the last days does not list older ones; names start with that time in nanoseconds, and a task
run's file names its task, so readers select files without opening them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luisy import config, storage
from luisy.atomic import TMP_MARKER
from luisy.digests import digest
from luisy.errors import BrokenFileError, LuisyError
from luisy.shapes import TIME, Check, checker, is_time
from luisy.tracebacks import traceback_of

if TYPE_CHECKING:
    from luisy.items import ItemRow

__all__ = ["JOURNAL_DIR", "START", "SUCCESS", "FAIL", "Event", "append", "events", "events_by_day", "task_key",
           "one_file_per_process"]

logger = logging.getLogger("luisy")

JOURNAL_DIR = ".luisy-journal"
START, SUCCESS, FAIL = "START", "SUCCESS", "FAIL"
#: Failed items a directory task's end event names (its manifest lists every one).
FAILURES_NOTED = 10
_SUFFIX = ".json"
#: A journal file larger than this is none luisy wrote (a process writes well under a kB per task run).
FILE_MAX_BYTES = 1 << 30
#: A line is read in pieces of at most this many bytes: a longer one is no event, and memory stays small.
_LINE_MAX_BYTES = 1 << 24


@dataclass(frozen=True)
class Event:
    """One line of a task run's story: it started, succeeded or failed."""

    #: ``START``, ``SUCCESS`` or ``FAIL``.
    event: str
    #: The task run: a ``START`` and the event that ends it share it.
    id: str
    #: The ``luisy.build`` the task ran in (a fresh id where the task ran outside one).
    run: str
    task_id: str
    #: The task with its parameters, as luigi prints it.
    task: str
    family: str
    host: str
    user: str
    pid: int
    #: When the task run started, and when it ended (``None`` for ``START``), epoch seconds.
    started: float
    ended: float | None = None
    #: The first line of the error of a ``FAIL``.
    error: str = ""
    #: Directory tasks: items processed, failed, and kept (from the previous output, or made by
    #: an interrupted run).
    items: dict[str, int] | None = None
    luisy_version: str = ""
    python_version: str = ""
    #: The task's outputs, relative to the working directory.
    outputs: list[str] = field(default_factory=list)
    #: Where a ``FAIL`` came from: the traceback of the task's code, or of the failed item's
    #: (see :mod:`luisy.tracebacks`); empty for a luisy error, whose one line says it all.
    traceback: str = ""
    #: Directory tasks: the first failed items, each with ``name``, ``input``, ``error`` and
    #: ``traceback`` (the output's manifest has them all: ``luisy items TASK --failed``).
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def time(self) -> float:
        """When the event happened."""
        return self.started if self.ended is None else self.ended

    def to_json(self) -> str:
        """The event as one line of JSON."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event | None:
        """The event, or ``None`` if ``text`` is not a complete event (still being written) or its
        fields are not of the shapes luisy writes."""
        try:
            data = json.loads(text)
            event = cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError, RecursionError):  # a deeply nested line exhausts the parser
            return None
        return event if event is not None and _well_typed(event) else None


#: The largest process id: pids are 32-bit signed numbers.
_PID_MAX = 2**31 - 1

# The shapes of the fields that are not strings (see luisy.shapes): a line of other shapes was
# not written by luisy, and would break the sorting and printing of runs (a time no date shows,
# a pid no process can have, a failed item whose error is no text).
_FIELD_SHAPES: dict[str, Any] = {
    "pid": Check("a process id", lambda value: type(value) is int and 0 < value <= _PID_MAX),
    "started": TIME, "ended": Check("a time or null", lambda value: value is None or is_time(value)),
    "items": (dict, type(None)), "outputs": [str],
    "failures": [{"name": str, "state": str, "input": (str, type(None)), "error": str, "traceback": str}],
}
_FIELDS = tuple((name, checker(_FIELD_SHAPES.get(name, str))) for name in Event.__dataclass_fields__)


def _well_typed(event: Event) -> bool:
    return all(fits(getattr(event, name)) for name, fits in _FIELDS)


def task_key(task_id: str) -> str:
    """The short digest of a task id that event file names carry."""
    return digest(task_id, size=4)


def journal_dir(root: str | os.PathLike[str]) -> Path:
    """The journal of the working directory ``root``."""
    return Path(root) / JOURNAL_DIR


def append(root: str | os.PathLike[str], event: Event) -> Path:
    """Add ``event`` to the journal of the working directory ``root``; returns the file it went to.

    Within :func:`one_file_per_process`, the process's file; elsewhere a ``START`` creates the
    task run's file, and a later event of the same task run (same :attr:`Event.id` and start
    time) is appended to it.
    """
    files = config.context().caches.journal_files
    data = (event.to_json() + "\n").encode("utf-8")
    if files is not None:
        # A file per day too: a task run's events are in the folder of the day it started, also
        # in a build that runs for days.
        key = (os.fspath(root), os.getpid(), _day(event.started))
        if key not in files:
            path = _file(root, event.started, _PROCESS + uuid.uuid4().hex)
            files[key] = (storage.active().appender(os.fspath(path), new=True), path)
        appender, path = files[key]
        appender.write(data)
        return path
    path = _file(root, event.started, f"{task_key(event.task_id)}.{event.id}")
    once = storage.active().appender(os.fspath(path), new=event.event == START)
    try:
        once.write(data)
    finally:
        once.close()
    return path


@contextmanager
def one_file_per_process() -> Iterator[None]:
    """Inside the block (a build), each process appends its events to one file, opened once."""
    if config.context().caches.journal_files is not None:
        yield
        return
    with config.caching("journal_files") as files:
        try:
            yield
        finally:
            for (_, pid, _), (appender, _) in files.items():
                if pid == os.getpid():  # a forked luigi worker's files close when it exits
                    appender.close()


#: How the name of a process's file starts after its time (a task digest is hex, without ``-``).
_PROCESS = "p-"


def _file(root: str | os.PathLike[str], started: float, middle: str) -> Path:
    return journal_dir(root) / _day(started) / f"{int(started * 1e9):020d}.{middle}{_SUFFIX}"


def _day(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%d")


def events(root: str | os.PathLike[str], since: float | None = None,
           task_ids: Iterable[str] | None = None) -> list[Event]:
    """The journal's events, by start of their task run: those of task runs that started at
    ``since`` (epoch seconds) or later, and of the tasks ``task_ids`` only, if given. Lines
    still being written are skipped."""
    first_day = "" if since is None else _day(since)
    found = []
    for day in _days(journal_dir(root)):
        if day >= first_day:
            found += _read(journal_dir(root) / day, since, task_ids)
    return _by_start(found)


def events_by_day(root: str | os.PathLike[str], task_ids: Iterable[str] | None = None) -> Iterator[list[Event]]:
    """The events of the tasks ``task_ids`` (all, if ``None``) day by day, the newest day first:
    a task run's events are all in the day it started, so its latest run is in the first day
    that has one."""
    folder = journal_dir(root)
    for day in reversed(_days(folder)):
        yield _by_start(_read(folder / day, None, task_ids))


def _days(folder: Path) -> list[str]:
    return [name for name, is_folder in storage.active().listdir(os.fspath(folder)) if is_folder]


def _read(day: Path, since: float | None, task_ids: Iterable[str] | None) -> list[Event]:
    keys = None if task_ids is None else {task_key(t) for t in task_ids}
    wanted = None if task_ids is None else set(task_ids)
    first_ns = f"{int(since * 1e9):020d}" if since is not None else ""
    found = []
    where = storage.active()
    for name, _ in where.listdir(os.fspath(day)):
        if not name.endswith(_SUFFIX) or TMP_MARKER in name:
            continue
        kind = name.split(".", 2)[1]
        # A process's file holds the task runs of all tasks that started that day, from its name's time on.
        if not kind.startswith(_PROCESS) and (name < first_ns or (keys is not None and kind not in keys)):
            continue
        try:
            data = where.read_bytes(os.fspath(day / name), FILE_MAX_BYTES)
        except BrokenFileError:
            raise
        except OSError:  # removed by hand meanwhile
            continue
        for line in data.splitlines(keepends=True):
            event = Event.from_json(line) if len(line) <= _LINE_MAX_BYTES else None
            if (event is not None and (wanted is None or event.task_id in wanted)
                    and (since is None or event.started >= since)):
                found.append(event)
    return found


def _by_start(found: list[Event]) -> list[Event]:
    return sorted(found, key=lambda event: (event.started, event.id))  # a process's file holds many task runs


def note_items(processed: int, failed: int, kept: int, failures: Iterable[ItemRow] = ()) -> None:
    """Record the item counts of the directory task running in this context (if it is journaled),
    and its first failed items."""
    notes = _notes()
    if notes is not None:
        notes["items"] = {"processed": processed, "failed": failed, "kept": kept}
    note_failures(failures)


def note_reduce(folded: int, unfolded: int, refolded: bool) -> None:
    """Record what the reduce running in this context folded (``refolded``: everything again)."""
    notes = _notes()
    if notes is not None:
        notes["items"] = {"folded": folded, "unfolded": unfolded, "refolded": int(refolded)}


def note_failures(failures: Iterable[ItemRow]) -> None:
    """Record the first failed items of the directory task running in this context (if it is
    journaled): also those of a run they stop, which publishes none of them."""
    notes = _notes()
    if notes is not None:
        notes["failures"] = [row.to_dict() for row in failures]


def _notes() -> dict[str, Any] | None:
    task = config.context().task
    return task.notes if task is not None else None


@dataclass
class TaskRun:
    """The events of one task run, written by :func:`journaled`."""

    root: Path
    start: Event
    notes: dict[str, Any] = field(default_factory=dict)

    def end(self, error: BaseException | None, items: dict[str, int] | None = None) -> None:
        """Append ``SUCCESS`` (``error`` is ``None``) or ``FAIL`` with the error's first line."""
        fields = asdict(self.start)
        fields.update(event=FAIL if error is not None else SUCCESS, ended=time.time(),
                      error="" if error is None else first_line(error),
                      traceback="" if error is None else traceback_of(error),
                      items=self.notes.get("items", items), failures=self.notes.get("failures", []))
        _append_logged(self.root, Event(**fields))


def first_line(error: BaseException) -> str:
    """``Type: message`` of an exception, its first line only."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def start(root: Path, run: str, task_id: str, task: str, family: str, outputs: list[str]) -> TaskRun:
    """Append the ``START`` of a task run and return it, to be ended by :meth:`TaskRun.end`."""
    luisy = sys.modules.get("luisy")
    event = Event(event=START, id=uuid.uuid4().hex[:16], run=run or uuid.uuid4().hex, task_id=task_id, task=task,
                  family=family, host=socket.gethostname(), user=user_name(), pid=os.getpid(), started=time.time(),
                  luisy_version=getattr(luisy, "__version__", ""), python_version=platform.python_version(),
                  outputs=outputs)
    _append_logged(root, event)
    return TaskRun(root, event)


@contextmanager
def noting(task_run: TaskRun) -> Iterator[TaskRun]:
    """Make ``task_run`` the one :func:`note_items` adds to, inside the block (the task scope's:
    code inside ``run()``, a directory task, adds its item counts to the event that ends it)."""
    task = config.context().task
    if task is None:
        yield task_run
        return
    task.notes = task_run.notes
    try:
        yield task_run
    finally:
        task.notes = None


def _append_logged(root: Path, event: Event) -> None:
    # The journal tells what happened; it must not make a task fail (a read-only working
    # directory, a full disk): the failure is logged instead.
    try:
        append(root, event)
    except (OSError, LuisyError) as error:  # a store that failed: the run's outputs are published
        logger.warning("cannot add %s of %s to the run journal in %s: %s", event.event, event.task,
                       journal_dir(root), error)


def user_name() -> str:
    """The user running this process (its uid where the system has no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        return str(os.getuid())
