"""Every use of luigi's private names, in one place.

luisy needs a few things luigi computes but does not publish: the tasks of a build by status,
the error text its scheduler recorded, which tasks another worker is running, and the choices of
a parameter. Each is one function here, so that a luigi release that renames them breaks this
module alone; ``tests/test_luigi_adapter.py`` runs each against the installed luigi, and
:data:`CHECKED` names the luigi releases they were checked with (``setup.cfg`` allows those).
"""

from __future__ import annotations

import configparser
import sys
from dataclasses import dataclass
from typing import Any


def _import_luigi() -> configparser.Error | None:
    """Import luigi, which reads its configuration files as it is imported; the error of a file
    that cannot be parsed (an option given twice, no section header), if any.

    Such a file would make ``import luisy`` (and so every ``luisy`` command) a traceback; luigi
    is imported with an empty configuration instead, and luisy refuses to read any setting
    (:func:`unreadable_luigi_config`), so nothing runs with the settings half-read.
    """
    try:
        import luigi.configuration  # noqa: F401
    except configparser.Error as error:
        # The module survived the failed import, holding the half-read parser (its values still raw lists).
        parser = sys.modules["luigi.configuration.cfg_parser"].LuigiConfigParser
        parser._instance = parser()
        import luigi.configuration  # noqa: F401
        return error
    return None


#: Why luigi's configuration file could not be parsed; ``None`` if it could. luigi then runs with
#: an empty configuration, and luisy reads no setting (see :func:`luisy.config.unreadable_luigi_config`).
CONFIG_ERROR = _import_luigi()

import luigi  # noqa: E402 - after the configuration file was read safely above
import luigi.configuration  # noqa: E402
from luigi.execution_summary import LuigiRunResult, _summary_dict  # noqa: E402

#: The luigi releases (major.minor) whose private names this module was checked against.
CHECKED = ("3.5", "3.6", "3.7", "3.8")


def luigi_config() -> Any:
    """luigi's configuration parser (``[core]``, ``[luisy]``... from luigi.cfg and friends)."""
    return luigi.configuration.get_config()


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
