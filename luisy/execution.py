"""Run tasks through luigi and summarise what happened. The CLI calls this; it never calls the CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.execution_summary import LuigiRunResult, _summary_dict
from luigi.task import flatten

from luisy import config
from luisy.targets import scan_once


def build(
    tasks: luigi.Task | Iterable[luigi.Task],
    workers: int = 1,
    local_scheduler: bool = True,
    scheduler_url: str | None = None,
    working_dir: str | os.PathLike[str] | None = None,
    processes: int | None = None,
    detailed_summary: bool = False,
    **options: Any,
) -> bool | LuigiRunResult:
    """Run ``tasks`` and everything they require (luisy 1.x's ``luisy.cli.build``).

    ``scheduler_url`` selects luigi's central scheduler and wins over ``local_scheduler``;
    ``working_dir`` and ``processes`` (directory tasks' item processes, see
    :func:`luisy.config.resolve_processes`) apply for this call only. Other keywords are luigi's ``[core]`` options
    (``log_level``, ``parallel_scheduling``...). Returns luigi's success flag, or its
    ``LuigiRunResult`` with ``detailed_summary=True``.
    """
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)
    if scheduler_url:
        options.update(scheduler_url=scheduler_url, local_scheduler=False)
    else:
        options["local_scheduler"] = local_scheduler
    root = config.working_dir(working_dir) if working_dir is not None else nullcontext()
    with root, config.processes(processes), scan_once():
        result = luigi.build(task_list, workers=workers, detailed_summary=True, **options)
    return result if detailed_summary else result.scheduling_succeeded


@dataclass
class RunSummary:
    """What a run did, in the terms a user cares about."""

    tasks: list[luigi.Task]
    ran: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every requested task is complete now."""
        return all(task.complete() for task in self.tasks)

    def lines(self) -> list[str]:
        """The summary, a few lines long; long lists are cut."""
        out = [f"{'complete' if self.complete else 'NOT complete'}: "
               + ", ".join(str(t) for t in self.tasks)]
        for label, names in (("ran", self.ran), ("already done", self.already_done)):
            if names:
                out.append(f"  {label}: {len(names)} task(s)")
        for name, error in self.failed[:5]:
            out.append(f"  failed: {name}: {error}")
        out.extend(f"  missing input: {name}" for name in self.missing[:5])
        if self.not_run:
            out.append(f"  not run (upstream failed or missing): {len(self.not_run)} task(s)")
        if self.complete:
            out.extend(f"  output: {path}" for path in _output_paths(self.tasks)[:10])
        return out


def _output_paths(tasks: Iterable[luigi.Task]) -> list[str]:
    """Where the tasks' results are; a task without outputs (a WrapperTask) shows its requirements'."""
    paths: list[str] = []
    for task in tasks:
        outputs = flatten(task.output())
        if outputs:
            paths.extend(str(o.path) for o in outputs if hasattr(o, "path"))
        else:
            paths.extend(_output_paths(flatten(task.requires())))
    return paths


def run(tasks: luigi.Task | Iterable[luigi.Task], **options: Any) -> RunSummary:
    """:func:`build`, then a :class:`RunSummary` of the run."""
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)
    result = build(task_list, detailed_summary=True, **options)
    return summarize(task_list, result)


def summarize(tasks: list[luigi.Task], result: LuigiRunResult) -> RunSummary:
    """Turn luigi's per-status task sets into a :class:`RunSummary`."""
    sets = _summary_dict(result.worker)
    summary = RunSummary(tasks)
    summary.ran = sorted(map(str, sets["completed"]))
    summary.already_done = sorted(map(str, sets["already_done"]))
    summary.failed = [(str(t), _first_error_line(result, t)) for t in sorted(sets["failed"], key=str)]
    summary.missing = sorted(map(str, sets["still_pending_ext"]))
    summary.not_run = sorted(map(str, sets["upstream_failure"] | sets["upstream_missing_dependency"]))
    return summary


def _first_error_line(result: LuigiRunResult, task: luigi.Task) -> str:
    """The exception line of the task's traceback, as the scheduler recorded it."""
    try:
        error = result.worker._scheduler.fetch_error(task.task_id).get("error") or ""
    except Exception:  # the scheduler may be gone; the summary still names the task
        return "(error text unavailable)"
    try:
        error = json.loads(error)  # luigi's worker sends the explanation JSON-encoded
    except ValueError:
        pass
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no error text)"
