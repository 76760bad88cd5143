"""What ``luisy serve`` shows, as plain data: the pipeline with each task's state, a task's runs,
output and items, and what is running now. The pages and the JSON API both read these.

Everything here is read from what luisy writes (records, manifests, the run journal, progress
files); no task's ``run()`` or ``process()`` is called. What costs a listing of input folders
(the pipeline's states) is computed again only when the run journal changed.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, storage
from luisy.directory.manifest import Manifest
from luisy.directory.target import DirectoryTarget, publication
from luisy.errors import UnsafePathError
from luisy.fingerprint.task import is_external
from luisy.graph import upstream_first
from luisy.history import progress
from luisy.history.journal import journal_dir
from luisy.history.runs import RUNNING, TaskRun, runs_of
from luisy.history.show import Provenance, show
from luisy.items import STATES, ItemRow, items, window
from luisy.status import TaskStatus, status

__all__ = ["Pipeline", "TaskView", "item_page", "shown", "task_runs"]

#: Items per page of a task's item table.
PAGE_SIZE = 50


@dataclass
class TaskView:
    """One task of the pipeline as the page shows it."""

    task: luigi.Task
    #: ``complete``, ``stale`` (would run), ``running``, ``failed``, ``input``, ``missing``.
    state: str
    #: Why it would run (``luisy plan``'s first reason), or what its input lacks.
    reason: str
    row: TaskStatus
    depth: int = 0
    requires: list[str] = field(default_factory=list)
    #: Of a running directory task: items done, total and failed, from its progress file.
    progress: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.row.to_dict(), "family": self.task.get_task_family(), "state": self.state,
                "reason": self.reason, "depth": self.depth, "requires": self.requires, "progress": self.progress,
                "directory": _directory(self.task) is not None}


class Pipeline:
    """The graph of ``root`` in ``working_dir``, its states computed once per change of the run journal."""

    def __init__(self, root: luigi.Task, working_dir: Path) -> None:
        self.root, self.working_dir = root, working_dir
        self.tasks = upstream_first(root)
        self.by_id = {t.task_id: t for t in self.tasks}
        self._lock = threading.Lock()
        self._known: tuple[Any, list[TaskView]] | None = None
        self._manifests: dict[tuple[str, str], Manifest | None] = {}

    def find(self, name: str) -> luigi.Task:
        """The task of the graph with id, ``str()`` or family ``name`` (the first, upstream first)."""
        found = self.by_id.get(name) or next((t for t in self.tasks if str(t) == name), None) \
            or next((t for t in self.tasks if t.get_task_family() == name), None)
        if found is None:
            raise LookupError(f"no task {name!r} in the graph of {self.root}")
        return found

    def manifest(self, task: luigi.Task) -> Manifest | None:
        """The manifest of ``task``'s directory output, read once per publication: a million items
        take a second or more to read, and every page of its item table needs them."""
        with config.working_dir(self.working_dir):
            target = _directory(task)
            header = target.current_header() if target is not None else None
            if target is None or header is None:
                return None
            key = (task.task_id, publication(header))
            with self._lock:
                if key in self._manifests:
                    return self._manifests[key]
            manifest = target.current_manifest()
        if manifest is not None:
            manifest.items.names  # the whole table, in name order, once  # noqa: B018
        with self._lock:
            self._manifests = {k: v for k, v in self._manifests.items() if k[0] != task.task_id}
            self._manifests[key] = manifest
        return manifest

    def views(self) -> list[TaskView]:
        """Every task, upstream first, with its state; the running ones with their progress."""
        token = self._journal_token()
        with self._lock:
            if self._known is None or self._known[0] != token:
                self._known = (token, self._compute())
            views = self._known[1]
        for view in views:
            found = progress.read(self.working_dir, view.task.task_id) if view.state == RUNNING else None
            started = view.row.run.started if view.row.run is not None else None
            # A file an earlier run left says nothing of this one.
            view.progress = found if found is not None and started is not None and found["time"] >= started else None
        return views

    def _compute(self) -> list[TaskView]:
        with config.working_dir(self.working_dir):
            rows = status(self.root)
        depth: dict[str, int] = {}
        views = []
        for row in rows:  # upstream first: a task's requirements have their depth already
            required = [t.task_id for t in flatten(row.task.requires())]
            depth[row.task.task_id] = 1 + max((depth.get(r, 0) for r in required), default=-1)
            views.append(TaskView(row.task, *_state(row), row, depth[row.task.task_id], required))
        return views

    def _journal_token(self) -> Any:
        """What changes when the journal gets an event: the names, sizes and times of the files of
        its last two day folders (events go into the folder of the day their task run started)."""
        folder = journal_dir(self.working_dir)
        store = storage.for_path(self.working_dir)
        try:
            days = [name for name, is_folder in store.listdir(os.fspath(folder)) if is_folder][-2:]
            return tuple((day, name, store.token(os.fspath(folder / day / name))) for day in days
                         for name, is_folder in store.listdir(os.fspath(folder / day)) if not is_folder)
        except OSError:
            return None


def _state(row: TaskStatus) -> tuple[str, str]:
    if is_external(row.task):
        return ("input", "") if row.fingerprint == "input" else ("missing", row.fingerprint)
    if row.run is not None and row.run.state == RUNNING:
        return RUNNING, ""
    if row.complete:
        return "complete", ""
    if row.run is not None and row.run.state == "FAIL":
        return "failed", row.run.error
    return "stale", row.fingerprint


def _directory(task: luigi.Task) -> DirectoryTarget | None:
    return next((o for o in flatten(task.output()) if isinstance(o, DirectoryTarget)), None)


def task_runs(pipeline: Pipeline, task: luigi.Task, limit: int = 20) -> list[TaskRun]:
    """The task's last runs in the journal, newest first."""
    return list(reversed(runs_of(pipeline.working_dir, task.task_id)))[:limit]


@dataclass
class ItemPage:
    """One page of a directory task's item table."""

    rows: list[ItemRow]
    page: int
    more: bool
    query: str
    state: str


def item_page(pipeline: Pipeline, task: luigi.Task, query: str = "", state: str = "", page: int = 1) -> ItemPage:
    """Page ``page`` (from 1) of ``task``'s items whose name contains ``query``, in ``state``
    (one of :data:`luisy.items.STATES`; ``""``: any), in name order."""
    if state and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    page = max(1, page)
    with config.working_dir(pipeline.working_dir):
        # Without the input folder's listing (seconds at a million files): failed items name their input.
        manifest = pipeline.manifest(task)
        if not query and not state:  # any page of all the items, found by bisection
            chosen = window(task, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1, manifest)
        else:
            rows = items(task, (state,) if state else (), query, inputs=False, manifest=manifest)
            chosen = list(itertools.islice(rows, (page - 1) * PAGE_SIZE, page * PAGE_SIZE + 1))
    return ItemPage(chosen[:PAGE_SIZE], page, len(chosen) > PAGE_SIZE, query, state)


def shown(pipeline: Pipeline, path: str) -> Provenance:
    """``luisy show`` of ``path`` (relative to the working directory), which must lie inside it:
    no absolute path, no ``..``, no link that leads out."""
    if not path or "\x00" in path or os.path.isabs(path) or path.startswith(("/", "\\")):
        raise UnsafePathError(f"{path!r}: give a path relative to the working directory")
    parts = Path(path).parts
    if any(part in ("..", ".") for part in parts):
        raise UnsafePathError(f"{path!r}: '..' and '.' are not allowed")
    root = pipeline.working_dir
    target = root / path
    if storage.for_path(root) is storage.LOCAL:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
            raise UnsafePathError(f"{path!r} leads out of the working directory")
    with config.working_dir(root):
        return show(target)
