"""File and folder targets: luigi ``LocalTarget`` objects that read and write through a Format.

One target class per format keeps luisy 1.x's import paths (``luisy.targets.PickleTarget``...).
Every read and write goes through the storage in force (:mod:`luisy.storage`): files written
atomically, or objects in memory inside :func:`luisy.storage.in_memory` (``LuisyTestCase``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import luigi

from luisy import config, formats, urls
from luisy.directory import snapshot
from luisy.directory.inputs import (
    Entries,
    Folders,
    file_rule,
    folder_items,
    hold_back,
    ignore_rule,
    list_files,
    pattern_suffix,
    source_items,
    stored_items,
)
from luisy.errors import FileReadError
from luisy.fingerprint.content import digests as content_digests
from luisy.fingerprint.content import mode_of
from luisy.regular_files import open_regular
from luisy.sources import Packed, SourceItem, SourceItems, digest
from luisy.storage import Storage, active
from luisy.storage.remote import RemoteStorage


@contextmanager
def scan_once() -> Iterator[None]:
    """Within the block, each input folder is listed and stat'ed once.

    A run checks a directory task's completeness several times (luigi asks before scheduling,
    before running what depends on it, and the task itself plans its items); with 100 000 input
    files each listing costs a noticeable fraction of a second. Input folders are external, so
    luisy never changes them during a run; a change made by someone else while a run is under way
    is seen by the next run. Once the run of a task that consumes a listing has taken it, the block
    keeps it packed (:meth:`DirectoryInputTarget.hand_over`).
    """
    with config.caching("scans"):
        yield


class LuisyTarget(luigi.LocalTarget):
    """A file written and read through :attr:`file_format`; extra keywords go to its reader/writer."""

    file_format: ClassVar[formats.Format] = formats.PICKLE

    def __init__(self, path: str | os.PathLike[str], *, owner: str | None = None, storage: Storage | None = None,
                 **options: Any):
        super().__init__(os.fspath(path))
        #: Where the file is kept (default: the storage in force, :func:`luisy.storage.active`).
        self.storage = storage if storage is not None else active()
        self.options = options
        self.owner = owner or type(self).__name__
        #: What the written file says about where it came from (set for a task's output; kept
        #: inside the file by formats that carry metadata).
        self.provenance: formats.Provenance | None = None

    @classmethod
    def for_task(cls, task: luigi.Task, path: Path, **options: Any) -> LuisyTarget:
        """The target of ``task``'s output at ``path``."""
        return cls(path, owner=repr(task), **options)

    def exists(self) -> bool:
        return self.storage.exists(self.path)

    def read(self) -> Any:
        """The stored object."""
        return self.storage.load(self.path, functools.partial(self.file_format.read, **self.options))

    def write(self, obj: Any) -> None:
        """Check ``obj``'s type, then write it atomically (a failed write leaves nothing behind)."""
        self.file_format.ensure_writable(obj, self.owner)
        write = functools.partial(self.file_format.write, provenance=self.provenance, **self.options)
        self.storage.save(self.path, obj, write)


class LocalTarget(LuisyTarget):
    """luisy 1.x's base class for a file target of one's own: override ``read()`` and ``write(obj)``,
    which work on ``self.path``."""

    def make_dir(self, path: str | os.PathLike[str] | None = None) -> None:
        """Create ``path`` (default: the folder of the file) if it does not exist."""
        self.storage.make_folder(os.fspath(path) if path is not None else os.path.dirname(self.path))


class PickleTarget(LuisyTarget):
    file_format = formats.PICKLE


class CSVTarget(LuisyTarget):
    file_format = formats.CSV_


class ParquetTarget(LuisyTarget):
    file_format = formats.PARQUET


class FeatherTarget(LuisyTarget):
    file_format = formats.FEATHER


class JSONTarget(LuisyTarget):
    file_format = formats.JSON_


class XLSXTarget(LuisyTarget):
    file_format = formats.XLSX_


class HDFTarget(LuisyTarget):
    file_format = formats.HDF_


class H5Target(LuisyTarget):
    """HDF5 through h5py; the writing task's parameters are stored as root attributes."""

    file_format = formats.H5_

    @classmethod
    def for_task(cls, task: luigi.Task, path: Path, **options: Any) -> LuisyTarget:
        options.setdefault("attrs", dict(task.param_kwargs))
        return cls(path, owner=repr(task), **options)

    def attrs(self) -> dict[str, Any]:
        """The root attributes (the parameters of the task that wrote the file)."""
        return formats.H5.read_attrs(self.path)


class NpyTarget(LuisyTarget):
    file_format = formats.NPY


class TextTarget(LuisyTarget):
    file_format = formats.TEXT


class ParquetDirTarget(LuisyTarget):
    """A folder of parquet files read as one DataFrame (files sorted by path, index reset)."""

    file_format = formats.PARQUET

    def parts(self, folder: str | None = None) -> list[Path]:
        """The parquet files of the folder (or of its local copy ``folder``), sorted; hidden and
        ``_``-prefixed files are skipped."""
        root = Path(folder if folder is not None else self.path)
        return sorted(
            p for p in root.rglob("*.parquet")
            if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
        )

    def exists(self) -> bool:
        return self.storage.exists(self.path, folder=True)

    def read(self) -> Any:
        return self.storage.load(self.path, self._read_parts, folder=True)

    def _read_parts(self, path: str) -> Any:
        pd = formats.require("pandas", None, "parquetdir output")
        frames = [self.file_format.read(p, **self.options) for p in self.parts(path)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def write(self, obj: Any) -> None:
        """Replace the folder atomically by one holding ``obj`` as ``part-00000.parquet``."""
        self.file_format.ensure_writable(obj, self.owner)
        self.storage.save(self.path, obj, self._write_part, folder=True)

    def _write_part(self, obj: Any, folder: Path) -> None:
        self.file_format.write(obj, folder / "part-00000.parquet", provenance=self.provenance, **self.options)


class DirectoryInputTarget(luigi.LocalTarget):
    """An existing folder whose files are read one by one (``make_directory_output``, ``directory_input``).

    Files are chosen by a glob ``pattern`` (optionally ``recursive``) and an optional regular
    expression searched in the file name, and read in name order by ``read_file_func``
    (default: by extension). ``None`` results are skipped. Files and folders whose name matches a
    glob in ``ignore`` are never listed. With ``folders=True`` each sub-folder matching
    ``pattern`` is one item instead (with ``marker``, once it holds that file), and
    ``read_file_func`` gets the folder's path (default: the path itself).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_file_func: Callable[[str], Any] | None = None,
        regex_pattern: str | None = None,
        pattern: str = "*",
        recursive: bool = False,
        ignore: Iterable[str] = (),
        folders: bool = False,
        marker: str | None = None,
        owner: str | None = None,
        storage: Storage | None = None,
    ):
        super().__init__(os.fspath(path))
        #: Where the folder is (default: the storage in force, :func:`luisy.storage.active`).
        self.storage = storage if storage is not None else active()
        self.read_file_func = read_file_func
        self.regex = re.compile(regex_pattern) if regex_pattern else None
        self.pattern = pattern
        self.recursive = recursive
        self.ignore = tuple(ignore)
        self.folders = folders
        self.marker = marker
        self.owner = owner or type(self).__name__
        #: Written by nobody during a run (an ExternalTask's folder), so ``scan_once`` may cache it.
        self.external = True
        #: Whose ``input_fingerprint`` says how the files are fingerprinted (by default the run's).
        self.fingerprint_owner: Any = None

    @classmethod
    def for_task(cls, task: luigi.Task, path: Path, **options: Any) -> DirectoryInputTarget:
        target = cls(path, owner=repr(task), **options)
        target.external = getattr(type(task), "run", None) is None
        target.fingerprint_owner = type(task)
        return target

    def exists(self) -> bool:
        return _folder_exists(self.storage, self)

    def paths(self) -> list[Path]:
        """The matching files (or folders), sorted by their path relative to the folder."""
        if self.folders:
            return [Path(path) for path in self.listing().paths]
        return [Path(self.path, rel) for rel in self._files()]

    def _files(self, seen: Folders | None = None, entries: Entries | None = None) -> list[str]:
        return _file_names(self.storage, self, seen, entries)

    def __len__(self) -> int:
        return len(self.listing()) if self.folders else len(self._files())

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, object)`` per file, lazily; the name is the path relative to the folder (or
        the folder's name)."""
        listed = self.listing()
        for name, path in zip(listed.names, listed.paths, strict=True):
            obj = listed.reader(path)
            if obj is not None:
                yield (name if self.folders else os.path.relpath(path, self.path)), obj

    def source_items(self) -> Sequence[SourceItem]:
        """The files as input items of a directory task, named by relative path without extension.

        The fingerprint is size and modification time, so a rerun sees edited files; or, with
        ``input_fingerprint = "content"``, a checksum of the bytes (:mod:`luisy.fingerprint.content`).
        """
        return self.storage.input_items(self.path, self._listed_items)

    def listing(self) -> SourceItems:
        """Every input item in the folder now, settled or not: what ``luisy watch`` observes."""
        return _listing(self.storage, self)

    def local_listing(self) -> SourceItems:
        """:meth:`listing` of a folder on the local file system."""
        if self.folders:
            return folder_items(self.path, self.pattern, self.marker, self.ignore, self._read_file, self.owner)
        if not self._write_once():
            return source_items(self.path, self._files(), self._read_file, self.owner, self._by_content(),
                                pattern_suffix(self.pattern))
        return self._write_once_listing()

    def _write_once_listing(self) -> SourceItems:
        """The listing in parts, remembered (:mod:`luisy.directory.snapshot`): a single folder
        that changed is listed by names, and only its new files are ``stat``-ed."""
        scope = repr(self.selection())
        if not self.recursive:
            found = snapshot.relist(self.path, scope, ignore_rule(self.ignore), file_rule(self.pattern, self.regex),
                                    self._read_file, self.owner, lambda: source_items(
                                        self.path, self._files(), self._read_file, self.owner,
                                        suffix=pattern_suffix(self.pattern)))
            if found is not None:
                snapshot.remember(self.path, scope, found[1], found[0])
                return found[0]
        seen: Folders = []
        entries = None if self.recursive else Entries.new()
        listed = snapshot.in_parts(source_items(self.path, self._files(seen, entries), self._read_file, self.owner,
                                                suffix=pattern_suffix(self.pattern)), self.path, scope)
        snapshot.remember(self.path, scope, seen, listed, entries)
        return listed

    def _by_content(self) -> Callable[..., list[str]] | None:
        """Fingerprints of the files by content, if the task's fingerprint mode says so."""
        if mode_of(self.fingerprint_owner) != "content":
            return None
        return functools.partial(content_digests, self.path, scope=self._scope())

    def _write_once(self) -> bool:
        """Whether the files are taken as never edited in place (:mod:`luisy.directory.snapshot`)."""
        return not self.folders and mode_of(self.fingerprint_owner) == "write-once"

    def _scope(self) -> str:
        return f"{self.pattern}|{self.regex and self.regex.pattern}|{self.recursive}"

    def _listed_items(self) -> SourceItems:
        scans, key = self._scans()
        known = scans.get(key) if scans is not None else None
        if isinstance(known, Packed):  # a run took it: the same items for this task
            known = scans[key] = known.unpack()  # type: ignore[index]
        if isinstance(known, SourceItems):
            return known
        found = self.listing()
        settled = self._settled()
        if settled is not None:
            found = hold_back(found, settled)
        if scans is not None:
            scans[key] = found
        return found

    def _scans(self) -> tuple[dict[tuple[Any, ...], Any] | None, tuple[Any, ...]]:
        """The build's listings of external folders (see ``scan_once``), and this one's key there."""
        scans = config.context().caches.scans if self.external else None
        return scans, (*self._scan_key(), self._by_content() is not None)

    def hand_over(self) -> None:
        """The run that consumes the listing has it: the build keeps it packed (:class:`Packed`),
        for the checks that follow and for another task over the folder, which gets the same
        items (a million of them as strings of their own would otherwise stay in memory until
        the build ends)."""
        scans, key = self._scans()
        known = scans.get(key) if scans is not None else None
        packed = Packed.of(known) if isinstance(known, SourceItems) else None
        if packed is not None:
            scans[key] = packed  # type: ignore[index]

    def sources_digest(self) -> str:
        """Digest of the input items' names and fingerprints (see :meth:`source_items`).

        With ``input_fingerprint = "write-once"`` the last listing's digest, while no folder it
        went through has changed (:mod:`luisy.directory.snapshot`).
        """
        if self._write_once() and self._settled() is None:
            known = snapshot.recall(self.path, repr(self.selection()))
            if known is not None:
                return known
        scans, key = self._scans()
        known = scans.get(key) if scans is not None else None
        if isinstance(known, Packed):
            return known.digest  # a listing a run took
        return digest(self.source_items())  # kept with the items listed within scan_once()

    def _settled(self) -> Mapping[str, str] | None:
        """In a run started by ``luisy watch``: the items found settled (name → fingerprint); the
        others are held back."""
        settled = config.current().settled
        return settled.get(self.selection()) if settled is not None else None

    def selection(self) -> tuple[Any, ...]:
        """What decides which items the target lists: the folder, and how files are selected from it."""
        return (self.path, self.pattern, self.regex and self.regex.pattern, self.recursive, self.ignore,
                self.folders, self.marker)

    def _scan_key(self) -> tuple[Any, ...]:
        return (*self.selection(), self.read_file_func)

    def read(self) -> Any:
        """The objects read from the files (a generator, as in luisy 1.x)."""
        return _read_all(self.storage, self)

    def write(self, obj: Any) -> None:
        raise TypeError(f"{self.owner}: {self.path} is an input folder; luisy does not write to it")

    def _read_file(self, path: str | Path, shown: str | None = None) -> Any:
        """The object in the file at ``path``; ``shown``: the path errors name (where ``path`` is a
        local copy of an object)."""
        try:
            if self.folders and self.read_file_func is None:
                return str(path)
            if self.read_file_func is not None and self.folders:  # a folder: the reader opens what it needs
                return self.read_file_func(str(path))
            if self.read_file_func is not None:
                with open_regular(path):  # held open while the reader opens the path: no FIFO, no device
                    return self.read_file_func(str(path))
            return formats.for_path(path).read(path)
        except Exception as error:
            # An error without text (MemoryError, for a file larger than memory) is named by its type.
            raise FileReadError(f"{self.owner}: cannot read {urls.shown(shown or os.fspath(path))}: "
                                f"{str(error) or type(error).__name__}") from error

    def _read_stored(self, store: Storage, path: str) -> Any:
        """The object in the stored file (or, for ``folders``, folder) ``path``, read from a local copy."""
        return store.load(path, functools.partial(self._read_file, shown=path), folder=self.folders)


@functools.singledispatch
def _folder_exists(store: Storage, target: DirectoryInputTarget) -> bool:
    return store.exists(target.path, folder=True)


@_folder_exists.register
def _stored_folder_exists(store: RemoteStorage, target: DirectoryInputTarget) -> bool:
    # A store has no folders: asking for one lists it (s3fs lists all of it). An input folder's
    # listing, which the run makes anyway and keeps, answers as well.
    return bool(store.walk(target.path, once=target.external)) or store.exists(target.path, folder=True)


@functools.singledispatch
def _listing(store: Storage, target: DirectoryInputTarget) -> SourceItems:
    return target.local_listing()


@functools.singledispatch
def _file_names(store: Storage, target: DirectoryInputTarget, seen: Folders | None = None,
                entries: Entries | None = None) -> list[str]:
    """The selected files, relative to the folder, sorted."""
    return list_files(target.path, target.pattern, target.regex, target.recursive, target.owner, target.ignore, seen,
                      entries)


@_file_names.register
def _remote_file_names(store: RemoteStorage, target: DirectoryInputTarget, seen: Folders | None = None,
                       entries: Entries | None = None) -> list[str]:
    return [os.path.relpath(path, target.path) for path in _listing(store, target).paths]


@functools.singledispatch
def _read_all(store: Storage, target: DirectoryInputTarget) -> Any:
    """The objects of every item, lazily; in memory, the object stored for the folder."""
    return store.load(target.path, lambda path: (obj for _, obj in target.items()), folder=True)


@_read_all.register
def _remote_read_all(store: RemoteStorage, target: DirectoryInputTarget) -> Any:
    return (obj for _, obj in target.items())  # each item downloaded as it is read


@_listing.register
def _remote_listing(store: RemoteStorage, target: DirectoryInputTarget) -> SourceItems:
    if target.folders and target.read_file_func is None:
        raise FileReadError(f"{target.owner}: sub-folders of {urls.shown(target.path)} in an object store are read "
                            "from local copies removed after reading: give read_file_func")
    # One paged listing of everything below the folder; the reader downloads each file it reads.
    entries = [(e.rel, e.size, e.tag) for e in store.walk(target.path, once=target.external)]
    if not entries and not store.exists(target.path, folder=True):
        raise FileNotFoundError(target.path)
    return stored_items(entries, target.path, target.pattern, target.regex, target.recursive, target.ignore,
                        target.folders, target.marker, functools.partial(target._read_stored, store),
                        target.owner)


def __getattr__(name: str) -> Any:
    # luisy 1.x's cloud and Spark names fail with one line that says what to do instead.
    from luisy.unavailable import missing

    raise missing(__name__, name)
