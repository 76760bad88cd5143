"""Hot folders: run a task whenever new or changed input items have settled, until stopped.

The watcher looks at every input folder of the task's graph (``directory_input``,
``make_directory_output``): a listing made as a directory task makes it, so the listing is the
one source of truth, and file events (:mod:`luisy.wakeup`) only make the next look come sooner.
An item has *settled* when its fingerprint has not changed for the settle time
(:mod:`luisy.settling`). Whenever the settled items differ from those the previous run was
given, the watcher runs the task through :func:`luisy.execution.run` with those items as the
run's ``settled`` setting (:class:`luisy.config.Run`): directory tasks hold back every item not
among them — neither processed nor counted as removed — so a file still being written never
reaches ``process``. Failed items are not retried until their input changes again.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config
from luisy.directory.inputs import ignore_rule
from luisy.errors import LuisyError, NoFolderInput
from luisy.execution import HELD_BACK, RunSummary
from luisy.execution import run as run_tasks
from luisy.fingerprint.content import keeping_digests
from luisy.fingerprint.task import is_external
from luisy.graph import upstream_first
from luisy.interrupts import signal_name, stop_on_signals
from luisy.settling import Changes, Observation, Settling, changes
from luisy.targets import DirectoryInputTarget
from luisy.tasks.directory import DirectoryTask
from luisy.wakeup import Wakeup

__all__ = ["Batch", "WatchResult", "watch", "watched_folders"]

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


def watch(
    task: luigi.Task,
    *,
    settle: float = 2.0,
    interval: float = 1.0,
    processes: int | None = None,
    scheduler_url: str | None = None,
    max_runs: int | None = None,
    once: bool = False,
    report: Callable[[str], Any] = logger.warning,
    **options: Any,
) -> WatchResult:
    """Run ``task`` whenever new or changed items in its input folders have settled; until SIGINT
    or SIGTERM, ``max_runs`` runs, or with ``once`` one run as soon as nothing is left to settle.

    An item has settled when its size and modification time (of every file in it, for
    ``items="folders"``) have not changed for ``settle`` seconds; dataset folders with a
    ``marker`` settle as soon as the marker is there. Folders are rescanned every ``interval``
    seconds (or on a file event, with ``watchdog``), but using no more than 1/30 of one core while
    nothing happens. ``report`` gets one line per run; other keywords go to
    :func:`luisy.execution.run` (``workers``, ``log_level``...). A first signal lets the run in
    progress finish (directory tasks stop handing out items and keep the finished ones); a second
    one, or ``[luisy] grace_seconds`` later, stops it at once.
    """
    folders = watched_folders(task)
    if not folders:
        raise NoFolderInput(f"{task!r}: nothing to watch: its graph has no input folder "
                            "(directory_input or make_directory_output)")
    states = {f.selection(): Settling(0.0 if f.marker is not None else settle) for f in folders}
    given: dict[tuple[Any, ...], dict[str, str]] = {key: {} for key in states}
    graph = upstream_first(task)
    first_stage = [t for t in graph
                   if isinstance(t, DirectoryTask)
                   and any(isinstance(o, DirectoryInputTarget) and o.selection() in states for o in flatten(t.input()))]
    families = {str(t): t.get_task_family() for t in graph if flatten(t.output())}
    noun = "folders" if all(f.folders for f in folders) else "files"
    result = WatchResult()
    wakeup = Wakeup(_wakeup_folders(folders))
    how = "file events and a rescan" if wakeup.events else \
        "a rescan (install watchdog, the `watch` extra, to react to file events)"
    where = ", ".join(dict.fromkeys(f.path for f in folders))
    report(f"watching {where} for {task}: items settle after {settle:g} s; {how} every {interval:g} s or more")
    problems: dict[str, str] = {}
    deferred, retry_at, failures = False, 0.0, 0
    try:
        with stop_on_signals(config.current().grace_seconds, on_signal=lambda signum: wakeup.set()) as stop:
            while not stop:
                started, cpu = time.monotonic(), time.process_time()
                seen: dict[tuple[Any, ...], Observation] = {}
                for folder in folders:
                    try:
                        with keeping_digests():  # a file is hashed once, not on every rescan
                            listed = folder.listing()
                    except (FileNotFoundError, LuisyError) as error:  # not a reason to stop watching
                        problem = error.format_message() if isinstance(error, LuisyError) else \
                            f"waiting for {folder.path} to appear"
                        if problems.get(folder.path) != problem:
                            report(problem)
                            problems[folder.path] = problem
                        continue
                    problems.pop(folder.path, None)
                    seen[folder.selection()] = states[folder.selection()].observe(
                        zip(listed.names, listed.fingerprints, strict=True), started)
                scanned = time.monotonic()
                scan_cost = time.process_time() - cpu  # the budget is the share of one core
                wakeup.watch_new_folders()
                if len(seen) == len(folders):
                    found = sum((changes(given[key], obs) for key, obs in seen.items()), Changes())
                    unsettled = sum(obs.pending for obs in seen.values())
                    ready = (not unsettled and not result.batches) if once else bool(found)
                    if ready and time.monotonic() >= retry_at:
                        settled = {key: obs.settled for key, obs in seen.items()}
                        batch = _run_batch(task, settled, found, first_stage, families, noun, processes,
                                           scheduler_url, options)
                        if batch.deferred:
                            if not deferred:
                                report(f"the central scheduler has not handed out the tasks ({HELD_BACK}); "
                                       "trying again")
                            deferred = True
                            retry_at = time.monotonic() + max(interval, RETRY_SECONDS)
                            continue
                        deferred = False
                        result.batches.append(batch)
                        report(batch.line())
                        if batch.again:  # not the items' fault: the same ones again, less and less often
                            failures += 1
                            retry_at = time.monotonic() + min(MAX_RETRY_SECONDS, RETRY_SECONDS * 2 ** failures)
                        else:
                            failures, given = 0, settled
                        if batch.interrupted is not None:
                            result.signal = batch.interrupted
                            break
                        if once or (max_runs is not None and len(result.batches) >= max_runs):
                            break
                        continue  # items may have settled meanwhile
                dues = [obs.due for obs in seen.values() if obs.due is not None]
                if deferred or failures:
                    dues.append(retry_at)
                timeout = max(interval, scan_cost / IDLE_SHARE)
                if dues:
                    timeout = min(timeout, min(dues) - time.monotonic())
                if wakeup.wait(timeout) and not stop:
                    # A burst of events: let it pass, and keep rescans to a fifth of the time.
                    time.sleep(max(0.05, 4 * scan_cost - (time.monotonic() - scanned)))
            if stop and result.signal is None:
                result.signal = stop.signal
    except KeyboardInterrupt as error:  # a second signal, or the grace period ran out
        result.signal = result.signal or _signal_of(error)
    finally:
        wakeup.close()
    if result.signal is not None:
        report(f"stopped ({signal_name(result.signal)}) after {len(result.batches)} run(s)")
    return result


def _wakeup_folders(folders: list[DirectoryInputTarget]) -> list[tuple[str, bool, Callable[[str], Any]]]:
    """Each folder once; one that several inputs read wakes the watcher on any file's event."""
    by_path: dict[str, list[DirectoryInputTarget]] = {}
    for folder in folders:
        by_path.setdefault(folder.path, []).append(folder)
    return [(path, any(f.recursive or f.folders for f in inputs),
             ignore_rule(inputs[0].ignore if len(inputs) == 1 else ())) for path, inputs in by_path.items()]


def _signal_of(error: KeyboardInterrupt) -> int:
    """The signal a ``KeyboardInterrupt`` raised by :mod:`luisy.interrupts` names (SIGINT otherwise)."""
    return signal.SIGTERM if str(error) == "SIGTERM" else signal.SIGINT


def _run_batch(task: luigi.Task, settled: dict[tuple[Any, ...], dict[str, str]], found: Changes,
               first_stage: list[DirectoryTask], families: dict[str, str], noun: str, processes: int | None,
               scheduler_url: str | None, options: dict[str, Any]) -> Batch:
    """Run ``task`` over the settled items; failed items wait until their input changes again."""
    start = time.perf_counter()
    failed_before = {str(t): _failed(t) for t in first_stage}
    try:
        # No waiting inside the run: the watcher tries again itself, and rescans meanwhile.
        summary = run_tasks([task], settled=settled, retry_failed=False, processes=processes,
                            scheduler_url=scheduler_url, wait=False, **options)
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
            # The header counts failures kept from earlier runs among the processed and failed items.
            processed += header.processed - header.failed_count
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
