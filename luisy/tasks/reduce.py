"""Reducing a directory task's items into one output, incrementally: :class:`ReduceTask`.

The state of the reduction is kept beside the output (``.luisy-reduce/<output name>.state``)
with the identity (name, checksum) of every item folded into it. A rerun folds only what changed:

* a new item is folded;
* a changed item is unfolded (its old version) and folded; a removed item is unfolded;
* without ``unfold()``, a changed or removed item folds everything again; so does a change of the
  reduce's own code or parameters, a state that cannot be read, and an old version that is gone
  (a directory output keeps the files of replaced items for ``[luisy] keep_replaced_seconds``).

The state is saved with the output when ``run()`` returns, the state first: killed in between,
the next run finds a state that covers every item and only writes the output again. ``luisy
plan`` says what a run would fold; the summary and the journal record what it folded.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from luigi.task import flatten

from luisy import config, storage
from luisy.digests import digest
from luisy.directory.manifest import Manifest
from luisy.directory.runner import item_executor
from luisy.directory.table import Item, ItemTable, PartedItems, PartRecord
from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError, ManifestError, ReduceError
from luisy.executors import ItemStatus, Outcome, SerialExecutor
from luisy.fingerprint.code import code_fingerprint
from luisy.history import journal
from luisy.parameters import significant_params
from luisy.reasons import Kind, Reason
from luisy.regular_files import open_regular
from luisy.tasks.base import Task

__all__ = ["ReduceTask", "STATE_DIR"]

#: The folder beside a reduce's output that holds its state.
STATE_DIR = ".luisy-reduce"
NO_UNFOLD = "items changed or were removed, and it has no unfold()"
#: Into how many parts the items are split when they are folded in parallel.
PARTS = 64
#: A state file larger than this is none luisy wrote.
STATE_MAX_BYTES = 1 << 34


@dataclass
class Delta:
    """What a run of a reduce folds: items by name, or everything again and why."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Why every item is folded again (``None``: only the items above are).
    refold: str | None = None
    #: The items changed and removed as the saved state covers them.
    before: dict[str, Item] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "removed": len(self.removed)}


class ReduceTask(Task):
    """Reduces the items of its directory-task input into one output of any single-file format.

    Define :meth:`initial` and :meth:`fold`; ``unfold`` lets a changed or removed item be taken
    back out instead of folding everything again; ``combine`` lets a run that folds everything
    fold parts in parallel; :meth:`finish` turns the state into what is written. The state must
    be picklable.
    """

    def initial(self) -> Any:
        """The empty state."""
        raise NotImplementedError(f"{type(self).__name__} must define initial(): the empty state")

    def fold(self, state: Any, name: str, item: Any) -> Any:
        """``state`` with the item ``name`` added."""
        raise NotImplementedError(f"{type(self).__name__} must define fold(state, name, item)")

    #: ``unfold(state, name, item)``: ``state`` with the item taken back out. Optional: without it,
    #: a changed or removed item folds everything again.
    unfold: Any = None

    def finish(self, state: Any) -> Any:
        """What is written: the state by default."""
        return state

    def run(self) -> None:
        """Fold what changed in the input since the saved state into it; write :meth:`finish`'s result."""
        source = self._source()
        manifest = source.manifest
        saved = self._saved()
        delta = self._delta(saved, manifest)
        read = source._reader()

        def item(name: str, at: Item) -> Any:
            return read(os.path.join(source.path, at.file))

        old: dict[str, str] = {}
        if delta.refold is None:
            for name in [*delta.changed, *delta.removed]:
                where = source.place.old_version(delta.before[name])
                if where is None:
                    delta.refold = f"the old version of item {name!r} is gone"
                    break
                old[name] = where
        if delta.refold is not None:
            (folded, files), unfolded = manifest.items.names_and_files(), []
            state = self._fold_all(source, folded, files)
            del files
        else:
            state, unfolded = (saved or {})["state"], [*delta.removed, *delta.changed]
            for name in unfolded:
                state = self.unfold(state, name, read(old[name]))
            folded = [*delta.changed, *delta.new]
            for name in folded:
                state = self.fold(state, name, item(name, manifest.items[name]))
        counts = {"folded": len(folded), "unfolded": len(unfolded), "refolded": delta.refold}
        kept = {"key": self._key(), **_covered(manifest), "state": state, "counts": counts}
        storage.active().save(self._state_path(), kept, _write_state)
        journal.note_reduce(len(folded), len(unfolded), delta.refold is not None)
        # For this build's summary, without reading the state again (if the summary is made here).
        self._luisy_counts = (config.current().id, counts)
        self.write(self.finish(state))

    #: ``combine(state_a, state_b)``: one state covering the items of both. Optional: with it, a
    #: run that folds everything folds parts of the items in parallel (in item processes or on the
    #: Dask cluster, as a directory task's items) and combines the parts' states in item order.
    combine: Any = None

    def _fold_all(self, source: DirectoryTarget, names: Sequence[str], files: Sequence[str]) -> Any:
        """The state of all items (``names`` and their ``files``), in that order: folded in parts
        where ``combine()`` allows it. The columns are not zipped into a list: a million pairs
        would take 70 MB."""
        executor = item_executor(self, source.place.parallel, len(names)) if self.combine is not None else None
        if executor is None or isinstance(executor, SerialExecutor):
            return _FoldPart(self, source, [(names, files)])(0).staged
        size = max(1, -(-len(names) // PARTS))
        work = _FoldPart(self, source, [(names[start:start + size], files[start:start + size])
                                        for start in range(0, len(names), size)])
        states: dict[int, Any] = {}
        for outcome in executor.map(work, len(work.parts)):
            if outcome.status is not ItemStatus.OK:
                raise ReduceError(f"{self}: folding part {outcome.index + 1} of the items failed: {outcome.error}"
                                  + (f"\n{outcome.traceback}" if outcome.traceback else ""))
            states[outcome.index] = outcome.staged
        state = states[0]
        for index in range(1, len(work.parts)):
            state = self.combine(state, states[index])
        return state

    def why(self, detail: bool = False) -> list[Reason]:
        reasons = super().why(detail)
        if not detail or not reasons or reasons[0].kind is Kind.NO_OUTPUT:
            return reasons
        try:
            delta = self._delta(self._saved(), self._source().manifest)
        except (FileNotFoundError, LuisyError):  # its input is not made yet: it says so itself
            return reasons
        counts = delta.counts()
        upstream = next((t for t in flatten(self.requires()) if not t.complete()), None)
        if upstream is not None and delta.refold is None:  # what it publishes is folded too
            pending = next((r for r in upstream.why(True) if r.kind is Kind.ITEMS), None)
            if pending is None:
                return [*reasons, Reason(Kind.FOLD, (f"what {upstream} makes",))]
            counts = {key: counts[key] + pending.counts.get(key, 0) for key in counts}
            if (counts["changed"] or counts["removed"]) and self.unfold is None:
                delta.refold = NO_UNFOLD
        if delta.refold is not None:
            return [*reasons, Reason(Kind.REFOLD, (delta.refold,))]
        return [*reasons, Reason(Kind.FOLD, counts=counts)]

    def last_counts(self) -> dict[str, Any] | None:
        """What the last run folded: ``folded``, ``unfolded`` and ``refolded`` (why it folded
        everything again, or ``None``)."""
        known = getattr(self, "_luisy_counts", None)
        if known is not None and known[0] == config.current().id:
            return dict(known[1])
        saved = self._saved()  # it ran in another process, or in another build: the state says
        return None if saved is None else dict(saved.get("counts") or {}) or None

    def _source(self) -> DirectoryTarget:
        found = [t for t in flatten(self.input()) if isinstance(t, DirectoryTarget)]
        if len(found) != 1:
            raise ReduceError(f"{self}: a ReduceTask requires exactly one directory task (it requires {len(found)})")
        return found[0]

    def _key(self) -> str:
        """What the state depends on besides the items: the reduce's code and parameters."""
        return digest(code_fingerprint(type(self)).digest, *(f"{k}={v}" for k, v in significant_params(self).items()))

    def _state_path(self) -> str:
        output = os.fspath(flatten(self.output())[0].path)
        return os.path.join(os.path.dirname(output), STATE_DIR, os.path.basename(output) + ".state")

    def _saved(self) -> dict[str, Any] | None:
        """The saved state (``None``: there is none; ``{}``: one that cannot be read)."""
        path = self._state_path()
        store = storage.active()
        if not store.exists(path):
            return None
        try:
            found = store.load(path, _read_state)
        except Exception:  # damaged, or pickled by other code: everything is folded again
            return {}
        return found if isinstance(found, dict) else {}

    def _delta(self, saved: dict[str, Any] | None, manifest: Manifest) -> Delta:
        if saved is None:
            return Delta(refold="first run")
        if not saved or not ({"items", "parts"} & saved.keys()):
            return Delta(refold="its saved state cannot be read")
        if saved.get("key") != self._key():
            return Delta(refold="its code or parameters changed")
        now = manifest.items
        try:
            pairs = _compared(saved, now)
        except ManifestError:
            return Delta(refold="the input's earlier item list is gone")
        except (ValueError, TypeError):
            return Delta(refold="its saved state cannot be read")
        delta = Delta()
        for before, after in pairs:
            if before.names == after.names and before.checksums == after.checksums:  # compared in C
                continue
            old = dict(zip(before.names, before.checksums, strict=True))
            current = dict(zip(after.names, after.checksums, strict=True))
            delta.new += [n for n in after.names if n not in old]
            delta.changed += [n for n in after.names if n in old and old[n] != current[n]]
            delta.removed += [n for n in before.names if n not in current]
            delta.before.update((n, before[n]) for n in before.names if n not in current or old[n] != current[n])
        if (delta.changed or delta.removed) and self.unfold is None:
            delta.refold = NO_UNFOLD
        return delta


def _covered(manifest: Manifest) -> dict[str, Any]:
    """What a saved state records of the items it covers: the input's part records, where its
    parts are stored (their files stay for readers of an earlier manifest); else the items as
    columns (a million items pickle in a fraction of a second)."""
    table = manifest.items
    if table.part_count > 1 and all(record.file for record in table.records):
        return {"parts": [tuple(record) for record in table.records]}
    return {"items": (table.names, table.files, table.sizes, table.checksums)}


def _compared(saved: dict[str, Any], now: PartedItems) -> list[tuple[ItemTable, ItemTable]]:
    """Pairs of (the items the saved state covers, the items now) to compare: only the parts
    whose digest changed, where both are in as many parts; else the whole tables."""
    records = saved.get("parts")
    if records is not None:
        records = [PartRecord(*record) for record in records]
        if len(records) == now.part_count:
            return [(now.read_part(p, old), now.part(p))
                    for p, (old, new) in enumerate(zip(records, now.records, strict=True)) if old.digest != new.digest]
        return [(PartedItems(records, [now.read_part(p, r) for p, r in enumerate(records)]).full(), now.full())]
    return [(_table(saved), now.full())]


def _table(saved: dict[str, Any]) -> ItemTable:
    """The items a saved state covers as columns (``ValueError`` if it holds no readable list)."""
    columns = saved.get("items")
    if not (isinstance(columns, tuple) and len(columns) == 4 and all(isinstance(c, list) for c in columns)):
        raise ValueError("no item list")
    names, files, sizes, checksums = columns
    return ItemTable(names, files, sizes, checksums, [None] * len(names))  # ValueError: of different lengths


class _FoldPart:
    """Folds part ``index`` of the items (names and files) from the empty state; picklable, so
    that it can run in an item process or on a Dask worker."""

    def __init__(self, task: ReduceTask, source: DirectoryTarget,
                 parts: list[tuple[Sequence[str], Sequence[str]]]) -> None:
        self.task, self.source, self.parts = task, source, parts

    def __call__(self, index: int) -> Outcome:
        read = self.source._reader()
        state = self.task.initial()
        names, files = self.parts[index]
        for name, file in zip(names, files, strict=True):
            state = self.task.fold(state, name, read(os.path.join(self.source.path, file)))
        return Outcome(ItemStatus.OK, index, staged=state)


def _read_state(path: str) -> Any:
    with open_regular(path, own=True, limit=STATE_MAX_BYTES) as f:
        return pickle.load(f)


def _write_state(obj: Any, path: Any) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
