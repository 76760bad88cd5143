"""What happens around a luisy task's ``run()``: a ``START`` in the run journal, staged writes,
then the fingerprint record (published together; Ctrl-C waits for both), then ``SUCCESS`` — or
``FAIL`` with the error's first line, also when ``run()`` returned without writing its output."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, storage
from luisy.atomic import is_staging, staged
from luisy.directory.target import DirectoryTarget
from luisy.errors import OutputNotWrittenError
from luisy.fingerprint.task import record_success
from luisy.history import journal
from luisy.history.provenance import describe, outputs_of


def recording_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``run``: writes are published when it returns, then its fingerprint is recorded.

    Generator runs (luigi's dynamic dependencies) are wrapped too; the requirements they yield
    are recorded with the fingerprint. A nested call (``super().run()``) leaves both to the outer one.
    """
    if inspect.isgeneratorfunction(run):
        @functools.wraps(run)
        def run_generator(self: luigi.Task, *args: Any, **kwargs: Any) -> Any:
            if is_staging():
                return (yield from run(self, *args, **kwargs))
            dynamic: list[luigi.Task] = []
            make_output_folders(self)
            with config.scope(task=config.TaskScope()), journaled(self) as written_by, \
                    staged(then=lambda: _finish(self, dynamic, written_by)):
                result = yield from _collect(run(self, *args, **kwargs), dynamic)
            return result

        run_generator.__luisy_staged__ = True  # type: ignore[attr-defined]
        return run_generator

    @functools.wraps(run)
    def run_staged(self: luigi.Task, *args: Any, **kwargs: Any) -> Any:
        if is_staging():
            return run(self, *args, **kwargs)
        make_output_folders(self)
        with config.scope(task=config.TaskScope()), journaled(self) as written_by, \
                staged(then=lambda: _finish(self, [], written_by)):
            result = run(self, *args, **kwargs)
        return result

    run_staged.__luisy_staged__ = True  # type: ignore[attr-defined]
    return run_staged


def _finish(task: luigi.Task, dynamic: list[luigi.Task], written_by: dict[str, Any] | None) -> None:
    """After the writes are published: check that the outputs exist, then record the fingerprint."""
    check_written(task)
    record_success(task, dynamic, describe(task, written_by))


def check_written(task: luigi.Task) -> None:
    """Raise :class:`OutputNotWrittenError` if one of ``task``'s outputs does not exist.

    luigi counts a ``run()`` that returns as a success even when it wrote nothing; the build then
    merely ends incomplete, with no reason given and the journal saying ``SUCCESS``. Outputs in
    memory (``LuisyTestCase``) are not checked: there, as in luisy 1.x, a task that writes nothing
    still lets ``run_pipeline(..., return_store=True)`` return what the others wrote.
    """
    missing = storage.active().unwritten(flatten(task.output()))
    if missing:
        raise OutputNotWrittenError(f"{task}.run() finished without writing its output ({', '.join(missing)})"
                                    + getattr(task, "_no_output_hint", str)())


def no_run(self: luigi.Task) -> None:
    """The ``run()`` of a luisy task that defines none: it writes nothing, so the task fails, saying so."""


no_run.__luisy_default__ = True  # type: ignore[attr-defined]


@contextmanager
def journaled(task: luigi.Task) -> Iterator[dict[str, Any]]:
    """Inside the block the task runs: ``START`` before, ``SUCCESS`` or ``FAIL`` after, in the run
    journal of the working directory. Yields what the fingerprint record says about the run."""
    task_run = journal.start(config.get_working_dir(), config.current().id, task.task_id, str(task),
                             task.get_task_family(), outputs_of(task))
    begun = task_run.start
    written_by = {"run": begun.run, "id": begun.id, "host": begun.host, "user": begun.user,
                  "started": begun.started}
    try:
        with journal.noting(task_run):
            yield written_by
    except BaseException as error:
        task_run.end(error)
        raise
    task_run.end(None, _item_counts(task))


def _item_counts(task: luigi.Task) -> dict[str, int] | None:
    """A directory task's counts from its manifest, where its run did not note them."""
    outputs = [o for o in flatten(task.output()) if isinstance(o, DirectoryTarget)]
    header = outputs[0].current_header() if outputs else None
    return None if header is None else {"processed": header.processed, "failed": header.failed_count}


def make_output_folders(task: luigi.Task) -> None:
    """Create the folders the task's outputs go into: luisy 1.x made them when ``output()`` was
    called, and 1.x code writes files of its own into ``get_outdir()`` during ``run()``."""
    where = storage.active()
    for output in flatten(task.output()):
        path = getattr(output, "path", None)
        if path:
            where.make_folder(os.path.dirname(os.path.abspath(path)))


def _collect(generator: Generator[Any, Any, Any], sink: list[luigi.Task]) -> Generator[Any, Any, Any]:
    """Pass a run generator's yields and sends through, noting the tasks it yields."""
    value = None
    while True:
        try:
            required = generator.send(value)
        except StopIteration as stop:
            return stop.value
        sink.extend(flatten(required))
        value = yield required
