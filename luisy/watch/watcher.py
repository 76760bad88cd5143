"""Hot folders: run a task whenever new or changed input items have settled, until stopped.

The watcher looks at every input folder of the task's graph (``directory_input``,
``make_directory_output``): a listing made as a directory task makes it, so the listing is the
one source of truth, and file events (:mod:`luisy.watch.wakeup`) only make the next look come sooner.
An item has *settled* when its fingerprint has not changed for the settle time
(:mod:`luisy.watch.settling`). Whenever the settled items differ from those the previous run was
given, the watcher runs the task through :func:`luisy.execution.run` with those items as the
run's ``settled`` setting (:class:`luisy.config.Run`): directory tasks hold back every item not
among them — neither processed nor counted as removed — so a file still being written never
reaches ``process``. Failed items are not retried until their input changes again.
"""

from __future__ import annotations

import enum
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, urls
from luisy.directory.inputs import ignore_rule
from luisy.errors import LuisyError, NoFolderInput
from luisy.execution import HELD_BACK, RunSummary
from luisy.execution import run as run_tasks
from luisy.fingerprint.content import keeping_digests
from luisy.fingerprint.task import is_external
from luisy.graph import upstream_first
from luisy.interrupts import Stop, signal_name, stop_on_signals
from luisy.targets import DirectoryInputTarget
from luisy.tasks.directory import DirectoryTask
from luisy.watch.settling import Changes, Observation, Settling, changes
from luisy.watch.wakeup import Wakeup

__all__ = ["Batch", "Clock", "Pause", "WatchResult", "Watcher", "watch", "watched_folders"]

logger = logging.getLogger("luisy")

#: At most this share of one core's time goes to rescanning folders when nothing happens.
IDLE_SHARE = 1 / 30
#: Seconds before a run the central scheduler kept back is tried again.
RETRY_SECONDS = 2.0
#: The longest wait before a run that failed for a reason outside the items is tried again.
MAX_RETRY_SECONDS = 60.0


@dataclass
class Batch:
    """One run of the watched task, and what it did."""

    changes: Changes
    seconds: float
    #: Items processed (without failing) and failed in this run by the directory tasks that read the
    #: watched folders; items an interrupted run had finished count as processed.
    processed: int = 0
    failed: int = 0
    #: Families of the tasks that ran, upstream first.
    ran: list[str] = field(default_factory=list)
    #: Why the run failed (a task failed, an input is missing...); ``None`` if it did not.
    error: str | None = None
    #: The signal that stopped the run; ``None`` if none did.
    interrupted: int | None = None
    #: Whether the task was complete at the end with no failed item (what ``luisy run`` exits 0 for).
    ok: bool = False
    noun: str = "files"
    #: Nothing ran and nothing failed: a central scheduler kept the tasks back (luigid ignores a task
    #: made pending again within ``[scheduler] stable_done_cooldown_secs`` of being done, or another
    #: worker runs it); the watcher tries again.
    deferred: bool = False
    #: The run failed for a reason outside the items (an unreachable scheduler or cluster): the same
    #: items are run again later, not only once their files change.
    again: bool = False

    def line(self) -> str:
        """The batch in one line: ``+12 files → 12 processed, 0 failed in 0.41 s (Segmented, FeatureTable)``."""
        counts = []
        if self.changes.new + self.changes.changed or not self.changes.removed:
            counts.append(f"+{self.changes.new + self.changes.changed}")
        if self.changes.removed:
            counts.append(f"-{self.changes.removed}")
        head = f"{' '.join(counts)} {self.noun} →"
        if self.interrupted is not None:
            return (f"{head} stopped ({signal_name(self.interrupted)}) after {self.seconds:.2f} s: finished items "
                    "are kept, the next start goes on from there")
        tail = f" ({', '.join(self.ran)})" if self.ran else ""
        done = f"{self.processed} processed, {self.failed} failed in {self.seconds:.2f} s{tail}"
        if self.error is not None:
            return f"{head} {done}; the run FAILED: {self.error}; watching on"
        return f"{head} {done}"


@dataclass
class WatchResult:
    """What a watch did: its batches, and the signal that ended it."""

    batches: list[Batch] = field(default_factory=list)
    signal: int | None = None

    @property
    def ok(self) -> bool:
        """Stopped by a signal, or the last batch left the task complete without failed items."""
        return self.signal is not None or bool(self.batches) and self.batches[-1].ok


def watched_folders(task: luigi.Task) -> list[DirectoryInputTarget]:
    """The input folders of ``task``'s graph: the outputs of its external tasks that are folders read
    item by item (``directory_input``, ``make_directory_output``), each once."""
    found: dict[tuple[Any, ...], DirectoryInputTarget] = {}
    for upstream in upstream_first(task):
        if is_external(upstream):
            for output in flatten(upstream.output()):
                if isinstance(output, DirectoryInputTarget):  # two patterns in one folder: two inputs
                    found.setdefault(output.selection(), output)
    return list(found.values())


class Clock:
    """Where a :class:`Watcher`'s time comes from; tests give it one they move forward themselves."""

    def monotonic(self) -> float:
        return time.monotonic()

    def process_time(self) -> float:
        """CPU seconds of this process: rescans may use :data:`IDLE_SHARE` of one core."""
        return time.process_time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Next(enum.Enum):
    AGAIN = "scan again at once"
    STOP = "stop watching"


@dataclass(frozen=True)
class Pause:
    """How long to wait before the next scan; a file event ends the wait early."""

    seconds: float
    #: When the scan before the pause ended, and the CPU seconds it took (for pacing bursts of events).
    scanned: float
    scan_cost: float


class Watcher:
    """The watch loop of :func:`watch` as steps: :meth:`scan` the folders, :meth:`decide` whether to
    run, :meth:`run` the task over the settled items, :meth:`wait` for the next scan."""

    def __init__(self, task: luigi.Task, *, settle: float = 2.0, interval: float = 1.0,
                 processes: int | None = None, scheduler_url: str | None = None, max_runs: int | None = None,
                 once: bool = False, report: Callable[[str], Any] = logger.warning, clock: Clock | None = None,
                 **options: Any) -> None:
        self.folders = watched_folders(task)
        if not self.folders:
            raise NoFolderInput(f"{task!r}: nothing to watch: its graph has no input folder "
                                "(directory_input or make_directory_output)")
        self.task, self.interval, self.max_runs, self.once, self.report = task, interval, max_runs, once, report
        self.clock = clock or Clock()
        self.run_options: dict[str, Any] = dict(options, processes=processes, scheduler_url=scheduler_url)
        self.states = {f.selection(): Settling(0.0 if f.marker is not None else settle) for f in self.folders}
        #: The items the last run was given (by folder selection): what later scans are compared with.
        self.given: dict[tuple[Any, ...], dict[str, str]] = {key: {} for key in self.states}
        graph = upstream_first(task)
        self.first_stage = [t for t in graph if isinstance(t, DirectoryTask) and any(
            isinstance(o, DirectoryInputTarget) and o.selection() in self.states for o in flatten(t.input()))]
        self.families = {str(t): t.get_task_family() for t in graph if flatten(t.output())}
        self.noun = "folders" if all(f.folders for f in self.folders) else "files"
        self.result = WatchResult()
        self.problems: dict[str, str] = {}
        #: A central scheduler kept the last run back; ``retry_at``: when to try again.
        self.deferred, self.retry_at, self.failures = False, 0.0, 0
        self.wakeup = Wakeup(_wakeup_folders(self.folders))
        if not self.wakeup.folders:
            how = "a rescan (an object store sends no file events)"
        elif self.wakeup.events:
            how = "file events and a rescan"
        else:
            how = "a rescan (install watchdog, the `watch` extra, to react to file events)"
        where = ", ".join(dict.fromkeys(f.path for f in self.folders))
        report(f"watching {where} for {task}: items settle after {settle:g} s; {how} every {interval:g} s or more")

    def scan(self) -> dict[tuple[Any, ...], Observation]:
        """Observe every readable folder (by selection); a folder that cannot be read is reported once."""
        seen: dict[tuple[Any, ...], Observation] = {}
        started = self.clock.monotonic()
        for folder in self.folders:
            try:
                with keeping_digests():  # a file is hashed once, not on every rescan
                    listed = folder.listing()
            except (FileNotFoundError, LuisyError) as error:  # not a reason to stop watching
                problem = error.format_message() if isinstance(error, LuisyError) else \
                    f"waiting for {folder.path} to appear"
                if self.problems.get(folder.path) != problem:
                    self.report(problem)
                    self.problems[folder.path] = problem
                continue
            self.problems.pop(folder.path, None)
            seen[folder.selection()] = self.states[folder.selection()].observe(
                zip(listed.names, listed.fingerprints, strict=True), started)
        self.wakeup.watch_new_folders()
        return seen

    def decide(self, seen: dict[tuple[Any, ...], Observation]) -> Changes | None:
        """The changes to run the task for now; ``None`` to wait (a folder unread, nothing settled
        that the last run was not given, or a retry not due yet)."""
        if len(seen) < len(self.folders):
            return None
        found = sum((changes(self.given[key], obs) for key, obs in seen.items()), Changes())
        unsettled = sum(obs.pending for obs in seen.values())
        ready = (not unsettled and not self.result.batches) if self.once else bool(found)
        return found if ready and self.clock.monotonic() >= self.retry_at else None

    def run(self, seen: dict[tuple[Any, ...], Observation], found: Changes) -> _Next:
        """Run the task over the settled items and report the run in one line."""
        settled = {key: obs.settled for key, obs in seen.items()}
        batch = _run_batch(self.task, settled, found, self.first_stage, self.families, self.noun, self.run_options)
        if batch.deferred:
            if not self.deferred:
                self.report(f"the central scheduler has not handed out the tasks ({HELD_BACK}); trying again")
            self.deferred = True
            self.retry_at = self.clock.monotonic() + max(self.interval, RETRY_SECONDS)
            return _Next.AGAIN
        self.deferred = False
        self.result.batches.append(batch)
        self.report(batch.line())
        if batch.again:  # not the items' fault: the same ones again, less and less often
            self.failures += 1
            self.retry_at = self.clock.monotonic() + min(MAX_RETRY_SECONDS, RETRY_SECONDS * 2 ** self.failures)
        else:
            self.failures, self.given = 0, settled
        if batch.interrupted is not None:
            self.result.signal = batch.interrupted
            return _Next.STOP
        if self.once or (self.max_runs is not None and len(self.result.batches) >= self.max_runs):
            return _Next.STOP
        return _Next.AGAIN  # items may have settled meanwhile

    def step(self) -> _Next | Pause:
        """One scan, and a run if one is due; then what to do next."""
        cpu = self.clock.process_time()
        seen = self.scan()
        scanned, scan_cost = self.clock.monotonic(), self.clock.process_time() - cpu  # a share of one core
        found = self.decide(seen)
        if found is not None:
            return self.run(seen, found)
        dues = [obs.due for obs in seen.values() if obs.due is not None]
        if self.deferred or self.failures:
            dues.append(self.retry_at)
        timeout = max(self.interval, scan_cost / IDLE_SHARE)
        if dues:
            timeout = min(timeout, min(dues) - self.clock.monotonic())
        return Pause(timeout, scanned, scan_cost)

    def wait(self, pause: Pause, stop: Stop) -> None:
        """Wait for the pause, or until a file event; a burst of events is let pass first."""
        if self.wakeup.wait(pause.seconds) and not stop:
            # Keep rescans to a fifth of the time.
            self.clock.sleep(max(0.05, 4 * pause.scan_cost - (self.clock.monotonic() - pause.scanned)))

    def close(self) -> None:
        self.wakeup.close()


def watch(task: luigi.Task, *, report: Callable[[str], Any] = logger.warning, **options: Any) -> WatchResult:
    """Run ``task`` whenever new or changed items in its input folders have settled; until SIGINT
    or SIGTERM, ``max_runs`` runs, or with ``once`` one run as soon as nothing is left to settle.

    An item has settled when its size and modification time (of every file in it, for
    ``items="folders"``) have not changed for ``settle`` seconds; dataset folders with a
    ``marker`` settle as soon as the marker is there. Folders are rescanned every ``interval``
    seconds (or on a file event, with ``watchdog``), but using no more than 1/30 of one core while
    nothing happens. ``report`` gets one line per run; the keywords are :class:`Watcher`'s
    (``settle``, ``interval``, ``processes``, ``scheduler_url``, ``max_runs``, ``once``), the others
    go to :func:`luisy.execution.run` (``workers``, ``log_level``...). A first signal lets the run
    in progress finish (directory tasks stop handing out items and keep the finished ones); a
    second one, or ``[luisy] grace_seconds`` later, stops it at once.
    """
    watcher = Watcher(task, report=report, **options)
    result = watcher.result
    try:
        with stop_on_signals(config.current().grace_seconds, on_signal=lambda signum: watcher.wakeup.set()) as stop:
            while not stop:
                next_step = watcher.step()
                if next_step is _Next.STOP:
                    break
                if isinstance(next_step, Pause):
                    watcher.wait(next_step, stop)
            if stop and result.signal is None:
                result.signal = stop.signal
    except KeyboardInterrupt as error:  # a second signal, or the grace period ran out
        result.signal = result.signal or _signal_of(error)
    finally:
        watcher.close()
    if result.signal is not None:
        report(f"stopped ({signal_name(result.signal)}) after {len(result.batches)} run(s)")
    return result


def _wakeup_folders(folders: list[DirectoryInputTarget]) -> list[tuple[str, bool, Callable[[str], Any]]]:
    """Each folder once; one that several inputs read wakes the watcher on any file's event."""
    by_path: dict[str, list[DirectoryInputTarget]] = {}
    for folder in folders:
        if urls.scheme(folder.path) is not None:
            continue  # in an object store: only a rescan sees changes
        by_path.setdefault(folder.path, []).append(folder)
    return [(path, any(f.recursive or f.folders for f in inputs),
             ignore_rule(inputs[0].ignore if len(inputs) == 1 else ())) for path, inputs in by_path.items()]


def _signal_of(error: KeyboardInterrupt) -> int:
    """The signal a ``KeyboardInterrupt`` raised by :mod:`luisy.interrupts` names (SIGINT otherwise)."""
    return signal.SIGTERM if str(error) == "SIGTERM" else signal.SIGINT


def _run_batch(task: luigi.Task, settled: dict[tuple[Any, ...], dict[str, str]], found: Changes,
               first_stage: list[DirectoryTask], families: dict[str, str], noun: str,
               options: dict[str, Any]) -> Batch:
    """Run ``task`` over the settled items; failed items wait until their input changes again."""
    start = time.perf_counter()
    failed_before = {str(t): _failed(t) for t in first_stage}
    try:
        # No waiting inside the run: the watcher tries again itself, and rescans meanwhile.
        summary = run_tasks([task], settled=settled, retry_failed=False, wait=False, **options)
    except KeyboardInterrupt as error:
        return Batch(found, time.perf_counter() - start, interrupted=_signal_of(error), noun=noun)
    except LuisyError as error:  # e.g. the central scheduler cannot be reached
        return Batch(found, time.perf_counter() - start, error=error.format_message(), noun=noun, again=True)
    seconds = time.perf_counter() - start
    ran = set(summary.ran)
    processed = failed = 0
    for stage in first_stage:
        header = stage.output().current_header() if str(stage) in ran else None
        if header is not None:
            # The header counts failures kept from earlier runs among the processed and failed items,
            # and items an interrupted run finished apart.
            processed += header.processed + header.resumed - header.failed_count
            before = failed_before[str(stage)]
            failed += header.failed_count if not before else sum(
                before.get(name, _MISSING) != source for name, source in _failed(stage).items())
    return _batch(summary, found, seconds, processed, failed, families, noun)


_MISSING = object()


def _failed(task: DirectoryTask) -> dict[str, str | None]:
    """The failed items of a directory task's output: name → the input fingerprint it failed on."""
    header = task.output().current_header()
    if header is None or not header.failed_count:
        return {}
    manifest = task.output().current_manifest()
    return {name: manifest.failed_sources.get(name) for name in manifest.failed} if manifest is not None else {}


def _batch(summary: RunSummary, found: Changes, seconds: float, processed: int, failed: int,
           families: dict[str, str], noun: str) -> Batch:
    ran = set(summary.ran)
    error = None
    if summary.failed:
        error = "; ".join(f"{name}: {why}" for name, why in summary.failed[:3])
    elif summary.missing:
        error = f"missing input: {summary.missing[0]}"
    elif not summary.complete:  # nothing failed: the central scheduler did not hand the tasks out
        return Batch(found, seconds, noun=noun, deferred=True)
    return Batch(found, seconds, processed=processed, failed=failed,
                 ran=[family for name, family in families.items() if name in ran], error=error, ok=summary.ok,
                 noun=noun)
