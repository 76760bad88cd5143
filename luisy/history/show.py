"""``luisy show PATH``: where an output came from, from what luisy recorded when it was written.

PATH is an output file, a directory output, or an item file inside one. The answer comes from the
output's fingerprint record (task, parameters, code, library versions, what it required), the
manifest of a directory output (its items and the input each came from), the run journal (the
run that wrote it) and, for parquet and HDF5 files, the provenance the file carries itself —
which is all there is for a file copied out of the working directory. No task code is imported,
nothing is unpickled, and text from those files is printed with its control characters escaped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from luisy import config, storage, urls
from luisy.directory.manifest import MANIFEST_NAME, Manifest
from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError, MissingExtraError, ProvenanceError
from luisy.fingerprint import records
from luisy.history.provenance import read_embedded
from luisy.history.runs import TaskRun, runs_of, when
from luisy.paths import relative_posix
from luisy.storage import Storage
from luisy.texttable import printable

__all__ = ["Provenance", "show"]


@dataclass
class Provenance:
    """What luisy knows about where one output came from."""

    #: ``file``, ``directory`` or ``item``.
    kind: str
    path: Path
    #: The output the path belongs to (the folder, for an item).
    output: Path
    record: dict[str, Any] | None = None
    manifest: Manifest | None = None
    #: For an item: its name in the manifest.
    item: str | None = None
    run: TaskRun | None = None
    embedded: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def about(self) -> dict[str, Any]:
        """The record's ``provenance`` entry (empty if there is none)."""
        return (self.record or {}).get("provenance") or {}

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        manifest = self.manifest
        out: dict[str, Any] = {
            "kind": self.kind, "path": str(self.path), "output": str(self.output), "item": self.item,
            "task": self.about.get("task") or (self.embedded or {}).get("task"),
            "record": self.record, "embedded": self.embedded,
            "run": None if self.run is None else self.run.to_dict(), "notes": self.notes,
        }
        if manifest is not None:
            out["manifest"] = {"task": manifest.task, "params": manifest.params,
                               "code_fingerprint": manifest.code_fingerprint, "run": manifest.run,
                               "luisy_version": manifest.luisy_version, "python_version": manifest.python_version,
                               "host": manifest.host, "started": manifest.started, "finished": manifest.finished,
                               "items": len(manifest.items), "failed": len(manifest.failed),
                               "inputs_digest": manifest.inputs_digest}
            if self.item is not None:
                out["item_entry"] = dict(manifest.items[self.item]._asdict())
        return out

    def lines(self) -> list[str]:
        """What ``luisy show`` prints: one line each, control characters from the files escaped."""
        return [printable(line) for line in self._lines()]

    def _lines(self) -> list[str]:
        about, record, manifest, embedded = self.about, self.record or {}, self.manifest, self.embedded or {}
        task = about.get("task") or embedded.get("task") or (manifest.task if manifest is not None else "?")
        out = [f"{self.path}", f"  kind:          {_KINDS[self.kind]}"]
        if self.kind == "item":
            out.append(f"  in:            {self.output}")
        out.append(f"  task:          {task}" + (f"  ({about['class']})" if about.get("class") else ""))
        params = record.get("params") or (manifest.params if manifest is not None else None) or embedded.get("params")
        out.append(f"  parameters:    {_pairs(params) if params else '(none)'}")
        if record.get("fingerprint"):
            out.append(f"  fingerprint:   {record['fingerprint']}")
        code = record.get("code") or {}
        if code:
            out.append("  code:          " + ", ".join(f"{name} {value[:12]}" for name, value in sorted(code.items())))
        elif manifest is not None and manifest.code_fingerprint:
            out.append(f"  code:          {manifest.code_fingerprint}")
        out.extend(self._upstream_lines())
        if self.item is not None and manifest is not None:
            entry = manifest.items[self.item]
            out.append(f"  item:          {self.item!r}: {entry.size} bytes, checksum {entry.checksum}")
            out.append(f"  made from:     {self._input_of_item()} (input fingerprint {entry.source})")
        if manifest is not None and self.kind == "directory":
            out.append(f"  items:         {len(manifest.items)} ({len(manifest.failed)} failed)")
        out.extend(self._run_lines())
        versions = dict(record.get("versions") or {})
        run = self.run
        python = (run.python_version if run is not None else "") or (manifest.python_version if manifest else "")
        luisy_version = (run.luisy_version if run is not None else "") or (manifest.luisy_version if manifest else "")
        if luisy_version:
            versions.setdefault("luisy", luisy_version)
        if python:
            versions["Python"] = python
        if versions:
            out.append("  versions:      " + ", ".join(f"{name} {v}" for name, v in sorted(versions.items())))
        if embedded:
            # A run that yields requirements learns them while it runs: the file, written before
            # they are all known, carries the fingerprint with those of the run before.
            same = "" if not record.get("fingerprint") or record.get("dynamic") else (
                " (as recorded)" if embedded.get("fingerprint") == record["fingerprint"]
                else " (differs from the record: the file was replaced by hand?)")
            out.append(f"  in the file:   {embedded.get('task', '?')}, fingerprint {embedded.get('fingerprint', '?')}"
                       f"{same}, written {embedded.get('written', '?')}")
        out.extend(f"  note:          {note}" for note in self.notes)
        return out

    def _upstream_lines(self) -> list[str]:
        record, manifest = self.record or {}, self.manifest
        fingerprints = record.get("upstream") or {}
        lines = []
        for required in self.about.get("requires", []):
            outputs = ", ".join(required.get("outputs") or []) or "(no output)"
            fingerprint = fingerprints.get(required.get("task_id"))
            if fingerprint is None and manifest is not None and manifest.inputs_digest:
                fingerprint = f"items {manifest.inputs_digest}"
            lines.append(f"  upstream:      {required.get('task')}: {outputs}"
                         + (f" (fingerprint {fingerprint})" if fingerprint else ""))
        return lines

    def _input_of_item(self) -> str:
        """The input file an item was made from: the required folder's file of the same name."""
        root = config.get_working_dir()
        for required in self.about.get("requires", []):
            for folder in required.get("outputs") or []:
                base = root / folder
                item = PurePosixPath(str(self.item))
                names = [name for name, is_folder in storage.for_path(base).listdir(os.fspath(base / item.parent))
                         if not is_folder and (name == item.name or name.startswith(f"{item.name}."))]
                if names:
                    found = base / item.parent / min(names, key=lambda name: (name != item.name, name))
                    if urls.scheme(found) is not None:
                        return urls.shown(os.fspath(found))
                    return os.path.relpath(found, Path.cwd()) if found.is_relative_to(Path.cwd()) else str(found)
        return f"input item {self.item!r}"

    def _run_lines(self) -> list[str]:
        run, manifest, written_by = self.run, self.manifest, self.about.get("written_by") or {}
        if run is not None:
            ended = f" → {when(run.ended)} ({run.duration:.1f}s)" if run.duration is not None else ""
            return [f"  written by:    run {run.run} (task run {run.id}), {run.state}",
                    f"                 {when(run.started)}{ended} UTC, {run.user}@{run.host}, pid {run.pid}"]
        if written_by:
            return [f"  written by:    run {written_by.get('run')} (task run {written_by.get('id')}), "
                    f"{written_by.get('user')}@{written_by.get('host')}, started {when(written_by.get('started'))} UTC "
                    "(not in the run journal)"]
        if manifest is not None:
            return [f"  written by:    run {manifest.run or '?'} on {manifest.host}, "
                    f"{manifest.started} → {manifest.finished}"]
        return []


_KINDS = {"file": "output file", "directory": "directory output", "item": "item of a directory output"}


def show(path: str | os.PathLike[str]) -> Provenance:
    """What luisy recorded about the output at ``path`` (see the module docstring).

    Raises :class:`~luisy.errors.LuisyError` if nothing is at ``path`` or luisy knows nothing of it.
    """
    path = Path(urls.alias(path) or os.path.abspath(path))
    store = storage.for_path(path)
    if not (store.exists(os.fspath(path)) or store.exists(os.fspath(path), folder=True)):
        raise LuisyError(f"{urls.shown(os.fspath(path))}: no such file or folder")
    root = config.get_working_dir()
    folder = _directory_output(store, path, root)
    if folder is None:
        found = Provenance("file", path, path)
    else:
        manifest = DirectoryTarget(folder, storage=store).current_manifest()
        found = Provenance("directory" if folder == path else "item", path, folder, manifest=manifest)
        if found.kind == "item":
            found.item = _item_name(found.manifest, folder, path)
    unread = _read_embedded(found)
    rel = _relative(found.output, root)
    if rel is not None:
        found.record = _record(root, rel, path)
    if found.record is None and found.manifest is None and found.embedded is None:
        where = ("below" if rel is not None else "(not below)") + f" the working directory {root}"
        raise LuisyError(f"{path}: luisy has no record of this output {where}, and "
                         + (unread or "the file carries none; is it an input, or was it written by luisy 1.x?"))
    if unread:
        found.notes.append(unread)
    if found.record is None:
        found.notes.append("no fingerprint record: copied here, made by luisy 1.x, or outside the working directory")
    found.run = _run(root, found)
    return found


def _read_embedded(found: Provenance) -> str | None:
    """Sets ``found.embedded``; returns why the file's provenance could not be read, if a reader is missing."""
    try:
        store, path = storage.for_path(found.path), os.fspath(found.path)
        found.embedded = store.load(path, read_embedded) if store.exists(path) else None
    except MissingExtraError as error:
        # Not PyTables instead: reading an attribute with it unpickles what the file holds.
        return error.format_message()
    return None


def _directory_output(store: Storage, path: Path, root: Path) -> Path | None:
    """The directory output ``path`` is or is inside (not looking above the working directory)."""
    # In an object store the climb stops at the bucket (``/s3:/bucket``): nothing above it is the store's.
    top = 3 if urls.scheme(path) is not None else 1
    for folder in [path, *path.parents] if store.exists(os.fspath(path), folder=True) else path.parents:
        if len(folder.parts) < top:
            return None
        if store.exists(os.fspath(folder / MANIFEST_NAME)):
            return folder
        if folder == root or folder == folder.parent:
            return None
    return None


def _item_name(manifest: Manifest | None, folder: Path, path: Path) -> str:
    rel = path.relative_to(folder).as_posix()
    if manifest is None:
        raise LuisyError(f"{path}: the manifest of {folder} is missing or corrupt (`luisy verify` says more)")
    if rel == MANIFEST_NAME:
        raise LuisyError(f"{path} is the manifest of {folder}: show the folder itself")
    try:
        return manifest.items.names[manifest.items.files.index(rel)]
    except ValueError:
        raise LuisyError(f"{path}: not an item of {folder} (its manifest does not list {rel!r}; "
                         "left by an interrupted run, or put there by hand)") from None


def _relative(path: Path, root: Path) -> str | None:
    rel = relative_posix(path, root)
    return None if rel.startswith("..") else rel


def _record(root: Path, rel: str, path: Path) -> dict[str, Any] | None:
    """The output's fingerprint record; :class:`~luisy.errors.ProvenanceError` if it is malformed."""
    project = root / rel.split("/", 1)[0]
    record = records.read_at(project, rel)
    if isinstance(record, records.Malformed):
        raise ProvenanceError(f"{path}: its fingerprint record {record.path} {record.problem}")
    return record if isinstance(record, dict) else None


def _run(root: Path, found: Provenance) -> TaskRun | None:
    """The journal's run that wrote the output: the record's, else the manifest's."""
    about = found.about
    written_by = about.get("written_by") or {}
    task_id = about.get("task_id")
    if not task_id:
        return None
    runs = runs_of(root, task_id, since=written_by.get("started"))  # the journal from that run on
    by_id = next((r for r in runs if r.id == written_by.get("id")), None)
    if by_id is not None:
        return by_id
    run_id = found.manifest.run if found.manifest is not None else written_by.get("run")
    return next((r for r in runs if run_id and r.run == run_id and r.state == "SUCCESS"), None)


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
