"""Where a pipeline stands (``luisy status``) and whether directory outputs are intact (``luisy verify``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, storage
from luisy.directory.target import DirectoryTarget
from luisy.fingerprint.task import is_external
from luisy.graph import upstream_first
from luisy.history.runs import TaskRun, last_runs, when
from luisy.paths import expected_at
from luisy.plan import reasons
from luisy.reasons import describe
from luisy.targets import scan_once
from luisy.texttable import cut, text_table

__all__ = ["TaskStatus", "status", "table", "as_json", "verify"]


@dataclass
class TaskStatus:
    """One row of ``luisy status``."""

    task: luigi.Task
    complete: bool
    items: int | None
    failed: int | None
    last_run: str
    fingerprint: str
    #: Items the last ``verify`` of the current publication found bad (``None``: not a directory task).
    bad: int | None = None
    #: Items an interrupted run checkpointed, which the next run keeps.
    resumable: int | None = None
    #: The task's last run in the run journal, if it has one.
    run: TaskRun | None = None

    @property
    def last_result(self) -> str:
        """How the last run ended: ``SUCCESS``, ``FAIL: first error line``, ``interrupted?``, ``running``."""
        if self.run is None:
            return ""
        return f"{self.run.state}: {self.run.error}" if self.run.error else self.run.state

    def to_dict(self) -> dict[str, Any]:
        """The row for ``--json``."""
        return {"task": str(self.task), "task_id": self.task.task_id, "complete": self.complete,
                "items": self.items, "failed": self.failed, "bad": self.bad, "resumable": self.resumable,
                "last_run": self.last_run, "last_result": self.last_result, "fingerprint": self.fingerprint,
                "run": None if self.run is None else self.run.to_dict()}


def as_json(rows: list[TaskStatus]) -> list[dict[str, Any]]:
    """The rows of :func:`status` as plain data."""
    return [row.to_dict() for row in rows]


def status(root: luigi.Task) -> list[TaskStatus]:
    """A row per task of ``root``'s graph, upstream first. The last run comes from the run
    journal; a task it has no run of shows when its output was written."""
    with scan_once():  # each input folder is listed once, not once per task downstream of it
        return _status(root)


def _status(root: luigi.Task) -> list[TaskStatus]:
    rows = []
    tasks = list(upstream_first(root))
    runs = last_runs(config.get_working_dir(), [t.task_id for t in tasks if not is_external(t)])
    for task in tasks:
        items = failed = bad = resumable = None
        last_run = ""
        for output in flatten(task.output()):
            if isinstance(output, DirectoryTarget):
                bad, resumable = len(output.verified_bad()), len(output.resumable(task))
            header = output.current_header() if isinstance(output, DirectoryTarget) else None
            if header is not None:
                items, failed, last_run = header.item_count, header.failed_count, header.finished
            elif getattr(output, "path", None) and (mtime := storage.active().modified(output.path)) is not None:
                last_run = dt.datetime.fromtimestamp(mtime, dt.timezone.utc).isoformat(timespec="seconds")
        if is_external(task):
            outputs = flatten(task.output())
            state = "input" if all(o.exists() for o in outputs) else f"missing input (expected at {expected_at(task)})"
        else:
            why = reasons(task)
            state = "current" if not why else describe(why[0])
        run = runs.get(task.task_id)
        last_run = when(run.started) if run is not None else last_run[:19].replace("T", " ")
        rows.append(TaskStatus(task, task.complete(), items, failed, last_run, state, bad, resumable, run))
    return rows


def table(rows: list[TaskStatus], width: int = 60) -> str:
    """The rows as a fixed-width text table; ``bad`` and ``resumable`` are empty when zero."""
    header = ("task", "complete", "items", "failed", "bad", "resumable", "last run (UTC)", "last result",
              "fingerprint")
    cells = [header] + [
        (cut(str(r.task), width), "yes" if r.complete else "no", "" if r.items is None else str(r.items),
         "" if r.failed is None else str(r.failed), str(r.bad or ""), str(r.resumable or ""), r.last_run,
         cut(r.last_result, width), r.fingerprint)  # last, uncut: it may name where a missing input is expected
        for r in rows
    ]
    return text_table(cells)


def verify(root: luigi.Task, repair: bool = False) -> tuple[int, list[str]]:
    """Re-check every directory output of the graph against its manifest.

    Returns the number of items checked and one line per problem: a corrupt manifest, an item
    file missing, not a regular file, of the wrong size or checksum, or outside the folder, files
    in the folder that the manifest does not account for (left by an interrupted publish), and a
    lock file beside it that is a folder. With ``repair``, bad items are dropped from their
    manifest (and their files, or whatever is in their place, deleted), stray files deleted, a
    corrupt manifest removed, and lock folders removed, so that the next run makes exactly those
    items again (and whatever is downstream of them). Without it, the bad items are noted for
    ``luisy status``.
    """
    checked, problems = 0, list[str]()
    for task in upstream_first(root):
        for output in flatten(task.output()):
            if not isinstance(output, DirectoryTarget):
                continue
            what = output.place.blocked()
            if what is not None:
                problems.append(f"{task}: {output.folder} is {what}, not a folder: the next run replaces it")
                continue
            locks = output.lock_problems()
            problems.extend(f"{task}: {line}" for line in locks)
            if repair and locks:
                output.repair()
            corrupt = output.problem()
            if corrupt is not None:
                problems.append(f"{task}: {corrupt}")
                if repair:
                    output.repair(corrupt=True)
                continue
            header = output.current_header()  # before checking: a publish meanwhile makes a new one
            if header is None:
                continue
            manifest = output.manifest
            checked += len(manifest.items)
            bad, strays = output.place.check(manifest)
            problems.extend(f"{task}: {line}" for line in [*bad.values(), *strays.values()])
            if repair and (bad or strays):
                output.repair(bad, strays, checked=header)
            output.note_verified({} if repair else bad, None if repair else header)
    return checked, problems
