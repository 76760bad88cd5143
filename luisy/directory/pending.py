"""What a run of a directory task has to do: its input items compared with its manifest.

A manifest of several parts records, for each part, the digest of the input items it was made
from. Where the input's items of a part have that digest, the part is kept whole, unread: a rerun
after ten new files among a million reads the ten parts they fall in, not the million items.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from luisy.directory.manifest import Manifest
from luisy.directory.table import ItemTable, Kept
from luisy.parts import part_count, part_of
from luisy.sources import InPartOrder, SourceItem, SourceItems, SourcesInParts, fingerprints_of, names_of, select

Failure = tuple[str, "str | None", "dict[str, str] | None"]
_MISSING = object()


@dataclass(frozen=True)
class Pending:
    """What a run of a directory task would do with its input items, and why."""

    #: Input items to process: new, changed, and failed ones to retry.
    todo: Sequence[SourceItem]
    #: Names of published items to carry over unchanged (a :class:`Kept` names whole parts).
    keep: set[str] | Kept
    #: Failures to keep as they are (name → error, input fingerprint and details; only with retries off).
    kept_failures: dict[str, Failure]
    new: int = 0
    changed: int = 0
    removed: int = 0
    retried: int = 0
    #: Every item is processed: nothing usable is published, or parameters or code changed.
    everything: bool = False
    #: How many parts the manifest the run publishes has, and the digest of each part's input items.
    part_count: int = 1
    inputs_parts: list[str | None] | None = field(default=None, repr=False)


def parts_for(items: Sequence[SourceItem], current: int = 0) -> int:
    """How many parts the output of ``items`` is stored in: as many as items held in parts have
    (an upstream output, a remembered listing: so that parts are compared part by part down a
    pipeline), else by their number."""
    if isinstance(items, SourcesInParts):
        return items.part_count
    return part_count(len(items), current)


def everything(items: Sequence[SourceItem]) -> Pending:
    """Every item to do: there is no usable manifest. Items read part by part from files are
    done in that order, so that a run holds a few parts of them at a time."""
    count = parts_for(items)
    todo = InPartOrder(items) if isinstance(items, SourcesInParts) and items.stored and not items.held_back else items
    return Pending(todo, set(), {}, new=len(items), everything=True, part_count=count,
                   inputs_parts=_inputs_parts(items, count))


def compare(items: Sequence[SourceItem], manifest: Manifest, retry: bool) -> Pending:
    """What to do with ``items`` given the ``manifest`` of the same configuration; ``retry``:
    failed items count as not done."""
    count = parts_for(items, manifest.items.part_count)
    inputs = _inputs_parts(items, count)
    if count == 1 or count != manifest.items.part_count or inputs is None:
        whole = manifest.items.full()
        todo, keep, kept_failures, counts = _compare(items, whole, manifest, retry, lambda name: True,
                                                     items_held(items))
        return Pending(todo, keep, kept_failures, counts["new"], counts["changed"], counts["removed"],
                       counts["retried"], part_count=count, inputs_parts=inputs)
    assert isinstance(items, SourceItems)
    recorded = manifest.items.inputs()
    failed_parts = {part_of(name, count) for name in manifest.failed} if retry else set()
    clean = [p for p in range(count) if recorded[p] is not None and recorded[p] == inputs[p] and p not in failed_parts]
    dirty = sorted(set(range(count)).difference(clean))
    clean_set = frozenset(clean)
    in_clean = [name for name in itertools.chain(manifest.skipped, manifest.failed)
                if part_of(name, count) in clean_set]
    kept_failures = {name: failure(manifest, name) for name in in_clean if name in manifest.failed}
    whole_items = sum(manifest.items.records[p].items for p in clean) + len(in_clean) - len(kept_failures)
    kept = Kept(count, clean, whole_items)
    todos: list[Sequence[SourceItem]] = []
    counts = dict.fromkeys(("new", "changed", "removed", "retried"), 0)
    for p, part in items.parts(count, dirty).items():
        todo, names, failures, part_counts = _compare(part, manifest.items.part(p), manifest, retry,
                                                      _in_part(count, p), items_held(items))
        todos.append(todo)
        kept.update(names)
        kept_failures.update(failures)
        for key, value in part_counts.items():
            counts[key] += value
    return Pending(_joined(todos, items), kept, kept_failures, counts["new"], counts["changed"], counts["removed"],
                   counts["retried"], part_count=count, inputs_parts=inputs)


def _in_part(count: int, p: int) -> Callable[[str], bool]:
    return lambda name: part_of(name, count) == p


def _inputs_parts(items: Sequence[SourceItem], count: int) -> list[str | None] | None:
    return items.part_digests(count) if isinstance(items, SourceItems) else None


def _joined(todos: list[Sequence[SourceItem]], like: SourceItems) -> SourceItems:
    """The items of ``todos`` (parts of ``like``) as one, sorted by name."""
    rows = sorted((item.name, item.fingerprint, item.path) for todo in todos for item in todo)
    return SourceItems([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], like.reader)


def failure(manifest: Any, name: str) -> Failure:
    """A failed item's record in ``manifest``: error, input fingerprint, details."""
    return manifest.failed[name], manifest.failed_sources.get(name), manifest.failed_details.get(name)


def items_held(items: Sequence[SourceItem]) -> frozenset[str]:
    """The names of input items held back (in the folder, not settled yet: see ``luisy watch``)."""
    return getattr(items, "held_back", frozenset())


def _compare(items: Sequence[SourceItem], published: ItemTable, manifest: Manifest, retry: bool,
             mine: Callable[[str], bool], held: frozenset[str],
             ) -> tuple[Sequence[SourceItem], set[str], dict[str, Failure], dict[str, int]]:
    """What to do with ``items`` given the ``published`` items they may have made (all, or one
    part: ``mine`` tells which of the manifest's failed and skipped items and of the ``held``
    back input items belong)."""
    skipped = {n: s for n, s in manifest.skipped.items() if mine(n)}
    failed = {n: e for n, e in manifest.failed.items() if mine(n)}
    done: dict[str, Any] = dict(zip(published.names, published.sources, strict=True))
    done.update(skipped)
    if not retry:
        done.update((name, manifest.failed_sources.get(name)) for name in failed)
    # Whole columns at once (map over C functions): a rerun of a million items changes a few.
    names, fingerprints = names_of(items), fingerprints_of(items)
    before = list(map(done.get, names, itertools.repeat(_MISSING)))
    rows = list(itertools.compress(range(len(names)), map(operator.ne, before, fingerprints)))
    new = retried = 0
    for row in rows:
        if before[row] is _MISSING:
            if retry and names[row] in failed:
                retried += 1
            else:
                new += 1
    seen = len(names) - before.count(_MISSING)
    keep = set(names)  # the unchanged ones: each is published, skipped or failed
    keep.difference_update(names[row] for row in rows)
    kept_failures = {}
    for name in filter(failed.__contains__, names) if failed else ():  # few, in input order
        if name in keep and name not in published and name not in skipped:
            keep.discard(name)
            kept_failures[name] = failure(manifest, name)
    # Items held back (not settled yet, see luisy watch) stay as the manifest has them.
    for name in held:
        if not mine(name):
            continue
        seen += name in done
        if name in published or name in skipped:
            keep.add(name)
        elif name in failed:
            kept_failures[name] = failure(manifest, name)
    counts = {"new": new, "changed": len(rows) - new - retried, "removed": len(done) - seen, "retried": retried}
    return select(items, rows), keep, kept_failures, counts
