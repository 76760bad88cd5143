"""A managed directory output: lazy readers, and a writer that stages items and publishes them.

The target and its writer speak to the output's *place* in the storage in force
(:func:`luisy.directory.places.place`): a local folder (:mod:`luisy.directory.local`, where the
publish protocol is described) or objects in memory (:mod:`luisy.directory.memory`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any, NoReturn

import luigi

from luisy import config, formats
from luisy.atomic import defer
from luisy.digests import digest
from luisy.directory.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestHeader,
    bad_file_name,
    luisy_version,
)
from luisy.directory.places import Place, place
from luisy.directory.table import Item, Kept, NewItems, PartedItems, PartedSources
from luisy.errors import ItemNameError, ManifestError, UnsafePathError
from luisy.parameters import significant_params
from luisy.paths import with_extension
from luisy.regular_files import not_regular
from luisy.storage import Storage, active

logger = logging.getLogger("luisy")


class DirectoryTarget(luigi.LocalTarget):
    """A folder of item files listed by a manifest; complete iff the manifest exists and is sound."""

    def __init__(self, path: str | os.PathLike[str], *, file_format: formats.Format = formats.PICKLE,
                 owner: str | None = None, storage: Storage | None = None, **options: Any):
        super().__init__(os.fspath(path))
        self.file_format = file_format
        self.options = options
        self.owner = owner or type(self).__name__
        self.task: luigi.Task | None = None
        #: The storage the folder is in (default: the one in force, :func:`luisy.storage.active`).
        self.storage = storage if storage is not None else active()
        #: The folder's place in that storage: its manifest, staging and publishing.
        self.place: Place = place(self.storage, self.folder, self.owner)

    @classmethod
    def for_task(cls, task: luigi.Task, path: Path, **options: Any) -> DirectoryTarget:
        target = cls(path, owner=repr(task), **options)
        target.task = task
        return target

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def exists(self) -> bool:
        return self.place.header() is not None

    def current_header(self) -> ManifestHeader | None:
        """The manifest's first line; ``None`` if there is none or it is corrupt."""
        return self.place.header()

    def current_manifest(self) -> Manifest | None:
        """The manifest; ``None`` if there is none or it is corrupt."""
        try:
            return self.place.manifest()
        except ManifestError:
            return None

    def problem(self) -> str | None:
        """Why the manifest (or one of its parts: all are read) is corrupt; ``None`` if it is sound or absent."""
        try:
            manifest = self.place.manifest()
            if manifest is not None:
                manifest.items.parts()
        except ManifestError as error:
            return error.format_message()
        return None

    @property
    def header(self) -> ManifestHeader:
        """The manifest's first line (counts, digests, parameters), read without the item lists."""
        header = self.place.header()
        if header is None:
            self._published()
        return header

    def sources_digest(self) -> str:
        """Digest of the items as inputs of a downstream directory task (see :meth:`source_items`)."""
        return self.header.items_digest

    @property
    def manifest(self) -> Manifest:
        """The current manifest; ``FileNotFoundError`` if never published, ``ManifestError`` if corrupt."""
        manifest = self.place.manifest()
        if manifest is None:
            self._published()
        return manifest

    def _published(self) -> NoReturn:
        """Raise the error that says why the folder has no usable manifest."""
        self.place.manifest()  # a corrupt one raises ManifestError naming the file and the fault
        raise FileNotFoundError(f"{self.owner}: {self.folder} has no readable {MANIFEST_NAME}")

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` resolves inside the folder (symbolic links followed)."""
        return self.place.contains(os.fspath(path))

    def paths(self) -> list[Path]:
        """The item files, in item-name order."""
        table = self.manifest.items
        return self.place.paths([table[name].file for name in sorted(table)])

    def __len__(self) -> int:
        return len(self.manifest.items)

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, object)`` for each item, in name order, one at a time.

        Another process may publish while this iterates: the items still come from the manifest
        read at the start (replaced files are kept for ``[luisy] keep_replaced_seconds``).
        """
        manifest = self.manifest
        read = self._reader()
        for name in sorted(manifest.items):
            yield name, read(os.path.join(self.path, manifest.items[name].file))

    def read(self) -> Iterator[Any]:
        """The item objects, lazily (luisy 1.x returned a generator too)."""
        return (obj for _, obj in self.items())

    def source_items(self) -> PartedSources:
        """The items as inputs of a downstream directory task; the checksum is the fingerprint."""
        return PartedSources(self.manifest.items, self.path, self._reader())

    def _reader(self) -> Callable[[str], Any]:
        return self.place.reader(formats.Reading(self.file_format, self.options))

    def restamp(self, task: luigi.Task) -> None:
        """Record ``task``'s current parameters and code fingerprint in the manifest, items unchanged."""
        self.place.restamp(lambda manifest: replace(
            manifest, params=significant_params(task),
            code_fingerprint=getattr(task, "code_fingerprint", lambda: None)()))

    def tidy(self) -> bool:
        """Remove what writers that are gone left (see :meth:`LocalFolder.tidy`)."""
        return self.place.tidy()

    def resumable(self, task: luigi.Task) -> dict[str, Item]:
        """Items an interrupted run of ``task`` (same code and parameters) checkpointed, by name,
        with the input fingerprint each was made from; the next run takes them over."""
        return self.place.checkpointed(_configuration(task))

    def repair(self, items: Iterable[str] = (), strays: Iterable[str] = (), corrupt: bool = False,
               checked: ManifestHeader | None = None) -> None:
        """Drop bad ``items`` and stray files (see :meth:`LocalFolder.repair`); the task runs again.
        ``checked``: the header of the publication they were found in; items are dropped only while
        it is still the current one. With none of them, only lock files that are folders are
        removed (see :meth:`lock_problems`)."""
        self.place.repair(items, strays, corrupt, checked)

    def lock_problems(self) -> list[str]:
        """Lock files beside the folder that no run can take (folders, sockets), one line each;
        :meth:`repair` removes them."""
        return [f"{not_regular(path, what, own=False)}: no run can lock it"
                for path, what in self.place.broken_locks()]

    def note_verified(self, bad: dict[str, str], header: ManifestHeader | None = None) -> None:
        """Record which items a verification found bad (name → problem), for the publication whose
        ``header`` was read before checking (default: the current one)."""
        header = self.place.header() if header is None else header
        if header is not None:
            self.place.note_verified(publication(header), bad, header.item_count)

    def verified_bad(self) -> dict[str, str]:
        """The items the last verification of the current publication found bad; ``{}`` if none
        did, or the output was published, repaired or restamped since."""
        header = self.place.header()
        return self.place.verified_bad(publication(header), header.item_count) if header is not None else {}

    def writer(self, task: luigi.Task | None = None) -> DirectoryWriter:
        """A writer whose committed items replace the folder's content (see :meth:`DirectoryWriter.keep`).

        ``task`` (default: the task whose output this is) is recorded in the manifest.
        """
        return DirectoryWriter(self, task if task is not None else self.task)

    def write(self, obj: Any) -> None:
        """Publish a mapping ``{name: object}`` as the folder's items."""
        if not hasattr(obj, "items"):
            raise TypeError(f"{self.owner}: a directory output is written from a mapping name → object, "
                            f"got {type(obj).__qualname__}")
        with self.writer() as writer:
            for name, item in obj.items():
                writer.write(name, item)


class DirectoryWriter:
    """Stages items in a temporary folder beside the output and publishes them on commit.

    Use as a context manager: the block's items are published when it ends without error, and
    discarded otherwise (inside a task's ``run()``, when ``run()`` returns).
    """

    def __init__(self, target: DirectoryTarget, task: luigi.Task | None = None):
        self.target = target
        self.task = task
        self.started = _now()
        #: Digest of the inputs this run covers; if left ``None``, asked of the task at commit.
        self.inputs_digest: str | None = None
        #: The items made so far.
        self.new = NewItems()
        self._checkpointed_rows = 0
        #: The items of the current manifest carried over (see :meth:`keep`).
        self.kept: set[str] | Kept = set()
        #: How many parts the new manifest has (default: as many as the current one, unless far off).
        self.part_count: int | None = None
        #: Digest of each part's input items, for the next run to compare its input with.
        self.inputs_parts: list[str | None] | None = None
        self.failed: dict[str, str] = {}
        self.failed_sources: dict[str, str | None] = {}
        self.failed_details: dict[str, dict[str, str]] = {}
        self.skipped: dict[str, str | None] = {}
        #: How many of :attr:`new` an interrupted run made (see :meth:`add`).
        self.resumed = 0
        self._names_by_file: dict[str, str] = {}
        #: Set by a caller that checked all item names beforehand: no two can share a file, so
        #: the writer need not keep a million of them to check each one.
        self.names_checked = False
        #: Whether :meth:`stage` may run in another process (it writes files, not objects in memory).
        self.parallel = target.place.parallel
        self.staging = target.place.staging(_configuration(task))

    def __getstate__(self) -> dict[str, Any]:
        # A copy sent to another machine (a Dask worker) only stages items; what the run records
        # stays with this writer, which alone publishes.
        return {"target": self.target, "staging": self.staging}

    def __enter__(self) -> DirectoryWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            defer(self.commit, self.keep_for_next_run)
        else:
            self.abort()

    def item_file(self, name: str) -> str:
        """The file name (relative to the folder) of item ``name``; rejects names that escape."""
        check_item_name(self.target.owner, name)
        return with_extension(name, self.target.file_format.ext)

    def write(self, name: str, obj: Any, source: str | None = None) -> None:
        """Stage item ``name``; ``source`` is the fingerprint of the input it came from."""
        self._claim(name, self.item_file(name))
        self.add(name, self.stage(name, obj), source)

    def stage(self, name: str, obj: Any) -> Item:
        """Write item ``name`` into :attr:`staging` without recording it (in a worker process too,
        where :attr:`parallel`)."""
        file = self.item_file(name)
        self.target.file_format.ensure_writable(obj, f"{self.target.owner} item {name!r}")
        return self.staging.write(file, obj, functools.partial(self.target.file_format.write, **self.target.options))

    def add(self, name: str, staged: Item, source: str | None = None, resumed: bool = False) -> None:
        """Record an item :meth:`stage` wrote (here or in a worker process); ``resumed``: an
        interrupted run wrote it, this one takes it over."""
        self._claim(name, staged.file)
        self.new.add(name, staged._replace(source=source))
        self.resumed += resumed
        self.failed.pop(name, None)
        self.failed_details.pop(name, None)

    def _claim(self, name: str, file: str) -> None:
        if self.names_checked:
            return
        other = self._names_by_file.setdefault(file, name)
        if other != name:
            raise ItemNameError(f"{self.target.owner}: items {other!r} and {name!r} would both be written to "
                                f"{file!r}; give them names that differ by more than the extension")

    def keep(self, names: Iterable[str] | Kept) -> None:
        """Carry these items of the current manifest over unchanged (a :class:`Kept` names whole
        parts of them; it replaces what was kept before)."""
        if isinstance(names, Kept):
            self.kept = names
        else:
            self.kept.update(names)

    def checkpoint(self) -> None:
        """Make the items written so far durable for a writer that takes over after an interruption."""
        self.staging.checkpoint(_configuration(self.task), self.new.since(self._checkpointed_rows))
        self._checkpointed_rows = self.new.rows

    def resumable(self) -> dict[str, Item]:
        """Items an interrupted writer of the same task (same code and parameters) had written,
        by name, with the input fingerprint each was made from."""
        return dict(self.staging.resumed)

    def fail(self, name: str, error: str, source: str | None = None, details: dict[str, str] | None = None) -> None:
        """Record a failed item; it is not published, and the next run retries it. ``details``:
        its input file and traceback (see :attr:`Manifest.failed_details`)."""
        self.failed[name] = error
        self.failed_sources[name] = source
        if details:
            self.failed_details[name] = details

    def skip(self, name: str, source: str | None) -> None:
        """Record an item whose ``process`` returned ``None``: nothing to publish, nothing to redo."""
        self.skipped[name] = source

    def abort(self) -> None:
        self.staging.discard()

    def keep_for_next_run(self) -> None:
        """Leave the written items to the next writer of the output, as an interrupted run does
        (the ``run()`` that wrote them failed, or was stopped, after the writer's block ended)."""
        self.staging.keep()  # first: a checkpoint that fails must not take the written items with it
        try:
            self.checkpoint()
        finally:
            self.staging.discard()

    def commit(self) -> Manifest:
        """Publish the written items with the kept ones; the previous state stays until then."""
        try:
            return self.target.place.publish(self)
        finally:
            self.abort()

    def manifest(self, items: PartedItems, current: Manifest, retired: dict[str, float]) -> Manifest:
        """The manifest of a publish of ``items`` over ``current``, keeping the ``retired`` files."""
        task = self.task
        skipped = {n: s for n, s in current.skipped.items() if n in self.kept}
        skipped.update(self.skipped)
        return Manifest(
            items=items,
            failed=dict(sorted(self.failed.items())),
            failed_sources=dict(sorted(self.failed_sources.items())),
            failed_details=dict(sorted(self.failed_details.items())),
            skipped=dict(sorted(skipped.items())),
            retired=retired,
            task=task.get_task_family() if task is not None else "",
            params=significant_params(task) if task is not None else {},
            code_fingerprint=getattr(task, "code_fingerprint", lambda: None)() if task is not None else None,
            luisy_version=luisy_version(),
            started=self.started,
            finished=_now(),
            processed=len(self.new) - self.resumed + len(self.failed) + len(self.skipped),
            resumed=self.resumed,
            run=config.current().id,
            inputs_digest=self.inputs_digest if self.inputs_digest is not None else _inputs_digest(task),
        )


def publication(header: ManifestHeader) -> str:
    """Identifies one publication of a folder: it changes with every publish, repair or restamp."""
    return digest(*map(str, astuple(header)))


def _configuration(task: luigi.Task | None) -> dict[str, Any]:
    """What items written for ``task`` depend on, besides their input: its code and parameters."""
    if task is None:
        return {}
    return {"code_fingerprint": getattr(task, "code_fingerprint", lambda: None)(),
            "params": significant_params(task)}


def _inputs_digest(task: luigi.Task | None) -> str | None:
    """What the task says its output is made from now; ``None`` when that cannot be known."""
    try:
        return task.current_inputs_digest()  # type: ignore[union-attr]
    except Exception:  # no task, or its inputs are missing: nothing to compare with later
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def check_item_name(owner: str, name: str) -> None:
    """Raise :class:`~luisy.errors.UnsafePathError` unless ``name`` can name an item file in the folder."""
    if not isinstance(name, str) or bad_file_name([name]) is not None:
        raise UnsafePathError(
            f"{owner}: item name {name!r} cannot name a file inside the folder: it must be a non-empty "
            "relative path without '..', '.', empty components, backslashes or NUL bytes, and no part may "
            "start with .luisy or _luisy")


