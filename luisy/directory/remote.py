"""A directory output in an object store, published without rename.

Objects under the output's prefix:

- item files, each uploaded once under a name no published manifest uses (a create-only PUT;
  where the name is taken, by a manifest or by what a killed run left, a variant of it), so an
  item a reader may still need is never overwritten;
- ``_luisy_manifest.json``, replaced by one conditional PUT (only if it is still the version the
  publish started from): the commit point. A reader sees the old manifest or the new one, and every
  item either lists;
- ``.luisy-staging/<writer>.json``, a writer's checkpoint: the items it uploaded, taken over by
  the next writer of the same code and parameters after an interruption;
- ``.luisy-verified.json``, what the last ``luisy verify`` found bad.

Items a new manifest no longer lists stay for ``[luisy] keep_replaced_seconds`` (listed as
retired, for readers of the previous manifest), then a later publish deletes them. What a killed
run uploaded without publishing is deleted by the next run's tidy once it is older than that.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

from luisy import config, urls
from luisy.atomic import fit_name
from luisy.bounded import BoundedCache
from luisy.digests import bytes_digest, file_digest
from luisy.directory.manifest import MANIFEST_NAME, REPAIR, Manifest, ManifestHeader, retire_parts
from luisy.directory.table import Item
from luisy.errors import ItemFileError, LuisyError, ManifestError
from luisy.paths import NAME_MAX
from luisy.storage.remote import RemoteStorage, StorageError

if TYPE_CHECKING:
    from luisy.directory.target import DirectoryWriter
    from luisy.formats import Reading

STAGING = ".luisy-staging"
VERIFIED = ".luisy-verified.json"
#: The most a checkpoint or a manifest may take (a million items).
MAX_BYTES = 1 << 30


class PublishConflictError(LuisyError):
    """Another run published the same directory output while this one was writing it."""


class RemoteFolder:
    """The place of a directory output in an object store (see the module docstring)."""

    def __init__(self, folder: Path, owner: str, store: RemoteStorage) -> None:
        self.folder, self.owner, self.store = folder, owner, store
        self.path = os.fspath(folder)
        #: Item processes upload their items themselves, except into a process's own memory.
        self.parallel = store.scheme != "memory"

    def _at(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    def _current(self) -> tuple[Manifest | None, str | None]:
        """The manifest and its version tag; ``(None, None)`` if there is none."""
        for _ in range(5):
            tag = self.store.token(self._at(MANIFEST_NAME))
            if tag is None:
                return None, None
            key = (self.path, str(tag))
            known = _manifests.get(key)
            if known is None:
                try:
                    raw = self.store.read_bytes(self._at(MANIFEST_NAME), MAX_BYTES)
                except FileNotFoundError:  # replaced, or removed, since: look again
                    continue
                known = Manifest.from_json(raw.decode("utf-8", "surrogateescape"),
                                           urls.shown(self._at(MANIFEST_NAME)), read_part=self._read_part)
                _manifests.put(key, known)
            return known, str(tag)
        raise ManifestError(f"{urls.shown(self._at(MANIFEST_NAME))} changes faster than it can be read")

    def _read_part(self, file: str) -> bytes:
        return self.store.read_bytes(self._at(file), MAX_BYTES)

    def header(self) -> ManifestHeader | None:
        try:
            manifest = self._current()[0]
        except ManifestError:
            return None
        return manifest.header() if manifest is not None else None

    def manifest(self) -> Manifest | None:
        return self._current()[0]

    def paths(self, files: Iterable[str]) -> list[Path]:
        return [self.folder / file for file in files]

    def reader(self, read: Reading) -> Callable[[str], Any]:
        def item(path: str) -> Any:
            try:
                return self.store.load(path, read)
            except FileNotFoundError:
                raise ItemFileError(f"{self.owner}: item file {urls.shown(path)} is missing; {REPAIR}") from None
            except LuisyError:
                raise
            except Exception as error:
                raise ItemFileError(f"{self.owner}: item file {urls.shown(path)} is damaged "
                                    f"({type(error).__name__}: {error}); {REPAIR}") from None
        return item

    def old_version(self, item: Item) -> str | None:
        """Where the file of ``item`` (as an earlier manifest listed it) still is: item files are
        written once under names no manifest listed, so one that is there holds those bytes."""
        path = self._at(item.file)
        info = self.store.info(path)
        return path if info is not None and int(info.get("size") or 0) == item.size else None

    def contains(self, path: str) -> bool:
        return os.path.normpath(path).startswith(self.path + "/")

    def restamp(self, change: Callable[[Manifest], Manifest]) -> None:
        manifest, tag = self._current()
        if manifest is not None and not self._replace(change(manifest), tag, manifest):
            raise PublishConflictError(f"{self.owner}: another run published {urls.shown(self.path)} meanwhile; "
                                       "run again")

    def staging(self, state: dict[str, Any]) -> RemoteStaging:
        manifest: Manifest | None = None
        try:
            manifest, tag = self._current()
        except ManifestError:  # a corrupt one is replaced by the publish
            found = self.store.token(self._at(MANIFEST_NAME))
            tag = None if found is None else str(found)
        taken: set[str] = set()
        if manifest is not None:
            taken.update(manifest.retired)
            # Parts are not read for it: the create-only PUT refuses a name in use anyway.
            if manifest.items.part_count == 1:
                taken.update(manifest.items.files)
        return RemoteStaging(self, state, taken, tag)

    def checkpointed(self, state: dict[str, Any]) -> dict[str, Item]:
        return self._checkpoint(state)[1]

    def _checkpoints(self) -> list[tuple[float, str, dict[str, Any]]]:
        """``(written, name, content)`` of every writer's checkpoint: each writer announces itself
        with one when it starts, and updates it with the items it uploaded."""
        found = []
        for name, _ in self.store.listdir(self._at(STAGING)):
            try:
                data = json.loads(self.store.read_bytes(self._at(f"{STAGING}/{name}"), MAX_BYTES))
            except (OSError, ValueError, LuisyError):
                continue
            if isinstance(data, dict) and isinstance(data.get("items"), dict):
                found.append((float(data.get("written") or 0), name, data))
        return found

    def _checkpoint(self, state: dict[str, Any]) -> tuple[str | None, dict[str, Item]]:
        """The latest checkpoint written for ``state``, with its items that are still there."""
        found = [(written, name, data["items"]) for written, name, data in self._checkpoints()
                 if data.get("state") == state and data["items"]]
        if not found:
            return None, {}
        _, name, rows = max(found, key=lambda f: (f[0], f[1]))
        there = {e.rel: e.size for e in self.store.walk(self.path)}
        try:
            items = {n: Item(*row) for n, row in rows.items()}
        except TypeError:
            return None, {}
        return name, {n: item for n, item in items.items() if there.get(item.file) == item.size}

    def _unpublished(self, manifest: Manifest | None, mine: str | None = None) -> tuple[list[str], list[str]]:
        """Objects under the output that no manifest lists and no other writer at work claims —
        what runs that are gone left — and the checkpoints of writers gone (not written for
        ``[luisy] keep_replaced_seconds``). ``mine``: the checkpoint of the writer asking. While
        another writer is at work, an object younger than that may be one it uploaded since its
        last checkpoint, and is left alone."""
        keep_for, now = config.current().keep_replaced_seconds, time.time()
        claimed: set[str] = set()
        stale, others = [], False
        for written, name, data in self._checkpoints():
            if now - written > keep_for:
                stale.append(name)
            elif name != mine:
                others = True
                claimed.update(str(row[0]) for row in data["items"].values() if isinstance(row, list) and row)
        own = _accounted(manifest) if manifest is not None else {MANIFEST_NAME}
        left = [e.rel for e in self.store.walk(self.path)
                if e.rel not in own and e.rel not in claimed and not e.rel.startswith(f"{STAGING}/")
                and not (others and e.modified is not None and now - e.modified < keep_for)]
        return left, stale

    def _sweep(self, manifest: Manifest | None, mine: str | None = None) -> None:
        left, stale = self._unpublished(manifest, mine)
        self.store.remove([self._at(rel) for rel in left] + [self._at(f"{STAGING}/{name}") for name in stale])

    def repair(self, items: Iterable[str], strays: Iterable[str], corrupt: bool,
               checked: ManifestHeader | None = None) -> None:
        if corrupt:
            self.store.remove([self._at(MANIFEST_NAME)])
            return
        manifest, tag = self._current()
        if manifest is None:
            return
        same = checked is None or manifest.header() == checked
        dropped = {name for name in items if name in manifest.items} if same else set()
        if dropped:
            kept = manifest.items.merged([n for n in manifest.items if n not in dropped], {})
            if not self._replace(replace(manifest, items=kept, inputs_digest=None), tag, manifest):
                return  # published meanwhile: what was found bad is not what is there now
        own = _accounted(manifest)
        doomed = [manifest.items[name].file for name in dropped] + [s for s in strays if s not in own]
        self.store.remove([self._at(file) for file in doomed])

    def blocked(self) -> str | None:
        return None  # an object store has no files that stand where a folder goes

    def check(self, manifest: Manifest) -> tuple[dict[str, str], dict[str, str]]:
        listed = {e.rel: e.size for e in self.store.walk(self.path)}
        bad: dict[str, str] = {}
        for name, item in sorted(manifest.items.items()):
            where = urls.shown(self._at(item.file))
            size = listed.get(item.file)
            if size is None:
                bad[name] = f"item {name!r}: {where} is missing"
            elif size != item.size:
                bad[name] = f"item {name!r}: {where} has {size} bytes, the manifest says {item.size}"
            elif bytes_digest(self.store.read_bytes(self._at(item.file), MAX_BYTES << 4)) != item.checksum:
                bad[name] = f"item {name!r}: {where} does not match its checksum"
        strays = {rel: f"{urls.shown(self._at(rel))} is not listed in the manifest"
                  for rel in self._unpublished(manifest)[0]}
        return bad, strays

    def broken_locks(self) -> list[tuple[Path, str]]:
        return []  # no lock objects: a conditional write decides between publishers

    def note_verified(self, publication: str, bad: dict[str, str], items: int) -> None:
        if bad:
            self.store.put_bytes(self._at(VERIFIED), json.dumps({"publication": publication, "bad": bad}).encode())
        elif self.store.token(self._at(VERIFIED)) is not None:
            self.store.remove([self._at(VERIFIED)])

    def verified_bad(self, publication: str, items: int) -> dict[str, str]:
        try:
            record = json.loads(self.store.read_bytes(self._at(VERIFIED), MAX_BYTES))
            bad = record["bad"] if record["publication"] == publication else {}
        except (OSError, ValueError, TypeError, KeyError):
            return {}
        return {str(name): str(problem) for name, problem in bad.items()} if isinstance(bad, dict) else {}

    def tidy(self) -> bool:
        """Delete what writers that are gone left (see :meth:`_unpublished`), once a checkpoint
        shows one gone (one small listing otherwise); returns ``False``: there is never a publish
        to finish."""
        if any(time.time() - written > config.current().keep_replaced_seconds
               for written, _, _ in self._checkpoints()):
            try:
                self._sweep(self.manifest())
            except ManifestError:  # corrupt: nothing can be told apart until verify --repair
                pass
        return False

    def publish(self, writer: DirectoryWriter) -> Manifest:
        """Replace the manifest by one listing the writer's uploaded items with the kept ones,
        unless another run published meanwhile; delete retired items past their time."""
        staging = writer.staging
        corrupt = False
        try:
            current, tag = self._current()
        except ManifestError:  # a corrupt one is replaced, and what it may have listed swept
            current, tag, corrupt = None, _tag_of(self.store.token(self._at(MANIFEST_NAME))), True
        if isinstance(staging, RemoteStaging) and tag != staging.base:
            self._conflict(writer, current)
        current = current or Manifest()
        items = current.items.merged(writer.kept, writer.new, writer.part_count, writer.inputs_parts)
        replaced, relisted = current.items.dropped_files(items, current.retired)
        now, keep_for = time.time(), config.current().keep_replaced_seconds
        retired = {f: t for f, t in current.retired.items() if now - t < keep_for and f not in relisted}
        expired = [f for f in current.retired if f not in retired and f not in relisted]
        retired.update(dict.fromkeys(replaced, now))
        manifest = writer.manifest(items, current, retired)
        if not self._replace(manifest, tag, current):
            self._conflict(writer, self.manifest())
        self.store.remove([self._at(f) for f in [*expired, *writer.new.superseded()]])
        if isinstance(staging, RemoteStaging):
            staging.published = True
            if staging.took_over or corrupt:  # an interrupted run may have uploaded more than it checkpointed
                self._sweep(manifest, mine=f"{staging.id}.json")
        return manifest

    def _replace(self, manifest: Manifest, tag: str | None, current: Manifest) -> bool:
        """Write ``manifest`` (its new parts first) if the one there is still version ``tag`` (none
        there: ``None``); ``False`` if another is there. The parts only ``current`` listed are kept
        for ``[luisy] keep_replaced_seconds``, then deleted."""
        for file, part in manifest.new_parts():
            self.store.put_if(self._at(file), part, tag=None)  # named by its content: one there is the same
        expired = retire_parts(manifest, current, time.time(), config.current().keep_replaced_seconds)
        head, body, _ = manifest.encoded_lines()
        data = (head + "\n" + "".join(body)).encode("utf-8", "surrogateescape")
        if not self.store.put_if(self._at(MANIFEST_NAME), data, tag=tag):
            return False
        self.store.remove([self._at(file) for file in expired])
        return True

    def _conflict(self, writer: DirectoryWriter, current: Manifest | None) -> NoReturn:
        """Remove what the writer uploaded (no manifest lists it), then say another run won."""
        listed = set(current.items.files) if current is not None else set()
        self.store.remove([self._at(file) for file in set(writer.new.files) if file not in listed])
        raise PublishConflictError(
            f"{self.owner}: another run published {urls.shown(self.path)} while this one wrote it; "
            "nothing of this run was published: run again (what the other run made counts)")


class RemoteStaging:
    """Uploads a writer's items under their final names, and checkpoints them."""

    def __init__(self, place: RemoteFolder, state: dict[str, Any], taken: set[str], base: str | None) -> None:
        self.place = place
        #: The version of the manifest this writer started from: its publish replaces only that one.
        self.base = base
        self.state = state
        self.taken = taken
        self.id = f"{int(time.time() * 1e3):013d}-{uuid.uuid4().hex[:8]}"
        #: Items an interrupted writer uploaded, taken over (they are in place already).
        self.resumed: dict[str, Item] = {}
        self.published = False
        self._checkpoint_name, found = place._checkpoint(state)
        #: Whether an interrupted writer's checkpoint was found: its leftovers are swept after the publish.
        self.took_over = self._checkpoint_name is not None
        for name, item in found.items():
            self.resumed[name] = item
            self.taken.add(item.file)
        # What a checkpoint lists: the items taken over too, should this run be interrupted as well.
        self._listed = {name: list(item) for name, item in self.resumed.items()}
        self.checkpoint(state, {})  # announced: what it uploads is not swept as left by a run gone

    def __getstate__(self) -> dict[str, Any]:
        # Another process only uploads items; what this writer records stays here.
        # The names in use are not sent: a create-only PUT finds them taken anyway.
        return {"place": self.place, "state": self.state, "taken": set(), "base": self.base, "id": self.id,
                "resumed": {}, "published": False, "_checkpoint_name": None, "_listed": {},
                "took_over": False}

    def write(self, file: str, obj: Any, write: Callable[[Any, Path], None]) -> Item:
        with tempfile.TemporaryDirectory(prefix="luisy-item-") as tmp:
            local = Path(tmp, PurePosixPath(file).name)
            write(obj, local)
            size, checksum = local.stat().st_size, file_digest(local)
            data = local.read_bytes()
        chosen = file
        for _ in range(3):
            if chosen not in self.taken and self.place.store.put_if(self.place._at(chosen), data, tag=None):
                return Item(file=chosen, size=size, checksum=checksum)
            chosen = _variant(file)  # taken by a manifest, or left by a run that was killed
        raise StorageError(f"{self.place.owner}: no free name for item file {file!r} in "
                           f"{urls.shown(self.place.path)} after three tries")

    def checkpoint(self, state: dict[str, Any], items: Iterable[tuple[str, Item]]) -> None:
        self._listed.update((name, list(item)) for name, item in items)
        data = {"state": state, "written": time.time(), "items": self._listed}
        self.place.store.put_bytes(self.place._at(f"{STAGING}/{self.id}.json"), json.dumps(data).encode())

    def keep(self) -> None:
        """Nothing to do: the checkpoint stays for the next writer (see :meth:`discard`)."""

    def discard(self) -> None:
        """After a publish, the checkpoints are done with. Otherwise they stay: the next writer of
        the same code and parameters takes the items over, and once stale they tell ``tidy`` to
        sweep what nobody published."""
        if self.published:
            names = [self.id + ".json"] + ([self._checkpoint_name] if self._checkpoint_name else [])
            self.place.store.remove([self.place._at(f"{STAGING}/{name}") for name in names])


def _tag_of(token: Any) -> str | None:
    return None if token is None else str(token)


def _variant(file: str) -> str:
    path = PurePosixPath(file)
    tag = f".{uuid.uuid4().hex[:8]}"
    stem = fit_name(path.stem[::-1], NAME_MAX - len(tag) - len(path.suffix.encode()))[::-1]
    return str(path.with_name(f"{stem}{tag}{path.suffix}"))


def _accounted(manifest: Manifest) -> set[str]:
    return {MANIFEST_NAME, VERIFIED, *manifest.items.files, *manifest.retired, *manifest.retired_parts,
            *(record.file for record in manifest.items.records if record.file)}


# Parsed manifests by (folder, version tag): a version is never edited.
_manifests: BoundedCache[tuple[str, str], Manifest] = BoundedCache(4)
