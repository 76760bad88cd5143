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

from luisy.directory.sources import pairs
from luisy.directory.target import DirectoryTarget
from luisy.fingerprint import records
from luisy.fingerprint.code import code_fingerprint
from luisy.fingerprint.content import noticing_touched
from luisy.fingerprint.task import current, is_external, recorded_dynamic
from luisy.parameters import recorded_params, significant_params
from luisy.paths import expected_at
from luisy.targets import scan_once

__all__ = ["Step", "plan", "reasons", "report", "as_json"]

NO_RECORD = "no fingerprint recorded (made by luisy 1.x or copied in? `luisy run --hash-update-mode` accepts it)"


@dataclass
class Step:
    """A task that would run, and why."""

    task: luigi.Task
    reasons: list[str] = field(default_factory=list)
    missing: bool = False  # an external input that does not exist: the run stops here

    def line(self) -> str:
        return f"{self.task}: {'; '.join(self.reasons)}"


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
            steps[task.task_id] = Step(task, ["missing input"], missing=True)
        else:
            steps[task.task_id] = Step(task, reasons(task) or ["not complete"])

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
        "steps": [{"task": str(step.task), "task_id": step.task.task_id, "reasons": step.reasons,
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


def reasons(task: luigi.Task) -> list[str]:
    """Why ``task`` is not complete (empty if it is)."""
    outputs = flatten(task.output())
    if outputs and not all(o.exists() for o in outputs):
        return ["no output", *_resume_note(task)]
    if any(isinstance(o, DirectoryTarget) for o in outputs):
        return _directory_reasons(task)
    if not outputs:  # a WrapperTask: nothing of its own to be out of date
        return [] if task.complete() else ["runs once its requirements are complete"]
    if not hasattr(task, "_luisy_output"):
        return [] if task.complete() else ["not complete"]
    record = records.lookup(task)
    if record is None:
        return [NO_RECORD]
    if not isinstance(record, dict):
        return ["fingerprint recorded by luisy 1.x (`luisy run --hash-update-mode` accepts the output)"]
    now = current(task)
    if record.get("fingerprint") == now.digest:
        return []
    found = _code_reasons(record, task)
    found += _changed("parameters changed", record.get("params", {}), now.params)
    old_upstream = record.get("upstream", {})
    changed = _differing(old_upstream, now.upstream)
    required = {t.task_id: t for t in flatten(task.requires()) + recorded_dynamic(task)}
    data = [str(required[k]) for k in changed if k in required and is_external(required[k])]
    other = [str(required[k]) if k in required else k for k in changed
             if not (k in required and is_external(required[k]))]
    if data:
        found.append("input data changed: " + ", ".join(data))
    if other:
        found.append("upstream changed: " + ", ".join(other))
    return found or ["fingerprint changed"]


def _code_reasons(record: dict, task: luigi.Task) -> list[str]:
    code = code_fingerprint(type(task))
    old = record.get("code", {})
    found = []
    changed = _differing(old, code.definitions)
    if changed:
        found.append("code changed: " + ", ".join(changed))
    found += _changed("versions changed", record.get("versions", {}), code.versions)
    return found


def _differing(old: dict, new: dict) -> list[str]:
    """Keys whose values differ, or that only one side has."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _changed(label: str, old: dict, new: dict) -> list[str]:
    keys = _differing(old, new)
    if not keys:
        return []
    return [f"{label}: " + ", ".join(f"{k} {old.get(k, '(none)')} → {new.get(k, '(none)')}" for k in keys)]


def _resume_note(task: luigi.Task, todo: Any = None) -> list[str]:
    """How many of the items to do an interrupted run of a directory task already made."""
    output = task.output()
    if not (isinstance(output, DirectoryTarget) and hasattr(task, "pending")):
        return []
    checkpointed = output.resumable(task)
    if not checkpointed or not all(target.exists() for target in flatten(task.input())):
        return []
    todo = task.pending().todo if todo is None else todo
    kept = sum(1 for name, fingerprint in pairs(todo)
               if name in checkpointed and checkpointed[name].source == fingerprint)
    return [f"resume: {kept} of {len(todo)} items kept from an interrupted run"] if kept else []


def _directory_reasons(task: luigi.Task) -> list[str]:
    if task.complete():  # from the manifest's first line: the item lists need not be read
        return []
    manifest = task.output().current_manifest()
    if manifest is None:
        return ["no output", *_resume_note(task)]
    found = []
    if manifest.code_fingerprint != task.code_fingerprint():
        record = records.lookup(task)
        found += (_code_reasons(record, task) if isinstance(record, dict) else []) or ["code changed"]
    found += _changed("parameters changed", recorded_params(manifest.params, task), significant_params(task))
    if found:
        return [*found, "every item is processed again"]
    # A missing input is luigi's to report; any other error listing the input is the user's to see.
    if all(target.exists() for target in flatten(task.input())):
        pending = task.pending()
        if pending.new or pending.changed or pending.removed:
            found.append(f"{pending.new} new, {pending.changed} changed, {pending.removed} removed items")
        found += _resume_note(task, pending.todo)
        if pending.retried:
            found.append(f"{pending.retried} failed items to retry")
    stale = [str(t) for t in flatten(task.requires()) if not is_external(t) and not t.complete()]
    if stale:
        found.append("upstream changed: " + ", ".join(stale))
    return found
