"""What a run would do, and why (``luisy plan``, ``luisy run --dry-run``), and hash update mode.

The plan walks the graph the way luigi's scheduler does: a complete task ends the walk on its
branch; an incomplete one is listed with its reasons and its requirements are visited. Nothing
is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.task import flatten

from luisy.fingerprint.code import code_fingerprint
from luisy.fingerprint.content import noticing_touched
from luisy.fingerprint.task import is_external
from luisy.paths import expected_at
from luisy.reasons import Kind, Reason, described
from luisy.targets import scan_once

__all__ = ["Step", "plan", "reasons", "report", "as_json"]

@dataclass
class Step:
    """A task that would run, and why."""

    task: luigi.Task
    reasons: list[Reason] = field(default_factory=list)
    missing: bool = False  # an external input that does not exist: the run stops here

    def line(self) -> str:
        return f"{self.task}: {'; '.join(described(self.reasons))}"


def plan(root: luigi.Task) -> list[Step]:
    """The tasks a run of ``root`` would run (upstream first), each with its reasons."""
    return _plan(root)[0]


def _plan(root: luigi.Task) -> tuple[list[Step], list[str]]:
    """:func:`plan`, and the input files found touched with their content unchanged."""
    steps: dict[str, Step] = {}
    seen: set[str] = set()

    def visit(task: luigi.Task) -> None:
        if task.task_id in seen:
            return
        seen.add(task.task_id)
        if task.complete():
            return
        for required in flatten(task.requires()):
            visit(required)
        if is_external(task):
            steps[task.task_id] = Step(task, [Reason(Kind.MISSING_INPUT)], missing=True)
        else:
            steps[task.task_id] = Step(task, reasons(task) or [Reason(Kind.NOT_COMPLETE)])

    with scan_once(), noticing_touched() as touched:
        visit(root)
    return list(steps.values()), [f"content unchanged (touched only): {len(files)} file(s) in {_shown(folder)}"
                                  for folder, files in sorted(touched.items())]


def _shown(path: str) -> str:
    """``path`` relative to the current directory if it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def report(root: luigi.Task) -> list[str]:
    """The plan of ``root`` as the lines ``luisy plan`` prints."""
    steps, touched = _plan(root)
    if not steps:
        return [f"nothing to run: {root} is complete", *touched]
    runnable = [step for step in steps if not step.missing]
    missing = [f"missing input: {step.task} (expected at {expected_at(step.task)})" for step in steps if step.missing]
    head = [f"{len(runnable)} task(s) would run, upstream first:"] if runnable else []
    return [*head, *(f"  {step.line()}" for step in runnable), *missing, *touched,
            *(f"note: {note}" for note in notes(runnable))]


def as_json(root: luigi.Task) -> dict[str, Any]:
    """The plan of ``root`` as plain data (``luisy plan --json``)."""
    steps, touched = _plan(root)
    runnable = [step for step in steps if not step.missing]
    return {
        "task": str(root),
        "complete": not steps,
        "steps": [{"task": str(step.task), "task_id": step.task.task_id,
                   "reasons": [reason.to_dict() for reason in step.reasons],
                   "missing": step.missing, **({"expected_at": str(expected_at(step.task))} if step.missing else {})}
                  for step in steps],
        "touched": touched,
        "notes": notes(runnable),
    }


def notes(steps: list[Step]) -> list[str]:
    """What the code fingerprints of the planned tasks could not analyse, once each."""
    found: dict[str, None] = {}
    for step in steps:
        found.update(dict.fromkeys(code_fingerprint(type(step.task)).notes))
    return list(found)


def reasons(task: luigi.Task) -> list[Reason]:
    """Why ``task`` would run, every reason in detail (empty if it is complete): the task's own
    ``why(detail=True)``, which its ``complete()`` asks without the detail."""
    outputs = flatten(task.output())
    if not outputs:  # a WrapperTask: nothing of its own to be out of date
        return [] if task.complete() else [Reason(Kind.REQUIREMENTS)]
    if hasattr(task, "why"):
        return task.why(detail=True)
    if not all(o.exists() for o in outputs):
        return [Reason(Kind.NO_OUTPUT)]
    return [] if task.complete() else [Reason(Kind.NOT_COMPLETE)]
