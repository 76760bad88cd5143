"""A directory output on the local file system: staging beside it, checkpoints, and publishing.

Publishing, under a lock beside the folder:

1. staged item files are moved in under names neither the current manifest nor the kept
   replaced files use,
2. the new manifest replaces the old one (one ``os.replace``: the moment the new state appears),
3. the files of replaced items move to ``.luisy-retired/`` in the folder, where readers of the
   previous manifest still find them for ``[luisy] keep_replaced_seconds``; older ones are deleted.

A crash at any point leaves the old state or the new one visible; the next writer cleans up.

Every path taken from a manifest must stay inside the folder: manifests listing anything else are
corrupt, and a sub-folder replaced by a symbolic link to elsewhere is never followed. Nothing is
written or deleted in a folder reached through a symbolic link (the folder itself, or a layer
folder it is in): what the link leads to is not luisy's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, cast

from luisy import config
from luisy.atomic import (
    fit_name,
    hand_over,
    make_folders,
    remove_path,
    remove_stale_temps,
    stale_temps,
    temp_sibling,
)
from luisy.digests import digest, file_digest, stream_digest
from luisy.directory.manifest import (
    MANIFEST_NAME,
    PARTS,
    REPAIR,
    Manifest,
    ManifestHeader,
    bad_file_name,
    remember,
    retire_parts,
)
from luisy.directory.table import Item, ItemTable
from luisy.errors import BrokenFileError, ItemFileError, ManifestError, UnsafePathError
from luisy.paths import NAME_MAX, linked_folder, refuse_linked
from luisy.regular_files import kind, not_regular, open_fd, open_regular, read_own
from luisy.texttable import printable

if TYPE_CHECKING:
    from luisy.directory.target import DirectoryWriter
    from luisy.formats import Reading

#: Where the files of replaced items wait, inside the output folder, until no reader needs them.
RETIRED = ".luisy-retired"
#: The items the last ``luisy verify`` found bad, for ``luisy status``; valid for one publication.
VERIFIED = ".luisy-verified.json"
#: The checkpoint of a staging folder: the items written so far.
CHECKPOINT = ".luisy-checkpoint.json"
#: A checkpoint is not written beyond this many bytes (millions of items), nor read if longer.
CHECKPOINT_MAX_BYTES = 1 << 30
#: ``.luisy-verified.json`` is not written beyond, nor read if longer than, this many bytes, nor
#: :data:`VERIFIED_ITEM_BYTES` per item the manifest lists (it holds one short line per bad item).
VERIFIED_MAX_BYTES = 64 << 20
#: The most one bad item's name and problem line take in ``.luisy-verified.json``: both name its
#: path, which may be long and escaped.
VERIFIED_ITEM_BYTES = 64 << 10
#: Seconds between two looks at a writer lock another process holds.
WAIT_POLL = 0.2

logger = logging.getLogger("luisy")


class LocalFolder:
    """A directory output on the local file system, published as described at the top of this module."""

    #: Item processes write their files into the staging folder themselves.
    parallel = True

    def __init__(self, folder: Path, owner: str) -> None:
        self.folder, self.owner = folder, owner

    def header(self) -> ManifestHeader | None:
        return Manifest.load_header(self.folder)

    def manifest(self) -> Manifest | None:
        return Manifest.read(self.folder)

    def paths(self, files: Iterable[str]) -> list[Path]:
        inside = _Inside(self.folder, self.owner)
        return [inside.path(file) for file in files]

    def reader(self, read: Reading) -> ItemReader:
        return ItemReader(self.folder, self.owner, read)

    def old_version(self, item: Item) -> str | None:
        """Where the file of ``item`` (as an earlier manifest listed it) still is: kept after a
        publish replaced it, or in place; ``None`` if it is gone."""
        inside = _Inside(self.folder, self.owner)
        for candidate in (os.path.join(self.folder, RETIRED, item.file), os.path.join(self.folder, item.file)):
            if inside.is_file(candidate) and file_digest(candidate) == item.checksum:
                return candidate
        return None

    def restamp(self, change: Callable[[Manifest], Manifest]) -> None:
        refuse_linked(self.folder, self.owner)
        with _publish_lock(self.folder):
            manifest = Manifest.load(self.folder)
            if manifest is not None:
                _replace_manifest(self.folder, change(manifest), manifest)

    def staging(self, state: dict[str, Any]) -> LocalStaging:
        """A staging folder with the items an interrupted writer checkpointed for ``state``."""
        refuse_linked(self.folder, self.owner)
        broken = self.broken_locks()
        if broken:  # said now, before items are made that could not be published
            raise not_regular(*broken[0])
        return LocalStaging(self.folder, state, self.owner)

    def checkpointed(self, state: dict[str, Any]) -> dict[str, Item]:
        """The items the latest interrupted writer checkpointed, if it wrote them for ``state``."""
        found = latest_checkpoint(self.folder, state)
        return found[1] if found is not None else {}

    def repair(self, items: Iterable[str], strays: Iterable[str], corrupt: bool,
               checked: ManifestHeader | None = None) -> None:
        """Drop ``items`` (and their files) from the manifest and delete ``strays`` (paths relative
        to the folder); a ``corrupt`` manifest is removed, and the next publish sweeps the folder.
        The task runs again: the repaired manifest no longer says what its inputs were. Lock
        files beside the folder that are folders (:meth:`broken_locks`) are removed first.

        What was found bad was found without the publish lock, so it is checked again under it
        against the manifest then current: a publish meanwhile may have listed a "stray" (its
        files move in before its manifest), replaced a bad item, or mended a corrupt manifest.
        A file that manifest accounts for is never deleted; ``items`` are dropped only if the
        publication is still the one ``checked`` (default: any)."""
        refuse_linked(self.folder, self.owner)
        for path, _ in self.broken_locks():
            remove_path(path)
        if not (items or strays or corrupt):
            return
        inside = _Inside(self.folder, self.owner)
        with _publish_lock(self.folder) as lock:
            if corrupt:
                self._remove_corrupt(lock)
                return
            manifest = Manifest.load(self.folder)
            if manifest is None:
                return
            same = checked is None or Manifest.load_header(self.folder) == checked
            dropped = {name for name in items if name in manifest.items} if same else set()
            if same:
                kept = manifest.items.merged([n for n in manifest.items if n not in dropped], {})
                _replace_manifest(self.folder, replace(manifest, items=kept, inputs_digest=None), manifest)
            own = accounted(manifest)
            for file in [manifest.items[name].file for name in dropped] + [s for s in strays if s not in own]:
                _unlink_inside(inside, os.path.join(self.folder, file))

    def _remove_corrupt(self, lock: TextIO) -> None:
        """Remove the manifest if it is (still) corrupt; the next publish sweeps the folder."""
        try:
            found = Manifest.read(self.folder)
            if found is not None:
                found.items.parts()  # a part may be what is corrupt
            return  # mended (published) since it was found corrupt, or gone
        except ManifestError:
            pass
        lock.write("repaired\n")  # a non-empty lock file: the next publish sweeps the folder
        lock.flush()
        path = self.folder / MANIFEST_NAME
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def broken_locks(self) -> list[tuple[Path, str]]:
        """Lock files beside the folder that no writer can lock, and what each is (see :func:`broken_locks`)."""
        return broken_locks(self.folder)

    def blocked(self) -> str | None:
        """What stands where the folder goes if that is not a folder (``"a FIFO"``), else ``None``."""
        if os.path.lexists(self.folder) and not self.folder.is_dir():
            return kind(os.lstat(self.folder).st_mode)
        return None

    def contains(self, path: str) -> bool:
        return _Inside(self.folder, self.owner).contains(path)

    def check(self, manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
        """Bad items (name → problem: missing, of another size or checksum, leading outside) and
        files the manifest does not account for (path relative to the folder → problem)."""
        folder, bad, strays = self.folder, {}, {}
        inside = _Inside(folder, self.owner)
        for name, item in sorted(manifest.items.items()):
            path = folder / item.file
            if not inside.contains(os.fspath(path)):
                bad[name] = f"item {name!r}: {path} leads outside {folder}"
            elif not path.is_file():
                bad[name] = f"item {name!r}: {path} {absent(path)}"
            elif path.stat().st_size != item.size:
                bad[name] = f"item {name!r}: {path} has {path.stat().st_size} bytes, the manifest says {item.size}"
            elif file_digest(path) != item.checksum:
                bad[name] = f"item {name!r}: {path} does not match its checksum"
        own = accounted(manifest)
        for root, dirs, files in os.walk(folder):
            rel_root = os.path.relpath(root, folder)
            for entry in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
                rel = entry if rel_root == "." else f"{rel_root}/{entry}"
                if rel not in own:
                    strays[rel] = f"{folder / rel} is not listed in the manifest"
        return bad, strays

    def note_verified(self, publication: str, bad: dict[str, str], items: int) -> None:
        if linked_folder(self.folder) is not None:
            return  # nothing is written through a link: verify still reports, status cannot show it later
        path = self.folder / VERIFIED
        text = json.dumps({"publication": publication, "bad": bad})  # ASCII: as many bytes as characters
        if not bad or len(text) > _verified_max_bytes(items):  # a longer one would not be read
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return
        tmp = temp_sibling(path)
        try:
            tmp.write_text(text, encoding="ascii")
            os.replace(tmp, path)
        except OSError:  # a read-only folder: verify still reports, status cannot show it later
            tmp.unlink(missing_ok=True)

    def verified_bad(self, publication: str, items: int) -> dict[str, str]:
        try:
            record = json.loads(read_own(self.folder / VERIFIED, _verified_max_bytes(items)))
            bad = record["bad"] if record["publication"] == publication else {}
        except (OSError, ValueError, TypeError, KeyError):
            return {}  # none, or not one luisy wrote: nothing is known to be bad
        return {str(name): str(problem) for name, problem in bad.items()} if isinstance(bad, dict) else {}

    def tidy(self) -> bool:
        """Remove what writers that are gone left: their staging folders, and the files an
        interrupted publish left in the folder that the manifest neither lists nor keeps.

        Returns whether there was a publish to finish. Does nothing while another process
        publishes, nor in a folder reached through a symbolic link (refused if it needs a sweep).
        """
        lock_path = _lock_path(self.folder)
        try:
            info = os.lstat(lock_path)
            interrupted = stat.S_ISREG(info.st_mode) and info.st_size > 0
        except FileNotFoundError:
            interrupted = False
        if interrupted:
            refuse_linked(self.folder, self.owner)
        elif linked_folder(self.folder) is not None:
            return False  # reading through the link is allowed; only writing and deleting are not
        remove_stale_temps(self.folder)
        if not interrupted:
            return False
        with _open_lock(lock_path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            manifest = Manifest.load(self.folder)
            if manifest is None or os.fstat(lock.fileno()).st_size == 0:
                return False
            retire(self.folder, list(manifest.retired))
            remove_unlisted(self.folder, manifest)
            lock.truncate(0)
            _forget_if_empty(lock, lock_path)
        return True

    def publish(self, writer: DirectoryWriter) -> Manifest:
        """Move the writer's staged items in, replace the manifest, retire the files it no longer lists."""
        refuse_linked(self.folder, self.owner)
        with _publish_lock(self.folder) as lock:
            # A file or FIFO where the output folder goes (a link was refused above) is replaced,
            # as a run replaces what stands at the path of a file output.
            if os.path.lexists(self.folder) and not self.folder.is_dir():
                self.folder.unlink()
            make_folders(self.folder)
            return self._publish(writer, lock)

    def _publish(self, writer: DirectoryWriter, lock: TextIO) -> Manifest:
        folder = self.folder
        # A non-empty lock file means a publish was interrupted: sweep the whole folder.
        sweep = os.fstat(lock.fileno()).st_size > 0
        lock.write("publishing\n")
        lock.flush()
        current = Manifest.load(folder)
        if current is None:  # none, or corrupt: nothing in the folder can be trusted
            sweep, current = sweep or os.path.lexists(folder / MANIFEST_NAME), Manifest()
        inside = _Inside(folder, self.owner)
        # The parts this publish changes are read before anything moves: a corrupt one fails the
        # run with the folder as it was.
        count = writer.part_count or current.items.count_for(writer.kept, len(writer.new))
        new = writer.new.by_part(count)
        touched = current.items.touched(writer.kept, new, count)
        # A new item's file can clash only with the current file of an item of its name (in its
        # part) or with a kept replaced file: other names make other files, variants are random.
        taken = {*current.retired}
        for p in touched:
            taken.update(current.items.part(p).files)
        staging, made = os.fspath(cast(LocalStaging, writer.staging).path), set[str]()
        for p, part in new.tables.items():
            moved: dict[int, str] = {}  # row → the variant its file was moved to
            for row, file in enumerate(part.files):
                to = file if file not in taken else _variant(file)
                if "/" in file:
                    _make_dirs(folder, os.path.dirname(file), made)
                staged = os.path.join(staging, file)  # strings, not paths: a Path interns each file name
                try:
                    os.replace(staged, os.path.join(folder, to))
                except IsADirectoryError:  # a folder no manifest lists stands there: left alone, as a stray
                    to = _variant(file)
                    os.replace(staged, os.path.join(folder, to))
                if to != file:
                    moved[row] = to
                    taken.add(to)
            if moved:
                new.tables[p] = ItemTable(part.names, [moved.get(row, file) for row, file in enumerate(part.files)],
                                          part.sizes, part.checksums, part.sources)
        items = current.items.merged(writer.kept, new, count, writer.inputs_parts)
        replaced, relisted = current.items.dropped_files(items, current.retired)
        now, keep_for = time.time(), config.current().keep_replaced_seconds
        retired = {f: t for f, t in current.retired.items() if now - t < keep_for and f not in relisted}
        expired = [f for f in current.retired if f not in retired and f not in relisted]
        retired.update(dict.fromkeys(replaced, now))
        manifest = writer.manifest(items, current, retired)
        _replace_manifest(folder, manifest, current)
        # After an interrupted publish, files it retired may still wait in their old place.
        retire(folder, list(retired) if sweep else replaced, inside)
        if sweep:
            remove_unlisted(folder, manifest)
        else:
            for file in expired:
                _unlink_inside(inside, os.path.join(folder, RETIRED, file))
            if expired and not retired:
                shutil.rmtree(folder / RETIRED, ignore_errors=True)  # only empty folders are left in it
        lock.truncate(0)
        return manifest


class LocalStaging:
    """A temporary folder beside the output, where items are written before they are published.

    A checkpoint (``.luisy-checkpoint.json`` in it) lists the items written so far. When a writer
    is interrupted its folder stays; the next writer of the output for the same code and
    parameters takes its checkpointed items over (:attr:`resumed`) before the folder is removed:
    only files that are exactly what the checkpoint says (see :func:`_take_item`). Nothing in a
    staging folder is ever published as such.
    """

    def __init__(self, folder: Path, state: dict[str, Any] | None = None, owner: str | None = None) -> None:
        """A new staging folder for ``folder``; with ``state`` (the writer's code fingerprint and
        parameters), holding the items the latest interrupted writer checkpointed for it."""
        # Taken first: another run writing the output is waited for, and what it leaves (published
        # or checkpointed items) is then taken over instead of being made a second time.
        self._lock = WriterLock(folder, owner or os.fspath(folder))
        try:
            # The name carries this process's id: no other writer removes the folder while it runs.
            self.path = temp_sibling(folder)
            self.path.mkdir(parents=True)
            self.resumed: dict[str, Item] = {}
            self._kept = False
            self._checkpointed = False
            self._checkpoint_bytes = 0
            if state is not None:
                self._take_over(folder, state)
            remove_stale_temps(folder)
        except BaseException:
            self._lock.release()
            raise

    def _take_over(self, folder: Path, state: dict[str, Any]) -> None:
        """Move in the items the latest interrupted writer of ``folder`` checkpointed for ``state``."""
        found = latest_checkpoint(folder, state)
        if found is None:
            return
        try:
            source = os.open(found[0], _FOLDER)
        except OSError:  # gone, or replaced by a link since it was found
            return
        try:
            made: set[str] = set()
            for name, item in found[1].items():
                if _take_item(source, item, self.path, made):
                    self.resumed[name] = item
        finally:
            os.close(source)

    def __getstate__(self) -> dict[str, Any]:
        # Another process only writes items into the folder; what was taken over stays here.
        return {"path": self.path, "resumed": {}, "_kept": False, "_lock": self._lock}

    def checkpoint(self, state: dict[str, Any], items: Iterable[tuple[str, Item]]) -> None:
        """Record ``items`` (``(name, item)`` written into this folder since the last checkpoint;
        the last of a name counts) and ``state`` for a writer that takes over.

        Each checkpoint appends one line, so a run of a million items does not write its list
        again every time. A line cut short by a kill is skipped when read: each line starts on a
        new one, and the items it listed are made again. Nothing is appended that would make the
        checkpoint longer than :data:`CHECKPOINT_MAX_BYTES`.
        """
        pieces = itertools.chain([] if self._checkpointed else ["\n" + json.dumps({"state": state})],
                                 _items_json(items))
        room = CHECKPOINT_MAX_BYTES - self._checkpoint_bytes
        size = 0
        # Written as made (a checkpoint of 100 000 items is 13 MB of text), taken back if too long.
        with open(self.path / CHECKPOINT, "a", encoding="ascii") as f:
            start = f.tell()
            for piece in pieces:
                size += len(piece)  # ASCII: as many bytes as characters
                if size > room:  # a longer one is not read: these items are made again after an interruption
                    f.truncate(start)
                    return
                f.write(piece)
                f.flush()  # what a kill leaves is whole pieces, then a line cut short
        self._checkpoint_bytes += size
        self._checkpointed = True

    def keep(self) -> None:
        """Leave the folder when the writer ends: it was interrupted, and the next writer takes over."""
        self._kept = True

    def write(self, file: str, obj: Any, write: Callable[[Any, Path], None]) -> Item:
        path = Path(os.path.join(self.path, file))  # not self.path / file, which interns the item's file name
        if "/" in file:  # the staging folder itself exists; sub-folders are made on demand
            if not self.path.is_dir():  # handed over or removed: a straggler (a Dask worker) must not make it again
                raise FileNotFoundError(f"the staging folder {self.path} is gone")
            path.parent.mkdir(parents=True, exist_ok=True)
        write(obj, path)
        return Item(file=file, size=path.stat().st_size, checksum=file_digest(path))

    def discard(self) -> None:
        try:
            if self._kept:  # for the next writer, also one in this process (a notebook's next run)
                self.path = hand_over(self.path)
            else:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._lock.release()  # last: a writer waiting for this one finds the folder handed over


def latest_checkpoint(folder: Path, state: dict[str, Any]) -> tuple[Path, dict[str, Item]] | None:
    """The staging folder and items of the latest checkpoint an interrupted writer of ``folder``
    left, if it wrote them for ``state``; ``None`` if there is none that reads as one. A symbolic
    link in place of a staging folder or of its checkpoint is not one, nor is a checkpoint that is
    no regular file, is longer than :data:`CHECKPOINT_MAX_BYTES` or is not what luisy writes: its
    items are made again. The state is read and compared first: the items of a checkpoint written
    for other code or parameters are not read at all."""
    found = [(mtime, entry) for entry in stale_temps(folder)
             if not os.path.islink(entry) and (mtime := _checkpoint_mtime(entry)) is not None]
    if not found:
        return None
    source = Path(max(found)[1])
    try:
        with open_regular(source / CHECKPOINT, own=True, limit=CHECKPOINT_MAX_BYTES) as f:
            items = _read_checkpoint(f, state)
    except OSError:  # gone, or replaced since it was found
        return None
    return None if items is None else (source, items)


def _checkpoint_mtime(staging: str) -> float | None:
    """When the checkpoint in ``staging`` was last written; ``None`` unless it is a regular file."""
    try:
        info = os.lstat(os.path.join(staging, CHECKPOINT))
    except OSError:
        return None
    return info.st_mtime if stat.S_ISREG(info.st_mode) else None


def _read_checkpoint(f: BinaryIO, state: dict[str, Any]) -> dict[str, Item] | None:
    """The items of the checkpoint open as ``f`` if it was written for ``state``, else ``None``.

    The state line is read first, and no further than the one luisy writes for ``state``: a
    checkpoint of other code or parameters costs that one line, however many items it lists."""
    ours = json.dumps({"state": state}).encode()
    # An earlier luisy wrote the state's keys and then the items in one object: how it starts.
    older = json.dumps({**state, "items": None}).encode().removesuffix(b"null}")
    bound = max(len(ours), len(older)) + 1
    first = f.readline(bound)
    if first == b"\n":  # each line starts on a new one
        first = f.readline(bound)
    items: dict[str, Item] = {}
    try:
        if first.startswith(older):
            part = json.loads(first + f.read())
            rows = part.pop("items")
            if part != state:
                return None
            items = {name: Item(*row) for name, row in rows.items()}
        elif json.loads(first) != {"state": state}:
            return None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None  # not even the state reads: nothing to take over
    for line in f:
        if line == b"\n":
            continue
        try:
            items.update({name: Item(*row) for name, row in json.loads(line)["items"].items()})
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # a line cut short, or not one luisy wrote: its items are made again
    try:
        return None if bad_file_name([item.file for item in items.values()]) is not None else items
    except TypeError:  # a file that is no name: not a checkpoint luisy wrote
        return None


#: How a folder whose files are taken over is opened: never through a symbolic link.
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _take_item(source: int, item: Item, staging: Path, made: set[str]) -> bool:
    """Move a checkpointed ``item``'s file from the staging folder open as ``source`` into
    ``staging``, if it is what the checkpoint says: a regular file with no other link to it,
    inside that folder (reached without following a symbolic link), of the item's size and
    checksum. Anything else is left where it is, to be removed with that folder; the item is made
    again."""
    *folders, name = item.file.split("/")
    opened: list[int] = []
    try:
        parent = source
        for part in folders:
            parent = os.open(part, _FOLDER, dir_fd=parent)
            opened.append(parent)
        checked = _checked_file(parent, name, item)
        if checked is None:
            return False
        if folders:
            _make_dirs(staging, os.path.dirname(item.file), made)
        target = staging / item.file
        os.replace(name, target, src_dir_fd=parent)
        moved = os.lstat(target)
        if (moved.st_dev, moved.st_ino) != (checked.st_dev, checked.st_ino):  # replaced after the check
            if stat.S_ISDIR(moved.st_mode):
                shutil.rmtree(target)
            else:
                os.unlink(target)  # a link: removed, never written through when the item is made again
            return False
        return True
    except OSError:
        return False
    finally:
        for fd in opened:
            os.close(fd)


def _checked_file(folder: int, name: str, item: Item) -> os.stat_result | None:
    """The status of file ``name`` in ``folder`` (a descriptor) if it is a regular file with one
    link, of ``item``'s size and checksum; else ``None``."""
    try:
        fd = open_fd(name, own=True, dir_fd=folder)
    except BrokenFileError:  # a link, a FIFO, a folder...: not what a writer staged
        return None
    try:
        info = os.fstat(fd)
        if info.st_nlink != 1 or info.st_size != item.size:
            return None
        with open(fd, "rb", closefd=False) as f:
            return info if stream_digest(f) == item.checksum else None
    finally:
        os.close(fd)


def _items_json(items: Iterable[tuple[str, Item]], step: int = 4096) -> Iterator[str]:
    """The line ``{"items": {name: [file, size, checksum, source], ...}}`` (after a newline) as
    ``json.dumps`` writes it, in pieces of ``step`` items (none if there are no items): a
    checkpoint of 200 000 items made as one dict of lists and one string took 100 MB at once."""
    rest = iter(items)
    first = True
    for chunk in iter(lambda: list(itertools.islice(rest, step)), []):
        yield ('\n{"items": {' if first else ", ") + json.dumps({name: list(item) for name, item in chunk})[1:-1]
        first = False
    if not first:
        yield "}}"


class ItemReader:
    """Reads published item files by path: only inside the folder, and the kept file of an item
    that a newer publication replaced while a reader of the older manifest was still at work."""

    def __init__(self, folder: Path, owner: str, read: Reading) -> None:
        self.inside = _Inside(folder, owner)
        self.read = read

    def __call__(self, path: str) -> Any:
        self.inside.check_parent(path)
        try:  # the usual case, in one open: a regular file where the manifest says
            return self.read.unlinked(path)
        except (OSError, BrokenFileError):  # gone, a symbolic link or no regular file: looked at below
            pass
        except Exception as error:
            raise self._damaged(path, error) from None
        for candidate in (path, None):
            if candidate is None:  # worked out only when needed: a relpath per item is a quarter of reading it
                candidate = os.path.join(self.inside.folder, RETIRED, os.path.relpath(path, self.inside.folder))
            if self.inside.is_file(candidate):
                try:
                    return self.read(candidate)
                except FileNotFoundError:  # moved aside by a publish between the check and the read
                    continue
                except Exception as error:
                    raise self._damaged(path, error) from None
        raise ItemFileError(f"{self.inside.owner}: item file {path} {absent(path)}; {REPAIR}")

    def _damaged(self, path: str, error: Exception) -> ItemFileError:
        return ItemFileError(f"{self.inside.owner}: item file {path} is damaged ({type(error).__name__}: {error}); "
                             f"{REPAIR}")


def absent(path: str | os.PathLike[str]) -> str:
    """Why there is no item file at ``path``: ``"is missing"``, or what is there instead (``"is a
    folder, not a regular file"``)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "is missing"
    return "is missing" if stat.S_ISREG(mode) else f"is {kind(mode)}, not a regular file"


class _Inside:
    """Paths inside one output folder; a path that resolves outside it (through a symbolic link) is refused."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.folder = os.fspath(folder)
        self.owner = owner
        self.real = os.path.realpath(folder)
        self._dirs: set[str] = set()

    def path(self, rel: str) -> Path:
        """``folder / rel``, checked like :meth:`is_file` (it need not exist)."""
        path = os.path.join(self.folder, rel)
        self.is_file(path)
        return Path(path)

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a file; an error if it, or a folder on the way, leads outside the folder."""
        self.check_parent(path)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        if stat.S_ISLNK(mode):
            self.check(path)
            return os.path.isfile(path)
        return stat.S_ISREG(mode)

    def check_parent(self, path: str) -> None:
        """An error if a folder on the way to ``path`` leads outside the folder."""
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self.check(parent)
            self._dirs.add(parent)

    def check(self, path: str) -> None:
        if not self.contains(path):
            raise UnsafePathError(f"{self.owner}: {path} leads outside {self.folder} (a symbolic link?); "
                                  "luisy does not follow it")

    def contains(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.real or real.startswith(self.real + os.sep)


def _verified_max_bytes(items: int) -> int:
    """The longest ``.luisy-verified.json`` luisy writes for a manifest of ``items`` items."""
    return min(VERIFIED_MAX_BYTES, (items + 1) * VERIFIED_ITEM_BYTES)


def _replace_manifest(folder: Path, manifest: Manifest, current: Manifest) -> None:
    """The one moment a new state becomes visible: an ``os.replace`` of the manifest, after its
    new part files are written. The parts ``current`` (the manifest it replaces) lists that
    ``manifest`` does not are kept for ``[luisy] keep_replaced_seconds``, for its readers."""
    path = folder / MANIFEST_NAME
    if path.is_dir() and not path.is_symlink():  # not luisy's: os.replace cannot put a file there
        shutil.rmtree(path)
    made: set[str] = set()
    for file, data in manifest.new_parts():
        _make_dirs(folder, PARTS, made)
        part_tmp = temp_sibling(folder / file)
        part_tmp.write_bytes(data)
        os.replace(part_tmp, folder / file)
    expired = retire_parts(manifest, current, time.time(), config.current().keep_replaced_seconds)
    tmp = temp_sibling(path)
    head, body, header = manifest.encoded_lines()
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(head + "\n")
        f.writelines(body)
    os.replace(tmp, folder / MANIFEST_NAME)
    remember(folder, manifest, header, current)
    for file in expired:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / file)


def _variant(file: str) -> str:
    """Another file name for an item whose current file must stay readable until the manifest flips."""
    path = PurePosixPath(file)
    tag = f".{uuid.uuid4().hex[:8]}"
    stem = fit_name(path.stem[::-1], NAME_MAX - len(tag) - len(path.suffix.encode()))[::-1]  # keep its start
    return str(path.with_name(f"{stem}{tag}{path.suffix}"))


def _lock_path(folder: Path, kind: str = "lock") -> Path:
    name = f".{folder.name}.luisy-{kind}"
    if len(name.encode()) > NAME_MAX:  # keep long folder names publishable
        name = f".{digest(folder.name, size=8)}.luisy-{kind}"
    return folder.with_name(name)


@contextmanager
def _publish_lock(folder: Path) -> Iterator[TextIO]:
    """The folder's publish lock. Its file is deleted when the lock is given up with nothing
    written in it, so a finished run leaves no lock file; a writer that waited on the deleted
    file sees that and locks the new one."""
    path = _lock_path(folder)
    with _locked(path, lambda lock: fcntl.flock(lock, fcntl.LOCK_EX)) as lock:
        yield lock
        _forget_if_empty(lock, path)


def _locked(path: Path, lock_it: Callable[[TextIO], None]) -> TextIO:
    """The lock file at ``path``, opened and locked by ``lock_it``; a file its holder deleted
    meanwhile is given up and the one now at ``path`` locked instead."""
    while True:
        lock = _open_lock(path)
        try:
            lock_it(lock)
        except BaseException:
            lock.close()
            raise
        try:
            current = os.lstat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(lock.fileno()).st_ino:
            return lock
        lock.close()


# The writer locks this process holds (lock file → pid): a second writer of the same folder in
# this process (beside one a notebook left open) cannot wait for itself, and goes ahead as before.
_writing: dict[str, int] = {}


class WriterLock:
    """Held by a writer of a folder from before it takes over an interrupted writer's items until
    it has published or given up (``.<folder>.luisy-writer`` beside it, naming the holder's pid
    and host). Another writer waits for it, saying so once; Ctrl-C stops the wait. It is an
    ``flock``: it goes away with its process, so a writer that died holds nobody up."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.path = _lock_path(folder, "writer")
        self.file: TextIO | None = None
        if _writing.get(os.fspath(self.path)) == os.getpid():
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.file = _locked(self.path, _Waiter(owner))
        self.file.write(f"{os.getpid()} {socket.gethostname()}\n")
        self.file.flush()
        _writing[os.fspath(self.path)] = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "file": None}  # held by this process only

    def release(self) -> None:
        """Give the lock up (again: nothing); its file goes, unless a waiter has it already."""
        file, self.file = self.file, None
        if file is None:
            return
        _writing.pop(os.fspath(self.path), None)
        with file:
            file.truncate(0)
            _forget_if_empty(file, self.path)
            # Explicitly: item processes forked meanwhile share the open file, and closing it here
            # alone would leave it locked while they live.
            fcntl.flock(file, fcntl.LOCK_UN)


class _Waiter:
    """Locks a writer lock; while another process holds it, says once whom it waits for."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.said = False

    def __call__(self, lock: TextIO) -> None:
        since = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not self.said:
                holder = _holder(os.pread(lock.fileno(), _HOLDER_MAX, 0))
                # A holder that has just taken the lock may not have written its name yet.
                if holder is not None or time.monotonic() - since > 1:
                    logger.warning("waiting for %s (%s)", printable(self.owner), holder or "another process")
                    self.said = True
            time.sleep(WAIT_POLL)  # a sleep, not a blocking flock: Ctrl-C ends it at once


#: The most a writer lock's "pid host" line is read of: a pid and a host name (at most 255 bytes).
_HOLDER_MAX = 300


def _holder(text: bytes) -> str | None:
    """``"pid N on HOST"`` from a writer lock's ``text``; ``None`` unless it is a "pid host" line
    as luisy writes it (anything may write into the file of a lock it holds)."""
    fields = text.decode("utf-8", "replace").split()
    if len(fields) != 2 or not fields[0].isascii() or not fields[0].isdigit() or len(fields[0]) > 10:
        return None
    return f"pid {int(fields[0])} on {printable(fields[1])}"


def _forget_if_empty(lock: TextIO, path: Path) -> None:
    """Delete the held lock's file if nothing is written in it (no interrupted publish or repair to
    tell the next writer) and it is still the file at ``path``."""
    lock.flush()
    info = os.fstat(lock.fileno())
    try:
        if info.st_size == 0 and os.lstat(path).st_ino == info.st_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _open_lock(path: Path) -> TextIO:
    """The lock file, opened for appending; never through a link: a link (symbolic or hard) or a
    FIFO put in its place is removed and a file of luisy's own made instead. A folder or a socket
    there is a :class:`~luisy.errors.BrokenFileError` (see :func:`broken_locks`)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        except IsADirectoryError:
            # Not removed here: what is in a folder may be someone's; `luisy verify --repair` removes it.
            raise not_regular(path, "a folder") from None
        except OSError as error:
            if error.errno == errno.ENXIO:  # a socket: a server may be listening on it, left as a folder is
                raise not_regular(path, "a socket") from None
            if not os.path.islink(path):
                raise
            os.unlink(path)
            continue
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return os.fdopen(fd, "a")
        os.close(fd)
        # Deleted since it was opened (nlink 0: its holder gave it up): open the path again. A hard
        # link or another kind of file: remove it, if it is still what the path names.
        with contextlib.suppress(FileNotFoundError):
            if info.st_nlink != 0 and os.lstat(path).st_ino == info.st_ino:
                os.unlink(path)


def broken_locks(folder: Path) -> list[tuple[Path, str]]:
    """luisy's lock files beside ``folder`` that are folders or sockets (no writer can lock them,
    and a run does not remove them: what they are may be someone's), each with what it is."""
    found = []
    for path in (_lock_path(folder), _lock_path(folder, "writer")):
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):  # none there (or no folder to hold one)
            continue
        if stat.S_ISDIR(mode) or stat.S_ISSOCK(mode):
            found.append((path, kind(mode)))
    return found


def _make_dirs(folder: Path, rel_dir: str, made: set[str]) -> None:
    """Make ``folder/rel_dir`` of real folders: a symbolic link on the way is removed, never
    followed, and so is a file or FIFO where a folder goes (inside an output folder only luisy's
    files belong, and item names never make a file and a folder of one path)."""
    if rel_dir in made:
        return
    path = folder
    for part in rel_dir.split("/"):
        path = path / part
        if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
            path.unlink()
        path.mkdir(exist_ok=True)
    made.add(rel_dir)


def retire(folder: Path, files: Iterable[str], inside: _Inside | None = None) -> None:
    """Move replaced item files into ``.luisy-retired/``, where readers of the old manifest find them."""
    inside = inside or _Inside(folder, str(folder))
    made: set[str] = set()
    for file in files:
        source = os.path.join(folder, file)
        if not inside.contains(os.path.dirname(source)):
            continue  # never follow a link out of the folder
        if not made:  # before the first file moves in
            _clear_for_folder(folder / RETIRED)
        _make_dirs(folder, os.path.dirname(f"{RETIRED}/{file}"), made)
        try:
            os.replace(source, folder / RETIRED / file)
        except FileNotFoundError:
            pass


def _clear_for_folder(path: Path) -> None:
    """Remove what is in the place of luisy's own folder ``path`` if it is no folder (a file, a
    FIFO, a link: nothing luisy put there; a link is removed, never followed)."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)


def _unlink_inside(inside: _Inside, path: str) -> None:
    """Remove the file at ``path`` if its folder is inside; a folder there goes too (links in it
    are removed, never followed)."""
    if inside.contains(os.path.dirname(path)):
        try:
            remove_path(Path(path))
        except NotADirectoryError:  # a file where its folder should be: the stray itself goes
            pass


def accounted(manifest: Manifest) -> set[str]:
    """The files (relative paths) ``manifest`` accounts for in its folder: itself, the verify
    record, its items' files and the replaced files it keeps."""
    return {MANIFEST_NAME, VERIFIED, *manifest.items.files, *(f"{RETIRED}/{file}" for file in manifest.retired),
            *(record.file for record in manifest.items.records if record.file), *manifest.retired_parts}


def remove_unlisted(folder: Path, manifest: Manifest) -> None:
    """Delete every file in the folder that ``manifest`` neither lists nor keeps, and empty sub-folders.

    Symbolic links are removed, never followed.
    """
    keep = accounted(manifest)
    for root, dirs, files in os.walk(folder, topdown=False):
        rel_root = os.path.relpath(root, folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if rel not in keep:
                os.unlink(os.path.join(root, name))
        if root != os.fspath(folder) and not os.listdir(root):
            os.rmdir(root)
