"""Run tasks through luigi and summarise what happened. The CLI calls this; it never calls the CLI."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.execution_summary import LuigiRunResult
from luigi.task import flatten

from luisy import config, luigi_adapter, sharing
from luisy.atomic import temps_listed_once
from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError, SchedulerUnreachableError
from luisy.fingerprint.task import remembered
from luisy.graph import upstream_first
from luisy.history import journal
from luisy.items import ItemRow, command_line, first_failures
from luisy.paths import expected_at
from luisy.targets import scan_once
from luisy.tracebacks import indented, parse_explanation, traceback_of, user_frames

logger = logging.getLogger("luisy")

#: Why a central scheduler may not hand out a task that is not complete and that no worker runs.
HELD_BACK = ("luigid ignores a task made pending again within [scheduler] stable_done_cooldown_secs "
             "of being done")
#: Seconds between two tries of a build that waits for a central scheduler to hand its tasks out.
WAIT_SECONDS = 2.0


def build(
    tasks: luigi.Task | Iterable[luigi.Task],
    workers: int = 1,
    local_scheduler: bool = True,
    scheduler_url: str | None = None,
    working_dir: str | os.PathLike[str] | None = None,
    processes: int | None = None,
    retry_failed: bool | None = None,
    dask_scheduler: str | None = None,
    settled: Mapping[Any, Mapping[str, str]] | None = None,
    wait: bool = True,
    download: bool = False,
    upload: bool = False,
    remote: str | None = None,
    **options: Any,
) -> bool:
    """Run ``tasks`` and everything they require; whether luigi scheduled and ran all of it
    (luigi's success flag, as ``luigi.build`` returns). :func:`run` returns a :class:`RunSummary`.

    ``scheduler_url`` selects luigi's central scheduler and wins over ``local_scheduler``; with
    ``local_scheduler=False`` and no URL, luigi's ``[core] default-scheduler-url`` is used. An
    unreachable central scheduler raises :class:`~luisy.errors.SchedulerUnreachableError`.
    ``working_dir``, ``processes`` (item processes of directory tasks that do not set their own),
    ``retry_failed`` (whether directory tasks retry items that failed before; default yes),
    ``dask_scheduler`` (the address of a Dask scheduler whose workers run the items of directory
    tasks; checked before anything runs) and ``settled`` (input folder selection → the items found settled,
    by name and fingerprint; the others are held back, see :func:`luisy.watch.watcher.watch`) apply for
    this call only (see :class:`luisy.config.Run`). On a central scheduler, ``wait`` (the
    default) waits while another worker runs a task this build needs, or luigid holds one back
    after it was done (:data:`HELD_BACK`), saying so once, and then builds again; without it the
    build ends at once and the summary says why. ``download`` fetches outputs from the remote
    instead of computing them where it holds them from the same code and data, ``upload`` sends
    the graph's outputs to it after the run (see :mod:`luisy.sharing`); ``remote`` is its folder or
    URL (default: ``LUISY_REMOTE``, ``[luisy] remote``, luisy 1.x's ``LUISY_AZURE_*``).
    Other keywords are luigi's ``[core]`` options (``log_level``, default ``"WARNING"`` as on the
    command line; ``parallel_scheduling``...).
    """
    result: LuigiRunResult = _execute(
        tasks, False, workers=workers, local_scheduler=local_scheduler, scheduler_url=scheduler_url,
        working_dir=working_dir, processes=processes, retry_failed=retry_failed, dask_scheduler=dask_scheduler,
        settled=settled, wait=wait, download=download, upload=upload, remote=remote, **options)
    return bool(result.scheduling_succeeded)


def run(tasks: luigi.Task | Iterable[luigi.Task], **options: Any) -> RunSummary:
    """:func:`build` (with the same arguments), then what the run did in the terms a user cares
    about: what ``luisy run`` prints. luigi's own result is :attr:`RunSummary.result`."""
    summary: RunSummary = _execute(tasks, True, **options)
    return summary


def _execute(tasks: luigi.Task | Iterable[luigi.Task], summary: bool, *, workers: int = 1,
             local_scheduler: bool = True, scheduler_url: str | None = None,
             working_dir: str | os.PathLike[str] | None = None, processes: int | None = None,
             retry_failed: bool | None = None, dask_scheduler: str | None = None,
             settled: Mapping[Any, Mapping[str, str]] | None = None, wait: bool = True, download: bool = False,
             upload: bool = False, remote: str | None = None, **options: Any) -> Any:
    """A build (see :func:`build`): luigi's result, or with ``summary`` the :class:`RunSummary`."""
    for name in ("detailed_summary", "summary"):
        if name in options:
            raise TypeError(f"luisy.build() takes no {name}=: it returns luigi's success flag; "
                            "luisy.run() returns a RunSummary, whose .result is luigi's LuigiRunResult")
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)
    options.setdefault("log_level", "WARNING")  # as quiet as the CLI; luigi's default is DEBUG
    shared = config.resolve_remote(remote, download, upload)
    with _run_settings(options, local_scheduler, scheduler_url, working_dir, processes, retry_failed,
                       dask_scheduler, settled, shared):
        # One local luigi worker runs every task in this process, where a task's success updates
        # what is remembered of the fingerprints; otherwise tasks run in other processes.
        in_here = workers == 1 and options.get("local_scheduler") and not options.get("force_multiprocessing")
        with remembered() if in_here else nullcontext():
            result, ran = _build_until_handed_out(task_list, workers, options, wait)
            finish_interrupted_publishes(result)
            sent = sharing.uploaded(task_list)
            # Judged with the run's own settings (failed items settled for this run...) and what
            # the build remembered of the fingerprints.
            if not summary:
                return result
            done = summarize(task_list, result, ran)
            done.fetched, done.sent = sorted(sharing.fetched_in_build()), sorted(map(str, sent))
            return done


def _build_until_handed_out(tasks: list[luigi.Task], workers: int, options: dict[str, Any],
                            wait: bool) -> tuple[LuigiRunResult, set[luigi.Task]]:
    """``luigi.build``, again while a central scheduler keeps tasks back (with ``wait``); the
    last result, and the tasks every build ran."""
    ran: set[luigi.Task] = set()
    said: set[tuple[str, str]] = set()
    while True:
        result = luigi.build(tasks, workers=workers, detailed_summary=True, **options)
        sets = luigi_adapter.task_sets(result)
        ran |= sets["completed"]
        if not wait or options.get("local_scheduler") or sets["failed"] or sets["scheduling_error"] \
                or sets["still_pending_ext"]:  # waiting would not change the outcome
            return result, ran
        reasons = _kept_back(result)
        if not reasons:
            return result, ran
        for task, why in reasons.items():
            if (task, why) not in said:
                logger.warning("waiting for %s (%s)", task, why)
                said.add((task, why))
        time.sleep(WAIT_SECONDS)


def _kept_back(result: LuigiRunResult) -> dict[str, str]:
    """The tasks a build on a central scheduler left to others or was not given, and why:
    ``being run by another worker: pid 1234 on host``, or :data:`HELD_BACK`."""
    reasons = {str(other.task): f"being run by another worker: pid {other.pid} on {other.host}"
               for other in luigi_adapter.run_elsewhere(result)}
    for task in sorted(luigi_adapter.task_sets(result)["not_run"], key=str):  # pending, and no reason known
        if luigi_adapter.done_in_scheduler(result, task):
            reasons.setdefault(str(task), HELD_BACK)
    return reasons


@contextmanager
def _run_settings(options: dict[str, Any], local_scheduler: bool, scheduler_url: str | None,
                  working_dir: str | os.PathLike[str] | None, processes: int | None,
                  retry_failed: bool | None, dask_scheduler: str | None,
                  settled: Mapping[Any, Mapping[str, str]] | None = None,
                  remote: config.Remote | None = None) -> Iterator[config.Run]:
    """The :class:`~luisy.config.Run` of one build, current while it lasts; fills luigi's ``options``."""
    central = scheduler_url or (None if local_scheduler else config.central_scheduler_url())
    worker_settings: Any = nullcontext()
    if central:
        check_scheduler(central)
        # The central scheduler hands each task to one worker, so luigi's per-command process lock
        # is not needed; workers stay until the tasks they wait for are done by others.
        options.update(scheduler_url=central, local_scheduler=False, no_lock=options.get("no_lock", True))
        worker_settings = config.luigi_setting("worker", "keep_alive", "true")
    else:
        options["local_scheduler"] = True
    run = config.Run.resolve(working_dir=working_dir, processes=processes, retry_failed=retry_failed,
                             dask_scheduler=dask_scheduler, new_id=True, settled=settled, remote=remote)
    if run.dask_scheduler:
        from luisy.executors.dask import check_scheduler as check_dask_scheduler

        check_dask_scheduler(run.dask_scheduler)
    with worker_settings, config.running(run), scan_once(), temps_listed_once(), journal.one_file_per_process(), \
            sharing.sharing():
        if remote is not None:
            sharing.check(remote)
        yield run


def finish_interrupted_publishes(result: LuigiRunResult) -> None:
    """Tidy the directory outputs of the run's complete tasks whose last publish was cut short.

    Such an output is sound (its manifest was replaced), but the task does not run again to
    remove the files the interrupted publish left.
    """
    sets = luigi_adapter.task_sets(result)
    for task in sets["already_done"] | sets["completed"]:
        for output in flatten(task.output()):
            if isinstance(output, DirectoryTarget):
                output.tidy()


def check_scheduler(url: str, timeout: float = 5.0) -> None:
    """Raise :class:`SchedulerUnreachableError` naming ``url`` unless a luigi scheduler answers there."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/task_list?data=%7B%7D", timeout=timeout) as response:
            json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise SchedulerUnreachableError(
            f"cannot reach the luigi central scheduler at {url} ({reason}); start one with "
            "`luisy scheduler` or `luigid`, or run with --local-scheduler"
        ) from None


@dataclass
class RunSummary:
    """What a run did, in the terms a user cares about."""

    tasks: list[luigi.Task]
    #: luigi's own result of the build (its ``LuigiRunResult``).
    result: LuigiRunResult
    #: Whether every requested task was complete when the run ended (failed items retried by the
    #: next run do not count against it).
    complete: bool = False
    ran: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    #: Directory tasks that ran: (task, items processed by the run, items failed, items in the output).
    items: list[tuple[str, int, int, int]] = field(default_factory=list)
    #: Directory tasks that did not run but hold failed items from an earlier run (retries off).
    kept_failures: list[tuple[str, int]] = field(default_factory=list)
    #: Failed tasks: the traceback of the error (of the failed item's code, for an item that
    #: failed with ``on_error="raise"``), where there is one.
    tracebacks: dict[str, str] = field(default_factory=dict)
    #: Directory tasks with failed items: the first few, and the command that lists them all.
    failed_item_rows: dict[str, list[ItemRow]] = field(default_factory=dict)
    items_commands: dict[str, str] = field(default_factory=dict)
    #: Directory tasks that ran: items taken over from an interrupted run (not processed again).
    resumed: dict[str, int] = field(default_factory=dict)
    #: Tasks a central scheduler left to another worker (``pid 1234 on host``) or did not hand
    #: out (:data:`HELD_BACK`), each with why; a build that waits has none left.
    kept_back: list[tuple[str, str]] = field(default_factory=list)
    #: Reduces that ran, each with what it folded: counts ``folded`` and ``unfolded``, and
    #: ``refolded``, why everything was folded again (``None`` if it was not).
    reduced: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Tasks whose outputs were fetched from the remote (``--download``), in this process.
    fetched: list[str] = field(default_factory=list)
    #: Tasks whose outputs were sent to the remote (``--upload``).
    sent: list[str] = field(default_factory=list)

    @property
    def failed_items(self) -> int:
        """Items that failed in the directory tasks of this run, or were kept failed by it."""
        return sum(failed for _, _, failed, _ in self.items) + sum(failed for _, failed in self.kept_failures)

    @property
    def ok(self) -> bool:
        """Complete, with no failed items: what ``luisy run`` exits 0 for."""
        return self.complete and not self.failed_items

    def lines(self, verbose: bool = False) -> list[str]:
        """The summary, a few lines long; long lists are cut. Tracebacks show the frames of the
        user's code; ``verbose``: all frames."""
        retried = "not retried (--no-retry-failed)" if self.kept_failures else "retried by the next run"
        state = "NOT complete" if not self.complete else "complete" if self.ok else \
            f"complete except {self.failed_items} failed item(s), {retried}"
        roots = ", ".join(str(t) for t in self.tasks)
        if self.ok and not self.ran and not self.kept_failures:
            out = [f"nothing to run: {roots} {'is' if len(self.tasks) == 1 else 'are'} complete"]
        else:
            out = [f"{state}: {roots}"]
        for label, names in (("ran", self.ran), ("already done", self.already_done),
                             ("fetched from the remote", self.fetched), ("sent to the remote", self.sent)):
            if names:
                out.append(f"  {label}: {len(names)} task(s)")
        for name, processed, failed, total in self.items[:5]:
            resumed = self.resumed.get(name)
            kept = f", {resumed} kept from the interrupted run" if resumed else ""
            out.append(f"  items: {name}: {processed} processed{kept}, {failed} failed ({total} in the output)")
            out.extend(self._failed_items(name, failed, verbose))
        for name, counts in self.reduced[:5]:
            again = f" (everything again: {counts['refolded']})" if counts.get("refolded") else ""
            out.append(f"  reduce: {name}: {counts['folded']} folded, {counts['unfolded']} unfolded{again}")
        for name, failed in self.kept_failures[:5]:
            out.append(f"  items: {name}: {failed} failed in an earlier run, not retried (--retry-failed)")
            out.extend(self._failed_items(name, failed, verbose))
        for name, error in self.failed[:5]:
            # A luisy error names its task itself: one task name per line.
            out.append(f"  failed: {error}" if error.startswith(name) else f"  failed: {name}: {error}")
            trace = self.tracebacks.get(name, "")
            out.extend(indented(trace if verbose else user_frames(trace), "      "))
        out.extend(f"  missing input: {name}" for name in self.missing[:5])
        out.extend(f"  not run here: {name} ({why}); `luisy run --wait` waits for it"
                   for name, why in self.kept_back[:5])
        if self.not_run:
            out.append(f"  not run (upstream failed or missing): {len(self.not_run)} task(s)")
        if self.complete:
            out.extend(f"  output: {path}" for path in _output_paths(self.tasks)[:10])
        return out

    def _failed_items(self, task: str, failed: int, verbose: bool) -> list[str]:
        """The lines naming the first failed items of ``task``, with their tracebacks."""
        if not failed:
            return []
        command = self.items_commands.get(task)
        out = [f"    {failed} items failed" + (f" (see: {command})" if command else "")]
        for row in self.failed_item_rows.get(task, []):
            out += [f"    {row.described()}", *row.traceback_lines(verbose, "      ")]
        return out


def _output_paths(tasks: Iterable[luigi.Task]) -> list[str]:
    """Where the tasks' results are; a task without outputs (a WrapperTask) shows its requirements'."""
    paths: list[str] = []
    for task in tasks:
        outputs = flatten(task.output())
        if outputs:
            paths.extend(str(o.path) for o in outputs if hasattr(o, "path"))
        else:
            paths.extend(_output_paths(flatten(task.requires())))
    return paths


def summarize(tasks: list[luigi.Task], result: LuigiRunResult, ran: Collection[luigi.Task] = ()) -> RunSummary:
    """Turn luigi's per-status task sets into a :class:`RunSummary`; ``ran``: tasks that earlier
    builds of the same run completed (a build that waited)."""
    sets = luigi_adapter.task_sets(result)
    summary = RunSummary(tasks, result, complete=all(_is_complete(task) for task in tasks))
    sets["completed"] = sets["completed"] | set(ran)
    summary.ran = sorted(map(str, sets["completed"]))
    summary.already_done = sorted(map(str, sets["already_done"] - sets["completed"]))
    errors = [(t, _scheduler_error(result, t)) for t in sorted(sets["failed"], key=str)]
    errors += [(t, _completeness_error(t)) for t in sorted(sets["scheduling_error"], key=str)]
    for task, (line, trace) in errors:
        summary.failed.append((str(task), line))
        if trace:
            summary.tracebacks[str(task)] = trace
    summary.missing = [f"{t} (expected at {expected_at(t)})" for t in sorted(sets["still_pending_ext"], key=str)]
    summary.not_run = sorted(map(str, sets["upstream_failure"] | sets["upstream_missing_dependency"]))
    if not summary.complete:
        summary.kept_back = list(_kept_back(result).items())
    headers = [(t, _manifest_header(t)) for t in sorted(sets["completed"], key=str)]
    summary.items = [(str(t), h.processed, h.failed_count, h.item_count) for t, h in headers if h is not None]
    summary.resumed = {str(t): h.resumed for t, h in headers if h is not None and h.resumed}
    summary.reduced = [(str(t), counts) for t in sorted(sets["completed"], key=str)
                       if (counts := getattr(t, "last_counts", lambda: None)()) is not None]
    if config.current().retry_failed:
        settled = sets["already_done"]
    else:  # failures kept by earlier runs may sit upstream of a complete task, where luigi does not look
        settled = {t for root in tasks for t in upstream_first(root)} - sets["completed"]
    kept = ((t, _manifest_header(t)) for t in sorted(settled, key=str))
    kept_headers = [(t, h) for t, h in kept if h is not None and h.failed_count]
    summary.kept_failures = [(str(t), h.failed_count) for t, h in kept_headers]
    for task, header in [*headers, *kept_headers]:
        if header is not None and header.failed_count:
            _note_failed_items(summary, task)
    return summary


def _note_failed_items(summary: RunSummary, task: luigi.Task) -> None:
    """The first failed items of a directory task, and how to list them all."""
    manifest = next(o for o in flatten(task.output()) if isinstance(o, DirectoryTarget)).manifest
    summary.failed_item_rows[str(task)] = first_failures(manifest.failed, manifest.failed_details)
    summary.items_commands[str(task)] = command_line("items", task, "--failed")


def _is_complete(task: luigi.Task) -> bool:
    try:
        return bool(task.complete())
    except Exception:  # reported among the failures (see _completeness_error)
        return False


def _completeness_error(task: luigi.Task) -> tuple[str, str]:
    """Why luigi could not tell whether ``task`` is complete: the one line of the error it raised,
    and its traceback (none for a luisy error, whose line says what is wrong)."""
    try:
        task.complete()
    except LuisyError as error:
        return error.format_message(), ""
    except Exception as error:
        return f"{type(error).__name__}: {error}", traceback_of(error)
    return "(the completeness check failed during the run)", ""


def _manifest_header(task: luigi.Task) -> Any:
    """The manifest header of a directory task's output, if it has one."""
    outputs = [o for o in flatten(task.output()) if isinstance(o, DirectoryTarget)]
    return outputs[0].header if outputs and outputs[0].exists() else None


def _scheduler_error(result: LuigiRunResult, task: luigi.Task) -> tuple[str, str]:
    """The task's error line and traceback, as the scheduler recorded them."""
    try:
        error = luigi_adapter.scheduler_error(result, task)
    except Exception:  # the scheduler may be gone; the summary still names the task
        return "(error text unavailable)", ""
    try:
        error = json.loads(error)  # luigi's worker sends the explanation JSON-encoded
    except ValueError:
        pass
    return parse_explanation(str(error))
