"""Every use of luigi's private names, in one place.

luisy needs a few things luigi computes but does not publish: the tasks of a build by status,
the error text its scheduler recorded, which tasks another worker is running, and the choices of
a parameter. Each is one function here, so that a luigi release that renames them breaks this
module alone; ``tests/test_luigi_adapter.py`` runs each against the installed luigi, and
:data:`CHECKED` names the luigi releases they were checked with (``setup.cfg`` allows those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import luigi
from luigi.execution_summary import LuigiRunResult, _summary_dict

#: The luigi releases (major.minor) whose private names this module was checked against.
CHECKED = ("3.5", "3.6", "3.7", "3.8")


def task_sets(result: LuigiRunResult) -> dict[str, set[luigi.Task]]:
    """The build's tasks by what became of them: ``completed``, ``already_done``, ``failed``,
    ``scheduling_error``, ``still_pending_ext``, ``upstream_failure``, ``not_run``..."""
    sets: dict[str, set[luigi.Task]] = _summary_dict(result.worker)
    return sets


def scheduler_error(result: LuigiRunResult, task: luigi.Task) -> str:
    """The error text the build's scheduler recorded for ``task`` (``""`` if none); raises if the
    scheduler cannot be asked."""
    return result.worker._scheduler.fetch_error(task.task_id).get("error") or ""


@dataclass(frozen=True)
class Elsewhere:
    """A task of the build that another worker was running when the build ended."""

    task: luigi.Task
    pid: Any
    host: Any


def run_elsewhere(result: LuigiRunResult) -> list[Elsewhere]:
    """The build's tasks that other workers were running, as the scheduler last said."""
    worker = result.worker
    last = next((r for r in reversed(worker._get_work_response_history) if r["task_id"] is None), None)
    found = []
    for running in last["running_tasks"] if last is not None else ():
        task = worker._scheduled_tasks.get(running["task_id"])
        if task is not None and running["worker"] != worker._id:
            found.append(Elsewhere(task, running.get("pid", "?"), running.get("host", "?")))
    return found


def done_in_scheduler(result: LuigiRunResult, task: luigi.Task) -> bool:
    """Whether the build's scheduler lists ``task`` as done; ``False`` if it cannot be asked."""
    try:
        done = result.worker._scheduler.task_list(status="DONE", upstream_status="", limit=False,
                                                  search=task.get_task_family())
    except Exception:  # the scheduler is gone
        return False
    return task.task_id in done


def choices(param: luigi.Parameter) -> list[str]:
    """What a ``ChoiceParameter`` or ``EnumParameter`` accepts, in a stable order; ``[]`` for others."""
    if isinstance(param, luigi.EnumParameter):
        return [member.name for member in param._enum]
    return sorted(map(str, getattr(param, "_choices", None) or ()))  # luigi keeps a set: no order of its own
