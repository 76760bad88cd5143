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
from luisy.directory.manifest import MANIFEST_NAME, REPAIR, Item, Manifest, ManifestHeader
from luisy.errors import ItemFileError, LuisyError, ManifestError
from luisy.paths import NAME_MAX
from luisy.storage.remote import RemoteStorage

if TYPE_CHECKING:
    from luisy.directory.target import DirectoryWriter

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
        tag = self.store.token(self._at(MANIFEST_NAME))
        if tag is None:
            return None, None
        key = (self.path, str(tag))
        known = _manifests.get(key)
        if known is None:
            try:
                raw = self.store.read_bytes(self._at(MANIFEST_NAME), MAX_BYTES)
            except FileNotFoundError:  # replaced by a publish since: read the new one
                return self._current()
            known = Manifest.from_json(raw.decode("utf-8", "surrogateescape"), urls.shown(self._at(MANIFEST_NAME)))
            _manifests.put(key, known)
        return known, str(tag)

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

    def reader(self, read: Callable[[str], Any]) -> Callable[[str], Any]:
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

    def contains(self, path: str) -> bool:
        return os.path.normpath(path).startswith(self.path + "/")

    def restamp(self, change: Callable[[Manifest], Manifest]) -> None:
        manifest, tag = self._current()
        if manifest is not None:
            self._replace(change(manifest), tag)

    def staging(self, state: dict[str, Any]) -> RemoteStaging:
        manifest: Manifest | None = None
        try:
            manifest, tag = self._current()
        except ManifestError:  # a corrupt one is replaced by the publish
            found = self.store.token(self._at(MANIFEST_NAME))
            tag = None if found is None else str(found)
        taken = set(manifest.items.files) | set(manifest.retired) if manifest is not None else set()
        return RemoteStaging(self, state, taken, tag)

    def checkpointed(self, state: dict[str, Any]) -> dict[str, Item]:
        return self._checkpoint(state)[1]

    def _checkpoint(self, state: dict[str, Any]) -> tuple[str | None, dict[str, Item]]:
        """The latest checkpoint written for ``state`` whose items are all still there."""
        found = []
        for name, _ in self.store.listdir(self._at(STAGING)):
            try:
                data = json.loads(self.store.read_bytes(self._at(f"{STAGING}/{name}"), MAX_BYTES))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("state") == state and isinstance(data.get("items"), dict):
                found.append((data.get("written", 0), name, data["items"]))
        if not found:
            return None, {}
        _, name, rows = max(found, key=lambda f: (f[0], f[1]))
        there = {e.rel: e.size for e in self.store.walk(self.path)}
        try:
            items = {n: Item(*row) for n, row in rows.items()}
        except TypeError:
            return None, {}
        return name, {n: item for n, item in items.items() if there.get(item.file) == item.size}

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
            self._replace(replace(manifest, items=kept, inputs_digest=None), tag)
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
        own = _accounted(manifest)
        strays = {rel: f"{urls.shown(self._at(rel))} is not listed in the manifest"
                  for rel in listed if rel not in own and not rel.startswith(f"{STAGING}/")}
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
        """Delete what runs that are gone uploaded without publishing: objects no manifest lists,
        older than ``[luisy] keep_replaced_seconds`` (younger ones may be another run's at work)."""
        manifest = self.manifest() if self.header() is not None else None
        own = _accounted(manifest) if manifest is not None else {MANIFEST_NAME}
        keep_for = config.current().keep_replaced_seconds
        now = time.time()
        doomed = []
        for entry in self.store.walk(self.path):
            if entry.rel in own or entry.rel.startswith(f"{STAGING}/"):
                continue
            modified = self.store.modified(self._at(entry.rel))
            if modified is not None and now - modified > keep_for:
                doomed.append(self._at(entry.rel))
        self.store.remove(doomed)
        return False

    def publish(self, writer: DirectoryWriter) -> Manifest:
        """Replace the manifest by one listing the writer's uploaded items with the kept ones,
        unless another run published meanwhile; delete retired items past their time."""
        current, tag = self._current()
        staging = writer.staging
        if isinstance(staging, RemoteStaging) and tag != staging.base:
            self._conflict()
        current = current or Manifest()
        items = current.items.merged(writer.kept, writer.new)
        listed = set(items.files) if current.items or current.retired else set()
        now, keep_for = time.time(), config.current().keep_replaced_seconds
        replaced = [f for f in current.items.files if f not in listed]
        retired = {f: t for f, t in current.retired.items() if now - t < keep_for and f not in listed}
        expired = [f for f in current.retired if f not in retired and f not in listed]
        retired.update(dict.fromkeys(replaced, now))
        manifest = writer.manifest(items, current, retired)
        self._replace(manifest, tag)
        if isinstance(staging, RemoteStaging):
            staging.published = True
        self.store.remove([self._at(f) for f in expired])
        return manifest

    def _replace(self, manifest: Manifest, tag: str | None) -> None:
        """Write ``manifest`` if the one there is still version ``tag`` (none there: ``None``)."""
        head, body, _ = manifest.encoded_lines()
        data = (head + "\n" + "".join(body)).encode("utf-8", "surrogateescape")
        if not self.store.put_if(self._at(MANIFEST_NAME), data, tag=tag):
            self._conflict()

    def _conflict(self) -> NoReturn:
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
        self.uploaded: list[str] = []
        self.published = False
        self._kept = False
        self._checkpoint_name, found = place._checkpoint(state)
        for name, item in found.items():
            self.resumed[name] = item
            self.taken.add(item.file)
        # What a checkpoint lists: the items taken over too, should this run be interrupted as well.
        self._listed = {name: list(item) for name, item in self.resumed.items()}

    def __getstate__(self) -> dict[str, Any]:
        # Another process only uploads items; what this writer records stays here.
        return {"place": self.place, "state": self.state, "taken": self.taken, "base": self.base, "id": self.id,
                "resumed": {},
                "uploaded": [], "published": False, "_kept": False, "_checkpoint_name": None, "_listed": {}}

    def write(self, file: str, obj: Any, write: Callable[[Any, Path], None]) -> Item:
        with tempfile.TemporaryDirectory(prefix="luisy-item-") as tmp:
            local = Path(tmp, PurePosixPath(file).name)
            write(obj, local)
            size, checksum = local.stat().st_size, file_digest(local)
            data = local.read_bytes()
        chosen = file
        for _ in range(3):
            if chosen not in self.taken and self.place.store.put_if(self.place._at(chosen), data, tag=None):
                break
            chosen = _variant(file)  # taken by a manifest, or left by a run that was killed
        self.uploaded.append(chosen)
        return Item(file=chosen, size=size, checksum=checksum)

    def checkpoint(self, state: dict[str, Any], items: dict[str, Item]) -> None:
        self._listed.update((name, list(item)) for name, item in items.items())
        data = {"state": state, "written": time.time(), "items": self._listed}
        self.place.store.put_bytes(self.place._at(f"{STAGING}/{self.id}.json"), json.dumps(data).encode())

    def keep(self) -> None:
        self._kept = True

    def discard(self) -> None:
        store, at = self.place.store, self.place._at
        checkpoints = [at(f"{STAGING}/{self.id}.json")]
        if self._checkpoint_name is not None and (self.published or not self._kept):
            checkpoints.append(at(f"{STAGING}/{self._checkpoint_name}"))  # taken over: it is done
        if self._kept:
            return  # for the next writer, which takes the checkpointed items over
        doomed = [] if self.published else [at(f) for f in self.uploaded]
        store.remove(doomed + checkpoints)


def _variant(file: str) -> str:
    path = PurePosixPath(file)
    tag = f".{uuid.uuid4().hex[:8]}"
    stem = fit_name(path.stem[::-1], NAME_MAX - len(tag) - len(path.suffix.encode()))[::-1]
    return str(path.with_name(f"{stem}{tag}{path.suffix}"))


def _accounted(manifest: Manifest) -> set[str]:
    return {MANIFEST_NAME, VERIFIED, *manifest.items.files, *manifest.retired}


# Parsed manifests by (folder, version tag): a version is never edited.
_manifests: BoundedCache[tuple[str, str], Manifest] = BoundedCache(4)
