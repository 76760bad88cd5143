"""The items of a directory task, one row each, and what became of them (``luisy items``).

Rows come in name order, one at a time: a folder of a million items is listed without building
a million-line text. Each row says the item's state — ``ok`` (published), ``skipped``
(``process`` returned ``None``), ``failed``, ``bad`` (published, but the last ``luisy verify``
found its file damaged or missing) or ``kept`` (made by an interrupted run, published by the
next) — its input file, and for a failed item the error and where the item's code failed.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import shlex
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import luigi
from luigi.task import flatten

from luisy.directory.manifest import Manifest
from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError, ManifestError
from luisy.tracebacks import indented, user_frames, where

__all__ = ["ItemRow", "STATES", "items", "first_failures", "failed_row", "failure_line", "command_line", "text_lines",
           "json_text"]

#: Every state an item can be in; a later one wins where an item is in two (an item published
#: and made again by an interrupted run is ``kept``).
STATES = ("skipped", "ok", "failed", "bad", "kept")
#: Failed items a run's summary names (``luisy items --failed`` lists all).
SHOWN = 3
#: Items ``luisy items`` lists on a terminal unless told otherwise.
TERMINAL_LIMIT = 100


@dataclass(frozen=True)
class ItemRow:
    """One item of a directory output."""

    name: str
    #: One of :data:`STATES`.
    state: str
    #: The input file it is made from (``None``: not known, e.g. the input is gone).
    input: str | None = None
    #: ``failed``: the error's line; ``bad``: what ``verify`` found.
    error: str = ""
    #: ``failed``: the whole traceback of the item's code (see :mod:`luisy.tracebacks`).
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The row for ``--json``."""
        return asdict(self)

    def lines(self, verbose: int = 0) -> list[str]:
        """``state  name  input  error``; with ``verbose`` the traceback below it (1: the frames of
        the user's code, 2: all)."""
        cells = [f"{self.state:<7}", self.name, self.input or "-", self.error]
        out = ["  ".join(cell for cell in cells if cell)]
        return out + (self.traceback_lines(verbose > 1, "    ") if verbose else [])

    def traceback_lines(self, whole: bool = False, prefix: str = "") -> list[str]:
        """The traceback: the frames of the user's code (``whole``: all), each line after ``prefix``."""
        return indented(self.traceback if whole else user_frames(self.traceback), prefix)

    def described(self) -> str:
        """``'name' (input file ...): error``."""
        return f"{self.name!r}" + (f" (input file {self.input})" if self.input else "") + f": {self.error}"


def first_failures(failed: Mapping[str, str], details: Mapping[str, Mapping[str, str]],
                   count: int = SHOWN) -> list[ItemRow]:
    """Rows of the first ``count`` of ``failed`` (name → error, in name order)."""
    return [failed_row(name, error, details.get(name, {}))
            for name, error in itertools.islice(failed.items(), count)]


def failed_row(name: str, error: str, details: Mapping[str, Any]) -> ItemRow:
    """The row of a failed item; ``details`` may give its ``input`` and ``traceback``."""
    return ItemRow(name, "failed", details.get("input"), error, details.get("traceback", ""))


def failure_line(row: ItemRow) -> str:
    """One line naming a failed item, its input file, its error and where its code failed."""
    place = where(row.traceback)
    return row.described() + (f" at {place}" if place else "")


def command_line(command: str, task: luigi.Task, *options: str) -> str:
    """The ``luisy COMMAND`` command line for ``task`` (``items``: the one that lists its items)."""
    cls = type(task)
    values = task.to_str_params(only_significant=True)
    args = []
    for name, param in task.get_params():
        if name not in values:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(param, luigi.BoolParameter):  # a flag: present when true
            args += [flag] if getattr(task, name) else []
        else:
            args += [flag, values[name]]
    return shlex.join(["luisy", command, f"{cls.__module__}:{cls.__name__}", *args, *options])


def items(task: luigi.Task, states: Collection[str] = (), contains: str = "", inputs: bool = True,
          manifest: Manifest | None = None) -> Iterator[ItemRow]:
    """The rows of ``task``'s items in name order; only those in ``states``, if given, and whose
    name holds ``contains``. ``inputs``: find each item's input file by listing the task's input
    (a failed item's is in its record either way). ``manifest``: the output's, if already read.

    :class:`LuisyError` at once (before the first row) if ``task`` has no directory output or its
    manifest is corrupt.
    """
    target = _directory_output(task)
    found = manifest if manifest is not None else _published(task, target)
    return _rows(task, target, found, set(states or STATES), contains, inputs)


def _rows(task: luigi.Task, target: DirectoryTarget, manifest: Manifest | None, wanted: set[str],
          contains: str = "", with_inputs: bool = True) -> Iterator[ItemRow]:
    resumable = target.resumable(task)
    bad = target.verified_bad() if manifest is not None else {}
    # Only the lists that can give a wanted row are gone through: --failed reads no item table.
    sources: list[Iterable[tuple[str, int]]] = []
    if manifest is not None:
        if "skipped" in wanted:
            sources.append(_tagged(sorted(manifest.skipped), "skipped"))
        if "ok" in wanted:
            sources.append(_tagged(manifest.items.names, "ok"))
        elif "bad" in wanted:
            sources.append(_tagged(sorted(name for name in bad if name in manifest.items), "ok"))
        if "failed" in wanted:
            sources.append(_tagged(sorted(manifest.failed), "failed"))
    sources.append(_tagged(sorted(resumable), "kept"))
    if contains:  # before any row is made: a search of a million names makes the rows it finds only
        sources = [((name, rank) for name, rank in source if contains in name) for source in sources]
    inputs = _input_files(task) if with_inputs and wanted - {"failed"} else {}
    failed = manifest.failed if manifest is not None else {}
    details = manifest.failed_details if manifest is not None else {}
    for name, group in itertools.groupby(heapq.merge(*sources), key=lambda row: row[0]):
        state = STATES[max(rank for _, rank in group)]
        if state == "ok" and name in bad:
            state = "bad"
        if state == "failed":
            yield failed_row(name, failed[name], details.get(name, {}))
        elif state in wanted:
            yield ItemRow(name, state, inputs.get(name), bad.get(name, "") if state == "bad" else "")


def window(task: luigi.Task, offset: int, size: int, manifest: Manifest | None = None) -> list[ItemRow]:
    """Rows ``offset`` to ``offset + size`` of :func:`items` (every state, no input files but
    failed items'), found by bisection: a page deep into a million items costs what the first
    does. ``manifest``: the output's, if already read."""
    target = _directory_output(task)
    manifest = manifest if manifest is not None else _published(task, target)
    if manifest is None:
        return list(itertools.islice(items(task, inputs=False), offset, offset + size))
    published = manifest.items.names
    bad = target.verified_bad()
    # The few items in another list than the published ones, with the state each has at most.
    others: dict[str, int] = {}
    for names, state in ((manifest.skipped, "skipped"), (manifest.failed, "failed"),
                         ((n for n in bad if n in manifest.items), "bad"), (target.resumable(task), "kept")):
        for name in names:
            others[name] = max(others.get(name, -1), STATES.index(state))
    apart = sorted(name for name in others if name not in manifest.items)  # in no published row
    # Published row i is row i + (apart rows before it) of all: the rows before the window are
    # the published ones up to the first at or after ``offset``, and as many apart ones as are left.
    low, high = 0, len(published)
    while low < high:
        middle = (low + high) // 2
        if middle + bisect.bisect_left(apart, published[middle]) >= offset:
            high = middle
        else:
            low = middle + 1
    j = max(0, min(offset - low, len(apart)))
    later = (published[k] for k in range(low, len(published)))
    chosen = list(itertools.islice(heapq.merge(later, apart[j:]), size))
    rows = []
    for name in chosen:
        state = STATES[max(others.get(name, -1), STATES.index("ok") if name in manifest.items else -1)]
        if state == "failed":
            rows.append(failed_row(name, manifest.failed[name], manifest.failed_details.get(name, {})))
        else:
            rows.append(ItemRow(name, state, None, bad.get(name, "") if state == "bad" else ""))
    return rows


def _published(task: luigi.Task, target: DirectoryTarget) -> Manifest | None:
    """The output's manifest (``None``: never published); a corrupt one is a
    :class:`~luisy.errors.ManifestError` saying what to do."""
    try:
        return target.manifest
    except FileNotFoundError:
        return None
    except ManifestError as error:
        raise ManifestError(f"{task}: {error.format_message()}; `{command_line('verify', task, '--repair')}` "
                            "removes it, and the next run makes the output again") from None


def _tagged(names: Iterable[str], state: str) -> Iterator[tuple[str, int]]:
    return zip(names, itertools.repeat(STATES.index(state)))


def _directory_output(task: luigi.Task) -> DirectoryTarget:
    outputs = [o for o in flatten(task.output()) if isinstance(o, DirectoryTarget)]
    if not outputs:
        raise LuisyError(f"{task}: not a directory task, it has no items (see `luisy status` for its state)")
    return outputs[0]


def _input_files(task: Any) -> dict[str, str]:
    """Input item name → file, as the task lists its input now (nothing if it cannot)."""
    try:
        listed = task.input_items()
    except (LuisyError, OSError):  # not a folder input, or the folder is gone: no input files to show
        return {}
    names = getattr(listed, "names", None)
    if names is not None:  # columns: no item objects for a million inputs
        return dict(zip(names, map(str, listed.paths), strict=True))
    return {item.name: str(item.path) for item in listed}


def text_lines(rows: Iterable[ItemRow], verbose: int = 0, limit: int | None = None) -> Iterator[str]:
    """The lines of ``rows`` (see :meth:`ItemRow.lines`), one at a time; after ``limit`` rows, a
    line saying how many more there are."""
    rows = iter(rows)
    for row in itertools.islice(rows, limit):
        yield from row.lines(verbose)
    more = sum(1 for _ in rows)
    if more:
        yield f"... and {more} more: --limit 0 lists them all, as does a pipe (luisy items TASK | less)"


def json_text(rows: Iterable[ItemRow], limit: int | None = None) -> Iterator[str]:
    """A JSON list of ``rows`` (see :meth:`ItemRow.to_dict`), in pieces of one row each."""
    yield "["
    for i, row in enumerate(itertools.islice(rows, limit)):
        yield ("," if i else "") + json.dumps(row.to_dict())
    yield "]"
