"""The runs of tasks, from the run journal (``luisy history``, the last run in ``luisy status``).

A task run is its ``START`` event joined with the ``SUCCESS`` or ``FAIL`` that ended it. A run
with no end was killed (``kill -9``, a lost machine) or is still going: it reads
``interrupted?``, or ``running`` while its process is alive on this machine.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from luisy.atomic import process_alive
from luisy.errors import LuisyError
from luisy.history.journal import FAIL, START, Event, events, events_by_day
from luisy.items import failed_row
from luisy.texttable import cut, text_table

__all__ = ["TaskRun", "history", "last_runs", "last_failed", "failed_run_lines", "runs_of", "parse_since", "table",
           "INTERRUPTED", "RUNNING"]

INTERRUPTED = "interrupted?"
RUNNING = "running"


@dataclass(frozen=True)
class TaskRun(Event):
    """One run of one task: its last event (the end, or the ``START`` of a run that did not end)
    and its :attr:`state`."""

    #: ``SUCCESS``, ``FAIL``, ``interrupted?`` or ``running``.
    state: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (``None`` without an end)."""
        return None if self.ended is None else self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: times as ISO 8601 (UTC) besides epoch seconds, and the duration."""
        out = asdict(self)
        out.update(duration=self.duration, started_utc=_iso(self.started),
                   ended_utc=None if self.ended is None else _iso(self.ended))
        return out


def _joined(found: Iterable[Event]) -> list[TaskRun]:
    """Task runs from their events, newest start first."""
    starts: dict[str, Event] = {}
    ends: dict[str, Event] = {}
    for event in found:
        (starts if event.event == START else ends)[event.id] = event
    runs = []
    for key, begun in starts.items():
        end = ends.get(key)
        if end is not None:
            state = end.event
        else:
            state = RUNNING if _alive(begun) else INTERRUPTED
        runs.append(_task_run(state, end or begun))
    # An end whose START line is unreadable: shown with what the end says.
    runs.extend(_task_run(end.event, end) for key, end in ends.items() if key not in starts)
    runs.sort(key=lambda r: (r.started, r.id), reverse=True)
    return runs


def _task_run(state: str, event: Event) -> TaskRun:
    """The run an event tells of (an end repeats what its ``START`` said)."""
    return TaskRun(**asdict(event), state=state)


def _alive(event: Event) -> bool:
    return event.host == socket.gethostname() and process_alive(event.pid, event.started)


def history(root: str | os.PathLike[str], task: str | None = None, since: float | None = None,
            failed: bool = False) -> list[TaskRun]:
    """The task runs in the journal of working directory ``root``, newest first.

    ``task``: a task family (``Segmented``), ``module:Class`` / ``module.Class`` (its class name),
    or a glob pattern matched against the task with its parameters (``'Segmented(sigma=2*'``).
    ``since``: epoch seconds (see :func:`parse_since`). ``failed``: only runs that failed or were
    interrupted.
    """
    runs = _joined(events(root, since))
    if task is not None:
        runs = [r for r in runs if _matches(task, r)]
    if failed:
        runs = [r for r in runs if r.state in (FAIL, INTERRUPTED)]
    return runs


def last_failed(root: str | os.PathLike[str], task: Any) -> TaskRun | None:
    """The last run of ``task`` in the journal of ``root``, if it failed."""
    run = last_runs(root, [task.task_id]).get(task.task_id)
    return run if run is not None and run.state == FAIL else None


def failed_run_lines(task: Any, run: TaskRun, verbose: int = 0) -> list[str]:
    """What ``luisy items`` says of a directory task's failed last run, with the items that failed
    in it (as :meth:`~luisy.items.ItemRow.lines`, indented): under ``on_error="raise"`` the item
    that stopped the run, which is in no manifest, as the run published nothing."""
    rows = [failed_row(failure.get("name", "?"), failure.get("error", ""), failure) for failure in run.failures]
    head = f"{task}: its last run (started {when(run.started)} UTC) failed"
    if rows and getattr(task, "on_error", None) == "raise":
        head += ' and published nothing: on_error="raise" stopped it at this item:'
    else:
        head += f": {run.error}" + ("; the items that failed in it:" if rows else "")
    return [head, *("  " + line for row in rows for line in row.lines(verbose))]


def _matches(pattern: str, run: TaskRun) -> bool:
    if run.family == pattern or fnmatch.fnmatchcase(run.task, pattern):
        return True
    name = re.split(r"[:.]", pattern)[-1]  # module:Class or module.Class
    return name != pattern and run.family == name


def runs_of(root: str | os.PathLike[str], task_id: str, since: float | None = None) -> list[TaskRun]:
    """The runs of one task (those started at ``since`` or later), newest first."""
    return _joined(events(root, since, task_ids=[task_id]))


def last_runs(root: str | os.PathLike[str], task_ids: Iterable[str]) -> dict[str, TaskRun]:
    """The latest run of each of the tasks ``task_ids`` (those that ran), by task id."""
    wanted = set(task_ids)
    latest: dict[str, TaskRun] = {}
    for day in events_by_day(root, wanted):  # newest first: a journal of years is not read whole
        for run in _joined(day):
            latest.setdefault(run.task_id, run)  # newest first
        if wanted <= latest.keys():
            break
    return latest


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a span back from now (``90s``, ``30m``, ``12h``, ``2d``, ``1w``) or a date or
    time in ISO 8601 (``2026-12-01``, ``2026-12-01T08:00``; UTC unless it names a zone)."""
    span = _SPAN.match(text)
    if span:
        since = (time.time() if now is None else now) - float(span[1]) * _SECONDS[span[2]]
    else:
        try:
            when = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise LuisyError(f"--since {text!r}: {_GIVE}") from None
        since = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
    try:  # the journal's days are dates: one before the year 1 is none
        _iso(since)
    except (ValueError, OverflowError, OSError):
        raise LuisyError(f"--since {text!r} goes back before the year 1: {_GIVE}") from None
    return since


_GIVE = "give a span such as 30m, 12h, 2d, 1w or a date such as 2026-12-01"


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="seconds")


def when(seconds: float | None) -> str:
    """A time for a table: ``2026-12-01 08:00:03`` (UTC)."""
    return "" if seconds is None else _iso(seconds)[:19].replace("T", " ")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _items(run: TaskRun) -> str:
    if not run.items:
        return ""
    if "folded" in run.items:  # a reduce
        return f"{run.items['folded']} folded, {run.items.get('unfolded', 0)} unfolded" + (
            " (all again)" if run.items.get("refolded") else "")
    text = f"{run.items.get('processed', 0)} processed, {run.items.get('failed', 0)} failed"
    return text + (f", {run.items['kept']} kept" if "kept" in run.items else "")


def table(runs: list[TaskRun], width: int = 50) -> str:
    """The runs as a fixed-width text table, newest first; the error text comes last, uncut."""
    header = ("started (UTC)", "duration", "state", "task", "host", "user", "pid", "items", "run", "error")
    rows = [header] + [
        (when(r.started), _duration(r.duration), r.state, cut(r.task, width), r.host, r.user, str(r.pid),
         _items(r), r.run[:8], r.error)
        for r in runs
    ]
    return text_table(rows)
