"""Map a directory task's ``process`` over input items through an executor (this process, a pool of
processes, or a Dask cluster).

Workers write their item files into the staging folder themselves and send back only metadata.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from luisy import config
from luisy.directory.target import DirectoryWriter
from luisy.errors import LuisyError
from luisy.executors import Executor, ItemStatus, Outcome, executor_for
from luisy.sources import SourceItem
from luisy.tracebacks import format_traceback

if TYPE_CHECKING:
    from luisy.interrupts import Stop


def process_one(task: Any, items: Sequence[SourceItem] | Mapping[int, SourceItem], index: int,
                writer: DirectoryWriter) -> Outcome:
    """Process and write ``items[index]``; exceptions become a ``FAIL`` outcome. Timed."""
    start = time.perf_counter()
    outcome = _process(task, items[index], index, writer)
    return dataclasses.replace(outcome, seconds=time.perf_counter() - start)


def _process(task: Any, item: SourceItem, index: int, writer: DirectoryWriter) -> Outcome:
    try:
        result = task.process(item.name, item.load())
        if result is None:
            return Outcome(ItemStatus.SKIP, index)
        return Outcome(ItemStatus.OK, index, writer.stage(item.name, result))
    except LuisyError as error:  # says what is wrong in its own words
        return Outcome(ItemStatus.FAIL, index, error=error.format_message())
    except Exception as error:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        return Outcome(ItemStatus.FAIL, index, error=detail, traceback=format_traceback(error))


@dataclass(frozen=True)
class ItemWork:
    """``work(index)`` processes and stages ``items[index]``. Picklable, for an executor that sends
    the work to other machines; :meth:`part` cuts it to the items of one chunk."""

    task: Any
    items: Sequence[SourceItem] | Mapping[int, SourceItem]
    writer: DirectoryWriter

    def __call__(self, index: int) -> Outcome:
        return process_one(self.task, self.items, index, self.writer)

    def part(self, indices: Sequence[int]) -> ItemWork:
        """The same work for ``indices`` only."""
        return ItemWork(self.task, {index: self.items[index] for index in indices}, self.writer)


def item_executor(task: Any, parallel: bool, count: int) -> Executor:
    """The executor for ``count`` items of ``task``: the Dask cluster the run or the task names,
    else its item processes; this process where the items cannot be ``parallel`` (an output in
    memory is written in this process)."""
    run = config.current()
    address = run.dask_scheduler_for(getattr(task, "dask_scheduler", None))
    if not parallel:
        return executor_for(1, count)
    if address:
        from luisy.executors.dask import DaskExecutor

        return DaskExecutor(address, owner=repr(task))
    return executor_for(run.processes_for(getattr(task, "processes", None)), count)


def outcomes(task: Any, items: Sequence[SourceItem], writer: DirectoryWriter,
             stop: Stop | None = None) -> Iterator[tuple[SourceItem, Outcome]]:
    """Yield ``(item, outcome)`` per item, in completion order; once ``stop`` is set, only for the
    items already begun."""
    executor = item_executor(task, writer.parallel, len(items))
    for outcome in executor.map(ItemWork(task, items, writer), len(items), stop):
        yield items[outcome.index], outcome


class Progress:
    """A progress bar on a terminal and the luigi task's progress and status message, about once
    a second; and what the run's pictures are drawn from: items done and failed over time, and
    how long items took."""

    def __init__(self, task: Any, total: int, interval: float = 1.0,
                 noted: Callable[[Any, dict[str, Any]], None] | None = None):
        """``noted(task, snapshot)`` is called at each report too, with :meth:`snapshot`."""
        from tqdm import tqdm

        self.task, self.total, self.interval, self.noted = task, total, interval, noted
        self.done = self.failed = 0
        self.start = self.last = time.monotonic()
        self.started = time.time()
        #: ``[seconds since the start, done, failed]`` at each report; halved when full.
        self.samples: list[list[float]] = [[0.0, 0, 0]]
        #: How many items took up to each of :data:`DURATION_BOUNDS` seconds (the last: longer).
        self.durations = [0] * (len(DURATION_BOUNDS) + 1)
        self.bar = tqdm(total=total, desc=str(task), unit="item", disable=None, leave=False)

    def advance(self, failed: bool = False, seconds: float | None = None) -> None:
        self.done += 1
        self.failed += failed
        if seconds is not None:
            self.durations[bisect.bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.bar.update(1)
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            self.report()

    def message(self) -> str:
        elapsed = time.monotonic() - self.start
        remaining = (self.total - self.done) * elapsed / self.done if self.done else float("nan")
        eta = f"{remaining:.0f}s" if self.done < self.total and self.done else "0s" if self.done else "?"
        return f"{self.done}/{self.total} items, {self.failed} failed, ETA {eta}"

    def report(self) -> None:
        report_status(self.task, self.message(), round(100 * self.done / self.total) if self.total else 100)
        self.samples.append([round(time.monotonic() - self.start, 3), self.done, self.failed])
        if len(self.samples) > MAX_SAMPLES:  # a long run keeps its whole course at a coarser step
            self.samples = [*self.samples[:-1:2], self.samples[-1]]
        if self.noted is not None:
            self.noted(self.task, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """Where the run is: items done, total and failed, when it started (epoch seconds), the
        samples, and the duration counts by :data:`DURATION_BOUNDS`."""
        return {"done": self.done, "total": self.total, "failed": self.failed, "started": self.started,
                "samples": self.samples, "durations": self.durations, "bounds": list(DURATION_BOUNDS)}

    def close(self) -> None:
        self.bar.close()
        self.report()


#: Upper bounds (seconds) of the item durations counted apart.
DURATION_BOUNDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
#: Samples of a run's course kept (one a second, then one every two seconds...).
MAX_SAMPLES = 600


def report_status(task: Any, message: str, percentage: int | None = None) -> None:
    """Set the luigi task's status message (and progress); luigi's worker provides the callbacks."""
    # Outside a luigi worker (task.run() called directly) the callbacks are None.
    if percentage is not None and callable(getattr(task, "set_progress_percentage", None)):
        task.set_progress_percentage(percentage)
    if callable(getattr(task, "set_status_message", None)):
        task.set_status_message(message)
