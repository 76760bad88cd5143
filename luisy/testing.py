"""Helpers for testing luisy pipelines: in-memory runs, assertions, and luisy 1.x helpers.

Nothing here changes state that outlives a call or a test: outputs, directory outputs and
fingerprint records live in a :class:`~luisy.storage.MemoryStorage` for the duration of
:meth:`LuisyTestCase.run_pipeline` (nothing touches the disk), and the working directory set by
the ``luisy_working_dir`` fixture is restored after the test.
"""

from __future__ import annotations

import copy
import os
import unittest
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import luigi
from luigi.execution_summary import LuigiRunResult, LuigiStatusCode

from luisy import luigi_adapter, storage
from luisy.config import set_working_dir
from luisy.directory.target import DirectoryTarget
from luisy.fingerprint.task import accept, is_external
from luisy.graph import upstream_first

__all__ = ["LuisyTestCase", "create_testing_config", "get_all_dependencies", "debug_run"]

Outputs = Sequence[tuple[luigi.Task, Any]] | None
_SUCCEEDED = (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)


class LuisyTestCase(unittest.TestCase):
    """A ``TestCase`` that runs pipelines with every output kept in memory.

    Directory outputs (``directory_output``, ``DirectoryTask``) are kept in memory too, with
    their manifest; their items are processed one by one in this process, whatever
    ``processes`` says. Their value here is a dict ``{item name: object}``, and
    ``existing_outputs`` give them as such a dict. Input folders (``directory_input``,
    ``make_directory_output``) are given as a dict or a list.
    """

    def run_pipeline(self, task: luigi.Task, existing_outputs: Outputs = None,
                     return_store: bool = False) -> Any:
        """Run ``task``; return its output (or ``{task: output}`` for every task with one).

        ``existing_outputs`` are ``(task, object)`` pairs treated as already written, so the
        tasks upstream of them do not run. A run that does not succeed fails the test, as does a
        root task without an output when its output is asked for.
        """
        run = self._execute(task, existing_outputs)
        if run.result.status not in _SUCCEEDED:
            self.fail(f"{task} did not complete:\n{run.result.summary_text}")
        if return_store:
            return run.outputs
        if not run.complete or task not in run.outputs:
            self.fail(f"{task} did not complete (it wrote no output):\n{run.result.summary_text}")
        return run.outputs[task]

    def get_execution_summary(self, task: luigi.Task, existing_outputs: Outputs = None) -> dict[str, set]:
        """luigi's summary dict (``completed``, ``failed``, ``still_pending_ext``...) of a run."""
        return luigi_adapter.task_sets(self._execute(task, existing_outputs).result)

    def assertSuccess(self, task: luigi.Task, existing_outputs: Outputs = None) -> None:  # noqa: N802
        """The run succeeds (tasks that failed and then succeeded on retry included)."""
        result = self._execute(task, existing_outputs).result
        self.assertIn(result.status, _SUCCEEDED, f"{task} did not succeed:\n{result.summary_text}")

    def assertFail(self, task: luigi.Task, existing_outputs: Outputs = None) -> None:  # noqa: N802
        """The run does not succeed: a task fails, or cannot run because an external input is missing."""
        result = self._execute(task, existing_outputs).result
        self.assertNotIn(result.status, _SUCCEEDED, f"{task}'s run succeeded:\n{result.summary_text}")

    def assertMissing(self, task: luigi.Task, existing_outputs: Outputs = None) -> None:  # noqa: N802
        """The run stops on a missing external input."""
        summary = self.get_execution_summary(task, existing_outputs)
        self.assertTrue(summary["still_pending_ext"], f"{task}'s run has no missing external input")

    @staticmethod
    def _execute(task: luigi.Task, existing_outputs: Outputs) -> _Run:
        with storage.in_memory() as memory:
            for given, obj in existing_outputs or ():
                output = given.output()
                if isinstance(output, DirectoryTarget):
                    with output.writer(given) as writer:
                        for name, item in dict(obj).items():
                            writer.write(name, item)
                else:
                    memory.objects[os.fspath(given.output().path)] = copy.deepcopy(obj)
                    if not is_external(given):
                        accept(given)  # its fingerprint is recorded, so it counts as complete
            # workers=1 runs every task in this thread, where the memory store is active.
            result = luigi.build([task], local_scheduler=True, workers=1, detailed_summary=True,
                                 no_lock=True, log_level="WARNING")
            return _Run(result, task.complete(), _collect_outputs(task, memory.objects))


class _Run(NamedTuple):
    result: LuigiRunResult
    complete: bool
    outputs: dict[luigi.Task, Any]


def _collect_outputs(root: luigi.Task, store: dict[str, Any]) -> dict[luigi.Task, Any]:
    """Every written output of the graph, read while the memory storage is still in force."""
    outputs: dict[luigi.Task, Any] = {}
    for task in get_all_dependencies(root):
        output = task.output()
        if isinstance(output, DirectoryTarget):
            if output.exists():
                outputs[task] = dict(output.items())
        elif _output_path(task) in store or (task is root and root.complete()):  # a WrapperTask reads its inputs
            outputs[task] = task.read() if hasattr(task, "read") else output.read()
    return outputs


def _output_path(task: luigi.Task) -> str | None:
    output = task.output()
    path = getattr(output, "path", None)
    return os.fspath(path) if path is not None else None


def create_testing_config(working_dir: str | os.PathLike[str]) -> None:
    """luisy 1.x: set the working directory for the current process."""
    set_working_dir(working_dir)


def get_all_dependencies(task: luigi.Task) -> set[luigi.Task]:
    """The task and every task upstream of it (static requirements)."""
    return set(upstream_first(task))


def debug_run(tasks: luigi.Task | Iterable[luigi.Task], return_summary: bool = True) -> dict[str, set] | LuigiRunResult:
    """luisy 1.x: run ``tasks`` and their requirements on luigi's local scheduler, in this process.

    Returns luigi's tasks by status (``result["completed"]``, ``result["already_done"]``,
    ``result["failed"]``...), or with ``return_summary=False`` luigi's ``LuigiRunResult``.
    """
    from luisy.execution import run

    result = run([tasks] if isinstance(tasks, luigi.Task) else list(tasks)).result
    return luigi_adapter.task_sets(result) if return_summary else result
