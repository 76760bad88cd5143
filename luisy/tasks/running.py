"""What happens around a luisy task's ``run()``: staged writes, then the fingerprint record
(published together; Ctrl-C waits for both)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Generator
from typing import Any

import luigi
from luigi.task import flatten

from luisy import storage
from luisy.atomic import is_staging, staged
from luisy.fingerprint.task import record_success


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
            with staged(then=lambda: record_success(self, dynamic)):
                result = yield from _collect(run(self, *args, **kwargs), dynamic)
            return result

        run_generator.__luisy_staged__ = True
        return run_generator

    @functools.wraps(run)
    def run_staged(self: luigi.Task, *args: Any, **kwargs: Any) -> Any:
        if is_staging():
            return run(self, *args, **kwargs)
        make_output_folders(self)
        with staged(then=lambda: record_success(self, [])):
            result = run(self, *args, **kwargs)
        return result

    run_staged.__luisy_staged__ = True
    return run_staged


def make_output_folders(task: luigi.Task) -> None:
    """Create the folders the task's outputs go into: luisy 1.x made them when ``output()`` was
    called, and 1.x code writes files of its own into ``get_outdir()`` during ``run()``."""
    if not storage.active().holds_files:
        return
    for output in flatten(task.output()):
        path = getattr(output, "path", None)
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


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
