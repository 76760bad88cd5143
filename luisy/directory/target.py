"""A managed directory output: lazy readers, and a writer that stages items and publishes them.

Publishing, under a lock beside the folder:
1. staged item files are moved in under names the current manifest does not use,
2. the new manifest replaces the old one (one ``os.replace``: the moment the new state appears),
3. files no manifest lists any more (replaced items, crash leftovers) are deleted.
A crash at any point leaves the old state or the new one visible; the next writer cleans up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import luigi

from luisy import formats
from luisy.atomic import TMP_MARKER, defer, temp_sibling
from luisy.config import current_run
from luisy.directory.manifest import MANIFEST_NAME, Item, ItemTable, Manifest, ManifestHeader, luisy_version, remember
from luisy.directory.sources import SourceItems
from luisy.errors import UnsafePathError
from luisy.paths import with_extension


class DirectoryTarget(luigi.LocalTarget):
    """A folder of item files listed by a manifest; complete iff the manifest exists and is readable."""

    def __init__(self, path: str | os.PathLike[str], *, file_format: formats.Format = formats.PICKLE,
                 owner: str | None = None, **options: Any):
        super().__init__(os.fspath(path))
        self.file_format = file_format
        self.options = options
        self.owner = owner or type(self).__name__
        self.task: luigi.Task | None = None

    @classmethod
    def for_task(cls, task: luigi.Task, path: Path, **options: Any) -> DirectoryTarget:
        target = cls(path, owner=repr(task), **options)
        target.task = task
        return target

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def exists(self) -> bool:
        return Manifest.load_header(self.folder) is not None

    @property
    def header(self) -> ManifestHeader:
        """The manifest's first line (counts, digests, parameters), read without the item lists."""
        return self._published(Manifest.load_header(self.folder))

    def sources_digest(self) -> str:
        """Digest of the items as inputs of a downstream directory task (see :meth:`source_items`)."""
        return self.header.items_digest

    @property
    def manifest(self) -> Manifest:
        """The current manifest; ``FileNotFoundError`` if the output was never published."""
        return self._published(Manifest.load(self.folder))

    def _published(self, found: Any) -> Any:
        if found is None:
            raise FileNotFoundError(f"{self.owner}: {self.folder} has no readable {MANIFEST_NAME}")
        return found

    def paths(self) -> list[Path]:
        """The item files, in item-name order."""
        manifest = self.manifest
        return [self.folder / manifest.items[name].file for name in sorted(manifest.items)]

    def __len__(self) -> int:
        return len(self.manifest.items)

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, object)`` for each item, in name order, one at a time."""
        manifest = self.manifest
        for name in sorted(manifest.items):
            yield name, self.file_format.read(self.folder / manifest.items[name].file, **self.options)

    def read(self) -> Iterator[Any]:
        """The item objects, lazily (luisy 1.x returned a generator too)."""
        return (obj for _, obj in self.items())

    def source_items(self) -> SourceItems:
        """The items as inputs of a downstream directory task; the checksum is the fingerprint."""
        table = self.manifest.items
        prefix = os.path.join(self.path, "")
        return SourceItems(table.names, table.checksums, [prefix + file for file in table.files],
                           functools.partial(self.file_format.read, **self.options), digest=table.digest())

    def restamp(self, task: luigi.Task) -> None:
        """Record ``task``'s current parameters and code fingerprint in the manifest, items unchanged."""
        with _publish_lock(self.folder):
            manifest = Manifest.load(self.folder)
            if manifest is None:
                return
            fresh = replace(manifest, params={k: str(v) for k, v in task.to_str_params().items()},
                            code_fingerprint=task.code_fingerprint())
            _replace_manifest(self.folder, fresh)

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


def checksum(path: str | os.PathLike[str]) -> str:
    """Content checksum of a file (BLAKE2b, 128 bit, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        self.new: dict[str, Item] = {}
        self.kept: set[str] = set()
        self.failed: dict[str, str] = {}
        self.failed_sources: dict[str, str | None] = {}
        self.skipped: dict[str, str | None] = {}
        remove_stale_staging(target.folder)
        self.staging = temp_sibling(target.folder)
        self.staging.mkdir(parents=True)
        # Held for the writer's lifetime: tells other writers this staging folder is alive.
        self._alive = open(self.staging / ".alive", "w")  # noqa: SIM115
        fcntl.flock(self._alive, fcntl.LOCK_EX)

    def __enter__(self) -> DirectoryWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            defer(self.commit, self.abort)
        else:
            self.abort()

    def item_file(self, name: str) -> str:
        """The file name (relative to the folder) of item ``name``; rejects names that escape."""
        _check_item_name(self.target.owner, name)
        return with_extension(name, self.target.file_format.ext)

    def write(self, name: str, obj: Any, source: str | None = None) -> None:
        """Stage item ``name``; ``source`` is the fingerprint of the input it came from."""
        self.add(name, self.stage(name, obj), source)

    def stage(self, name: str, obj: Any) -> Item:
        """Write item ``name`` into :attr:`staging` without recording it (safe in a worker process)."""
        file = self.item_file(name)
        self.target.file_format.ensure_writable(obj, f"{self.target.owner} item {name!r}")
        path = self.staging / file
        if "/" in file:  # the staging folder itself exists; sub-folders are made on demand
            path.parent.mkdir(parents=True, exist_ok=True)
        self.target.file_format.write(obj, path, **self.target.options)
        return Item(file=file, size=path.stat().st_size, checksum=checksum(path))

    def add(self, name: str, staged: Item, source: str | None = None) -> None:
        """Record an item :meth:`stage` wrote (here or in a worker process)."""
        self.new[name] = staged._replace(source=source)
        self.failed.pop(name, None)

    def keep(self, names: Iterable[str]) -> None:
        """Carry these items of the current manifest over unchanged."""
        self.kept.update(names)

    def fail(self, name: str, error: str, source: str | None = None) -> None:
        """Record a failed item; it is not published, and the next run retries it."""
        self.failed[name] = error
        self.failed_sources[name] = source

    def skip(self, name: str, source: str | None) -> None:
        """Record an item whose ``process`` returned ``None``: nothing to publish, nothing to redo."""
        self.skipped[name] = source

    def abort(self) -> None:
        self._alive.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self) -> Manifest:
        """Publish: move items in, replace the manifest, delete what it no longer lists."""
        folder = self.target.folder
        folder.mkdir(parents=True, exist_ok=True)
        with _publish_lock(folder) as lock:
            # A non-empty lock file means a publish was interrupted: sweep the whole folder.
            interrupted = os.fstat(lock.fileno()).st_size > 0
            lock.write("publishing\n")
            lock.flush()
            current = Manifest.load(folder) or Manifest()
            taken = set(current.items.files)
            moved = {}
            for name, item in self.new.items():
                file = item.file if item.file not in taken else _variant(item.file)
                destination = folder / file
                if "/" in file:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging / item.file, destination)
                moved[name] = item._replace(file=file)
            manifest = self._manifest(current.items.merged(self.kept, moved), current)
            _replace_manifest(folder, manifest)
            remove_unlisted(folder, manifest, None if interrupted else taken)
            lock.truncate(0)
        self.abort()
        return manifest

    def _manifest(self, items: ItemTable, current: Manifest) -> Manifest:
        task = self.task
        skipped = {n: s for n, s in current.skipped.items() if n in self.kept}
        skipped.update(self.skipped)
        return Manifest(
            items=items,
            failed=dict(sorted(self.failed.items())),
            failed_sources=dict(sorted(self.failed_sources.items())),
            skipped=dict(sorted(skipped.items())),
            task=task.get_task_family() if task is not None else "",
            params={k: str(v) for k, v in task.to_str_params().items()} if task is not None else {},
            code_fingerprint=getattr(task, "code_fingerprint", lambda: None)() if task is not None else None,
            luisy_version=luisy_version(),
            started=self.started,
            finished=_now(),
            processed=len(self.new) + len(self.failed) + len(self.skipped),
            run=current_run(),
            inputs_digest=self.inputs_digest if self.inputs_digest is not None else _inputs_digest(task),
        )


def _inputs_digest(task: luigi.Task | None) -> str | None:
    """What the task says its output is made from now; ``None`` when that cannot be known."""
    try:
        return task.current_inputs_digest()  # type: ignore[union-attr]
    except Exception:  # no task, or its inputs are missing: nothing to compare with later
        return None


def _replace_manifest(folder: Path, manifest: Manifest) -> None:
    """The one moment a new state becomes visible: an ``os.replace`` of the manifest."""
    tmp = temp_sibling(folder / MANIFEST_NAME)
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)
    remember(folder, manifest)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _variant(file: str) -> str:
    """Another file name for an item whose current file must stay readable until the manifest flips."""
    path = PurePosixPath(file)
    return str(path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}"))


def _check_item_name(owner: str, name: str) -> None:
    problem = None
    if not isinstance(name, str) or not name:
        problem = "must be a non-empty str"
    elif "\0" in name or "\\" in name:
        problem = "contains a NUL byte or a backslash"
    elif PurePosixPath(name).is_absolute():
        problem = "is an absolute path"
    elif any(part in ("..", ".") for part in name.split("/")):
        problem = "contains '..' or '.'"
    elif any(part.startswith((TMP_MARKER, "_luisy", ".alive")) or part == "" for part in name.split("/")):
        problem = "uses a name luisy reserves (or an empty path component)"
    if problem:
        raise UnsafePathError(f"{owner}: item name {name!r} {problem}; it would escape or corrupt the folder")


@contextmanager
def _publish_lock(folder: Path) -> Iterator[TextIO]:
    lock_path = folder.with_name(f".{folder.name}.luisy-lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock


def remove_stale_staging(folder: Path) -> None:
    """Delete staging folders of writers that died (their ``.alive`` lock is free)."""
    parent = folder.parent
    if not parent.is_dir():
        return
    for entry in parent.glob(f"{TMP_MARKER}*-{folder.name}"):
        alive = entry / ".alive"
        try:
            with open(alive, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer
        except OSError:
            pass
        shutil.rmtree(entry, ignore_errors=True)


def remove_unlisted(folder: Path, manifest: Manifest, candidates: Iterable[str] | None = None) -> None:
    """Delete files ``manifest`` does not list: among ``candidates`` (relative paths), or all of them."""
    listed = set(manifest.items.files)
    listed.add(MANIFEST_NAME)
    if candidates is not None:
        for rel in candidates:
            if rel not in listed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / rel)
        return
    for root, _dirs, files in os.walk(folder, topdown=False):
        rel_root = Path(root).relative_to(folder)
        for name in files:
            rel = (rel_root / name).as_posix() if rel_root != Path(".") else name
            if rel not in listed:
                os.unlink(os.path.join(root, name))
        if root != str(folder) and not os.listdir(root):
            os.rmdir(root)
