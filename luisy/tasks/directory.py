"""``DirectoryTask``: map ``process(name, obj)`` over the items of an input folder, in one luigi task."""

from __future__ import annotations

import itertools
import logging
import operator
import os
import time
from collections.abc import Sequence
from typing import Any

from luigi.task import flatten

from luisy import config, formats
from luisy.digests import items_digest
from luisy.directory.manifest import bad_file_name
from luisy.directory.pending import Pending, compare, everything, items_held
from luisy.directory.runner import Progress, outcomes, report_status
from luisy.directory.table import Kept
from luisy.directory.target import DirectoryTarget, DirectoryWriter
from luisy.errors import ItemError, ItemNameError, LuisyError, NoFolderInput, UnsafePathError
from luisy.executors import ItemStatus, Outcome
from luisy.fingerprint import records
from luisy.fingerprint.code import code_fingerprint
from luisy.fingerprint.task import as_upstream, code_reasons, is_external
from luisy.history import journal
from luisy.history import progress as live_progress
from luisy.interrupts import signal_name, signals_held_back, stop_after_publish, stop_on_signals
from luisy.items import ItemRow, failure_line, first_failures
from luisy.parameters import recorded_params, significant_params
from luisy.paths import NAME_MAX
from luisy.reasons import Kind, Reason, changes
from luisy.sources import SourceItem, find, names_of, pairs, release, select
from luisy.spec import OutputSpec
from luisy.tasks.base import Task
from luisy.texttable import printable

logger = logging.getLogger("luisy")

ON_ERROR = ("raise", "skip")
_MISSING = object()


def _slashes(path: str) -> list[int]:
    """The positions of the ``/`` in ``path`` (each ends a folder the path is in)."""
    return [i for i, char in enumerate(path) if char == "/"]


class DirectoryTask(Task):
    """One luigi task over a whole folder: ``process`` runs per input item, results are published together.

    The input is the task's single requirement: an external folder (``directory_input``,
    ``make_directory_output``) or another directory task. A rerun processes only new and changed
    input items, drops items whose input disappeared, and retries failed ones.
    """

    #: ``"raise"``: the first failing item aborts the run and nothing is published.
    #: ``"skip"``: failing items are recorded in the manifest and retried by the next run.
    on_error: str = "raise"
    #: Worker processes for the items; ``None``: ``[luisy] processes`` in luigi's config, else 1.
    processes: int | None = None
    #: Address of a Dask scheduler to run the items on (``tcp://host:8786``, the extra ``luisy[dask]``);
    #: ``None``: ``--dask-scheduler`` / ``[luisy] dask_scheduler``, else none; ``""``: never Dask.
    dask_scheduler: str | None = None
    #: Seconds between checkpoints of finished items; ``None``: ``[luisy] checkpoint_seconds``, else 30.
    checkpoint_seconds: float | None = None
    _luisy_output = OutputSpec(DirectoryTarget, {"file_format": formats.PICKLE}, folder=True)

    def process(self, name: str, obj: Any) -> Any:
        """The output object for input item ``name`` (``None`` skips it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(self, name, obj)")

    def input_items(self) -> Sequence[SourceItem]:
        """The input items, from the single requirement's folder."""
        return self._folder_input().source_items()

    def _folder_input(self) -> Any:
        inputs = flatten(self.input())
        if len(inputs) != 1 or not hasattr(inputs[0], "source_items"):
            raise NoFolderInput(f"{self!r}: a DirectoryTask needs exactly one folder input "
                                f"(directory_input, make_directory_output or a DirectoryTask), got {inputs!r}")
        return inputs[0]

    def _hand_over_input(self) -> None:
        """This run has the input folder's listing: the build need not keep it (see ``hand_over``)."""
        try:
            hand_over = getattr(self._folder_input(), "hand_over", None)
        except NoFolderInput:
            return
        if hand_over is not None:
            hand_over()

    def current_inputs_digest(self) -> str:
        """Digest of what the output is made from: the input items, or (a custom ``run()`` over
        other inputs) the fingerprints of the requirements."""
        try:
            return self._folder_input().sources_digest()
        except NoFolderInput:
            return items_digest((t.task_id, as_upstream(t)) for t in flatten(self.requires()))

    def pending(self, items: Sequence[SourceItem] | None = None) -> Pending:
        """What a run would process, keep and count as new, changed, removed or retried."""
        items = self.input_items() if items is None else items
        manifest = self.output().current_manifest()
        if manifest is None or not self._same_configuration(manifest):
            return everything(items)
        return compare(items, manifest, config.current().retry_failed)

    def why(self, detail: bool = False) -> list[Reason]:
        """Why the task would run (empty: it is complete): the first reason found, or with
        ``detail`` every one, with item counts (what ``luisy plan`` shows; it reads the item lists)."""
        first = self._first_reason()
        if not detail or first is None:
            return [] if first is None else [first]
        corrupt = self._corrupt()  # the item lists are read now: their faults show here
        return [corrupt] if corrupt else self._reasons_in_detail(first.kind) or [first]

    def _corrupt(self) -> Reason | None:
        """The output's manifest is corrupt (the run sweeps the folder and makes it again)."""
        problem = self.output().problem()
        return Reason(Kind.CORRUPT, (problem,)) if problem is not None else None

    def _first_reason(self) -> Reason | None:
        # Only the manifest's first line is read: it can list 100 000 items.
        header = self.output().current_header()
        if header is None:
            return self._corrupt() or Reason(Kind.NO_OUTPUT)
        if not self._same_configuration(header):
            return Reason(Kind.EVERY_ITEM)
        # Failed items are retried by the next run; within the run that recorded them (or with
        # retry_failed off) they do not hold back the tasks downstream.
        run = config.current()
        failed_settled = not run.retry_failed or (header.run != "" and header.run == run.id)
        if header.failed_count and not failed_settled:
            return Reason(Kind.RETRY, counts={"retried": header.failed_count})
        if not all(target.exists() for target in flatten(self.input())):
            # An external input that is missing is luigi's to report (nobody can make it); an
            # upstream task's output that went away is made again, and this one after it.
            lost = self._lost_upstream()
            return Reason(Kind.UPSTREAM, lost) if lost else None
        if header.inputs_digest != self.current_inputs_digest():
            return Reason(Kind.INPUT_DATA, tuple(map(str, flatten(self.requires()))))
        # luigi does not look upstream of a complete task, so an upstream that will rerun must make
        # this one rerun too (an external folder's changes are seen through the digest above).
        stale = tuple(str(task) for task in flatten(self.requires()) if not is_external(task) and not task.complete())
        return Reason(Kind.UPSTREAM, stale) if stale else None

    def _lost_upstream(self) -> tuple[str, ...]:
        """The required tasks (not external) whose outputs are gone."""
        return tuple(str(task) for task in flatten(self.requires())
                     if not is_external(task) and not all(o.exists() for o in flatten(task.output())))

    def _reasons_in_detail(self, first: Kind) -> list[Reason]:
        """Every reason, given the first: a new configuration reprocesses everything; otherwise
        the items to process (read from the item lists) and upstream tasks that will run."""
        if first is Kind.NO_OUTPUT:
            return [Reason(Kind.NO_OUTPUT), *self._resume_reasons()]
        if first is Kind.EVERY_ITEM:
            manifest = self.output().current_manifest()
            if manifest is None:
                return [Reason(Kind.NO_OUTPUT), *self._resume_reasons()]
            found = []
            if manifest.code_fingerprint != self.code_fingerprint():
                found += code_reasons(records.lookup(self), self) or [Reason(Kind.CODE)]
            params = changes(recorded_params(manifest.params, self), significant_params(self))
            if params:
                found.append(Reason(Kind.PARAMETERS, changes=params))
            return [*found, Reason(Kind.EVERY_ITEM)]
        found = []
        if self._inputs_listable():
            pending = self.pending()
            if pending.new or pending.changed or pending.removed:
                found.append(Reason(Kind.ITEMS, counts={"new": pending.new, "changed": pending.changed,
                                                        "removed": pending.removed}))
            found += self._resume_reasons(pending.todo)
            if pending.retried:
                found.append(Reason(Kind.RETRY, counts={"retried": pending.retried}))
        stale = tuple(str(t) for t in flatten(self.requires()) if not is_external(t) and not t.complete())
        if stale:
            found.append(Reason(Kind.UPSTREAM, stale))
        return found

    def _inputs_listable(self) -> bool:
        """Whether the items to process can be counted now. A missing input is luigi's to report,
        and an upstream output whose manifest is corrupt is made again first (its own reason says
        so); any other error listing the input is the user's to see."""
        inputs = flatten(self.input())
        return all(target.exists() for target in inputs) and not any(
            isinstance(target, DirectoryTarget) and target.problem() is not None for target in inputs)

    def _resume_reasons(self, todo: Sequence[SourceItem] | None = None) -> list[Reason]:
        """How many of the items to do an interrupted run already made."""
        checkpointed = self.output().resumable(self)
        if not checkpointed or not self._inputs_listable():
            return []
        todo = self.pending().todo if todo is None else todo
        kept = sum(1 for name, fingerprint in pairs(todo)
                   if name in checkpointed and checkpointed[name].source == fingerprint)
        return [Reason(Kind.RESUME, counts={"kept": kept, "todo": len(todo)})] if kept else []

    def _same_configuration(self, manifest: Any) -> bool:
        return (recorded_params(manifest.params, self) == significant_params(self)
                and manifest.code_fingerprint == self.code_fingerprint())

    def _record(self, writer: DirectoryWriter, item: SourceItem, outcome: Outcome) -> None:
        if outcome.status is ItemStatus.OK:
            writer.add(item.name, outcome.staged, item.fingerprint)
        elif outcome.status is ItemStatus.SKIP:
            writer.skip(item.name, item.fingerprint)
        elif self.on_error == "raise":
            # In no manifest, as the run publishes nothing: the journal keeps it (`luisy items --failed`).
            journal.note_failures([ItemRow(item.name, "failed", str(item.path), outcome.error, outcome.traceback)])
            raise ItemError(f"{self!r}: item {item.name!r} (input file {item.path}) failed: {outcome.error}",
                            outcome.traceback)
        else:
            details = {"input": str(item.path)}
            if outcome.traceback:
                details["traceback"] = outcome.traceback
            writer.fail(item.name, outcome.error, item.fingerprint, details)

    def _check_names(self, items: Sequence[SourceItem]) -> None:
        """Before any work: every input name can name an item file, and no two name the same one."""
        names = names_of(items)
        bad = bad_file_name(names)
        if bad is not None:
            item = items[names.index(bad)]
            raise UnsafePathError(f"{self!r}: input file {item.path} gives the item name {bad!r}, which luisy "
                                  "cannot use (a backslash, a name starting with .luisy or _luisy, an empty or "
                                  "'..' component); rename the file or narrow the pattern")
        ext = self.output().file_format.ext
        suffix = f".{ext}" if ext else ""
        # Unique names share a file only if one is the other plus the extension: the file names
        # (a million strings) are made only if names repeat, or one ends with it or has a folder.
        # Listings and manifests are unique; an input_items() of the task's own need not be.
        unique = all(map(operator.lt, names, itertools.islice(names, 1, None))) or len(set(names)) == len(names)
        ends = any(map(operator.methodcaller("endswith", suffix), names)) if suffix else False
        nesting = "/" in "".join(names)
        if not names or (unique and not (ends or nesting or (max(map(len, names)) + len(suffix)) * 4 > NAME_MAX)):
            return
        files = [name if name.endswith(suffix) else name + suffix for name in names]
        if max(map(len, files)) * 4 > NAME_MAX:  # only then can a part exceed NAME_MAX bytes
            for row, file in enumerate(files):
                if any(len(os.fsencode(part)) > NAME_MAX for part in file.split("/")):
                    raise UnsafePathError(f"{self!r}: input file {items[row].path} gives the item file {file!r}, "
                                          f"longer than the {NAME_MAX} bytes file systems allow; rename the input file")
        nested = [file for file in files if "/" in file] if nesting else []
        folders = {file[:end] for file in nested for end in _slashes(file)}
        both = folders.intersection(files)
        if both:
            file = min(both)
            first = items[files.index(file)]
            other = next(items[row] for row, f in enumerate(files) if f.startswith(file + "/"))
            raise ItemNameError(f"{self!r}: input files {first.path} and {other.path} would need {file!r} to be "
                                "both a file and a folder; rename one or narrow the pattern")
        if len(set(files)) < len(files):
            seen: dict[str, int] = {}
            for row, file in enumerate(files):
                earlier = seen.setdefault(file, row)
                if earlier != row:
                    raise ItemNameError(f"{self!r}: input files {items[earlier].path} and {items[row].path} would "
                                        f"both be written to {file!r}; rename one or narrow the pattern")

    def _check_against_kept(self, items: Sequence[SourceItem], todo: Sequence[SourceItem], kept: Kept) -> None:
        """No item to do shares a file with a kept one: one name is the other plus the extension."""
        ext = self.output().file_format.ext
        if not ext:
            return
        suffix = f".{ext}"
        others = {item.name: item.name.removesuffix(suffix) if item.name.endswith(suffix) else item.name + suffix
                  for item in todo}
        # A kept item is an input item (or one held back): only those others can be, and the
        # input finds them in a part or two, where the manifest would read one part for each.
        candidates = find(items, others.values()) | items_held(items).intersection(others.values())
        for item in todo:
            other = others[item.name]
            if other != item.name and other in candidates and other in kept and other in self.output().manifest.items:
                raise ItemNameError(f"{self!r}: input file {item.path} and the published item {other!r} would both "
                                    f"be written to {min(other, item.name) + suffix!r}; rename one or narrow the "
                                    "pattern")

    def _resume(self, writer: DirectoryWriter, todo: Sequence[SourceItem]) -> Sequence[SourceItem]:
        """Take over the items an interrupted run finished from unchanged inputs; the rest to do."""
        resumed = writer.resumable()
        if not resumed:
            return todo
        rows = []
        for row, (name, fingerprint) in enumerate(pairs(todo)):
            done = resumed.get(name)
            if done is not None and done.source == fingerprint:
                writer.add(name, done, fingerprint, resumed=True)
            else:
                rows.append(row)
        if len(rows) < len(todo):
            logger.info("%s: %d items kept from an interrupted run", self, len(todo) - len(rows))
        return select(todo, rows)

    def _no_output_hint(self) -> str:
        if type(self).run is DirectoryTask.run:
            return ""
        return (f": {type(self).__name__}.run() replaces DirectoryTask.run(), which calls process() for each item "
                "and writes the output; call super().run() from it, or write with self.output().writer(self)")

    def code_fingerprint(self) -> str:
        """Fingerprint of the task's code; a change reprocesses every item."""
        return code_fingerprint(type(self)).digest

    def run(self) -> None:
        """Process new and changed items and publish them with the kept ones."""
        if self.on_error not in ON_ERROR:
            raise LuisyError(f"{self!r}: on_error must be one of {ON_ERROR}, not {self.on_error!r}")
        items = self.input_items()
        self._hand_over_input()
        run = config.current()
        interval = run.checkpoint_seconds if self.checkpoint_seconds is None else self.checkpoint_seconds
        # The writer first: it waits for another run writing the output, whose published or
        # checkpointed items this one then keeps instead of making them again.
        with self.output().writer(self) as writer, stop_on_signals(run.grace_seconds) as stop:
            pending = self.pending(items)
            # Before any work. Names kept in whole parts were checked when they were published.
            self._check_names(pending.todo if isinstance(pending.keep, Kept) or pending.everything else items)
            if isinstance(pending.keep, Kept):
                self._check_against_kept(items, pending.todo, pending.keep)
            # What complete() compares: the folder's digest, also where input_items() picks some.
            writer.inputs_digest = self.current_inputs_digest()
            writer.part_count, writer.inputs_parts = pending.part_count, pending.inputs_parts
            writer.names_checked = True  # by _check_names above
            writer.keep(pending.keep)
            for name, (error, source, details) in pending.kept_failures.items():
                writer.fail(name, error, source, details)
            todo = self._resume(writer, pending.todo)
            total = len(pending.todo)
            progress = Progress(self, len(todo), noted=live_progress.note)
            last = time.monotonic()
            try:
                for item, outcome in outcomes(self, todo, writer, stop):
                    if stop and outcome.status is ItemStatus.FAIL:
                        continue  # the signal reached what the item ran too: the next run makes it again
                    progress.advance(failed=outcome.status is ItemStatus.FAIL, seconds=outcome.seconds or None)
                    self._record(writer, item, outcome)
                    if time.monotonic() - last >= interval:
                        writer.checkpoint()
                        last = time.monotonic()
                if progress.done < len(todo):  # asked to stop (see luisy.interrupts)
                    raise KeyboardInterrupt(signal_name(stop.signal))
                # The publish needs none of the input items: a million of them go before it.
                release(items)
                del items, todo, pending
            except BaseException as error:  # stopped, or an item failed under on_error="raise"
                writer.staging.keep()  # first: the finished items stay for the next run, whatever follows
                with signals_held_back():  # a third Ctrl-C must not cut the last checkpoint short
                    writer.checkpoint()
                if isinstance(error, KeyboardInterrupt) or stop:
                    logger.warning("interrupted: %d/%d items kept for the next run", len(writer.new), total)
                if stop and not isinstance(error, KeyboardInterrupt):  # a signal came meanwhile
                    raise KeyboardInterrupt(signal_name(stop.signal)) from error
                raise
            finally:
                progress.close()
        journal.note_items(processed=progress.done, failed=progress.failed,
                           kept=len(writer.kept) + writer.resumed,
                           failures=first_failures(writer.failed, writer.failed_details, journal.FAILURES_NOTED))
        if stop:  # it came after the last item began: publish everything, then stop the build
            logger.warning("interrupted: all %d items done; publishing them, then stopping", total)
            stop_after_publish(stop.signal)
        if writer.failed:
            message = f"{len(writer.failed)} items failed"
            first = first_failures(writer.failed, writer.failed_details, 1)[0]
            logger.warning("%s: %s; the first: %s", printable(str(self)), message, printable(failure_line(first)))
            report_status(self, f"{progress.message()}; {message}")
