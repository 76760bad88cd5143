"""Outputs shared through a remote (``luisy run --download --upload``): a team's folder or store used as a cache.

The working directory stays local; the remote (:func:`luisy.config.resolve_remote`) holds copies
of outputs under their paths below the working directory, each task's with a record
``<project>/.luisy-shared/<name>.json``: the task's shared fingerprint
(:mod:`luisy.fingerprint.shared`, the same on every machine with the same code and data) and the
size and content digest of each file.

* ``--download``: when luigi asks whether a task is complete and it is not here (no output, or a
  fingerprint that differs), its output is fetched if the remote's record has the task's shared
  fingerprint; each file is checked against its digest before it is moved into place, and the
  task's fingerprint is recorded here as if it had run. So only what the run needs is fetched:
  a complete downstream output stops luigi's walk, and its inputs are not fetched. An external
  input that is not here is fetched whenever the remote has a copy.
* ``--upload``: after the run, every output of the graph that is here and current, and whose
  record on the remote is missing or has another fingerprint, is sent: its files first, then its
  record. The record is the commit point: a reader that finds it finds its files, and a file
  replaced under a reader fails the digest check (the task is then computed instead).

Directory tasks' outputs are not shared (their manifests describe local inputs); the tasks
downstream of them are. Two machines uploading the same output at once: the last writer wins.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, storage, urls
from luisy.digests import file_digest
from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError
from luisy.fingerprint import records
from luisy.fingerprint import task as fingerprint
from luisy.fingerprint.shared import file_digests, shared
from luisy.graph import upstream_first
from luisy.history import journal
from luisy.history.provenance import describe
from luisy.paths import relative_posix
from luisy.storage import Storage
from luisy.storage.local import LocalStorage

__all__ = ["SHARED_DIR", "check", "download", "fetched", "fetched_in_build", "sharing", "upload", "uploaded"]

logger = logging.getLogger("luisy")

#: The folder of each project on the remote that holds the records of shared outputs.
SHARED_DIR = ".luisy-shared"


class RemoteCopyError(LuisyError):
    """A file fetched from the remote is not the one its record describes."""


def check(remote: config.Remote) -> None:
    """Fail with one line if outputs cannot be shared with ``remote``: the working directory is not
    on this machine's file system, or the remote cannot be reached or used."""
    if not isinstance(storage.active(), LocalStorage):
        raise LuisyError(f"--download/--upload share a local working directory with a remote; the working "
                         f"directory {urls.shown(os.fspath(config.get_working_dir()))} is not local")
    root = _root(remote)
    try:
        problem = _store(remote).root_problem(root)
    except LuisyError as error:
        raise type(error)(f"{error.format_message()} (the remote set by {remote.source})") from None
    if problem is not None:
        raise LuisyError(f"the remote {remote.url} (set by {remote.source}) {problem}")


@contextmanager
def sharing() -> Iterator[None]:
    """Inside the block, shared fingerprints and remote records are looked up once."""
    with config.caching("sharing"):
        yield


def fetched(task: luigi.Task) -> bool:
    """With ``--download``: fetch ``task``'s output if the remote holds it with the task's shared
    fingerprint; whether it did. Asked by ``complete()`` of a task that is not complete here."""
    remote = config.current().remote
    if remote is None or not remote.download or not _shareable(task):
        return False
    memo = _memo()
    key = "fetched:" + task.task_id
    if key not in memo:
        memo[key] = str(task) if _fetch(task, remote) else ""
    return bool(memo[key])


def fetched_in_build() -> list[str]:
    """The tasks this process fetched in the build in progress (as ``str(task)``)."""
    return [str(name) for key, name in _memo().items() if key.startswith("fetched:") and name]


def download(*tasks: luigi.Task, remote: str | None = None) -> list[luigi.Task]:
    """Fetch the output of each of ``tasks`` that is not complete here from the remote (see the
    module docs), where the remote holds it with the task's fingerprint; the tasks fetched."""
    with _using(config.resolve_remote(remote, download=True)):
        with _not_fetching():
            missing = [task for task in tasks if not task.complete()]
        return [task for task in missing if fetched(task)]


def upload(*tasks: luigi.Task, remote: str | None = None) -> list[luigi.Task]:
    """Send every output of ``tasks``' graphs that is here and current, and that the remote lacks
    with its fingerprint, to the remote; the tasks whose outputs were sent."""
    with _using(config.resolve_remote(remote, upload=True)):
        return uploaded(tasks)


def uploaded(roots: Iterable[luigi.Task]) -> list[luigi.Task]:
    """In a build with ``--upload``: send what :func:`upload` sends; the tasks sent."""
    remote = config.current().remote
    if remote is None or not remote.upload:
        return []
    seen: set[str] = set()
    sent = []
    with _not_fetching():  # what is complete here is sent; asking must not fetch what is not
        for root in roots:
            for task in upstream_first(root):
                if task.task_id in seen or not _shareable(task):
                    continue
                seen.add(task.task_id)
                if _send(task, remote):
                    sent.append(task)
    return sent


@contextmanager
def _using(remote: config.Remote | None) -> Iterator[None]:
    with config.running(replace(config.current(), remote=remote)), sharing():
        if remote is not None:
            check(remote)
        yield


@contextmanager
def _not_fetching() -> Iterator[None]:
    """Inside the block, ``complete()`` says whether a task is complete here, fetching nothing."""
    run = config.current()
    with config.running(replace(run, remote=run.remote and replace(run.remote, download=False))):
        yield


def _memo() -> dict[str, Any]:
    memo = config.context().caches.sharing
    return memo if memo is not None else {}


def _shareable(task: luigi.Task) -> bool:
    """Whether ``task`` has outputs in files inside the working directory, none of them a directory task's."""
    outputs = flatten(task.output())
    if not outputs or not all(getattr(o, "path", None) and not isinstance(o, DirectoryTarget) for o in outputs):
        return False
    return all(_plain(rel) for _, rel in _outputs(task))


def _store(remote: config.Remote) -> Storage:
    return storage.for_path(_root(remote), remote.options)


def _root(remote: config.Remote) -> str:
    return os.fspath(config.root_path(remote.url))


def _record_path(remote: config.Remote, task: luigi.Task) -> str | None:
    where = records.location(task)
    if where is None:
        return None
    project, key = where
    return os.fspath(records.record_path(Path(_root(remote)) / project.name, key, SHARED_DIR))


def _remote_record(remote: config.Remote, task: luigi.Task) -> dict[str, Any] | None:
    """The remote's record of ``task`` (looked up once per build), or ``None``."""
    memo = _memo()
    key = "record:" + task.task_id
    if key not in memo:
        path = _record_path(remote, task)
        try:
            read = json.loads(_store(remote).read_bytes(path, records.RECORD_MAX_BYTES)) if path else None
        except (FileNotFoundError, ValueError):
            read = None
        memo[key] = read if isinstance(read, dict) and isinstance(read.get("files"), dict) else None
    found: dict[str, Any] | None = memo[key]
    return found


def _recorded_fingerprint(remote: config.Remote) -> Any:
    def recorded(task: luigi.Task) -> str | None:
        record = _remote_record(remote, task)
        return str(record["fingerprint"]) if record is not None and "fingerprint" in record else None

    return recorded


def _outputs(task: luigi.Task) -> list[tuple[str, str]]:
    """``(local path, path relative to the working directory)`` of each output of ``task``."""
    root = config.get_working_dir()
    return [(os.fspath(o.path), relative_posix(o.path, root)) for o in flatten(task.output())]


def _fetch(task: luigi.Task, remote: config.Remote) -> bool:
    record = _remote_record(remote, task)
    if record is None or record.get("fingerprint") != shared(task, _recorded_fingerprint(remote)):
        return False
    store, here, root = _store(remote), storage.active(), _root(remote)
    files: dict[str, Any] = record["files"]
    try:
        for path, rel in _outputs(task):
            if rel in files:  # a file
                here.save(path, {"": files[rel]}, functools.partial(_place, store, root, rel))
                continue
            inside = {name[len(rel) + 1:]: about for name, about in files.items() if name.startswith(rel + "/")}
            unsafe = next((name for name in inside if not _plain(name)), None)
            if unsafe is not None:
                raise RemoteCopyError(f"its record names the file {unsafe!r}, outside {rel}")
            if not inside:
                return False
            here.save(path, inside, functools.partial(_place, store, root, rel), folder=True)
    except (RemoteCopyError, FileNotFoundError) as error:
        logger.warning("%s: not taken from the remote %s (%s); it is computed here", task, remote.url, error)
        _memo()["refused:" + task.task_id] = True
        return False
    if not fingerprint.is_external(task):
        fingerprint.accept(task, describe(task))
    logger.info("%s: fetched from the remote %s", task, remote.url)
    return True


def _place(store: Storage, root: str, rel: str, inside: dict[str, Any], local: Path) -> None:
    """Fetch the files ``inside`` the output ``rel`` (``""``: the output is the file) to ``local``,
    each checked against its record."""
    for name, about in inside.items():
        source, target = (f"{rel}/{name}", local / name) if name else (rel, local)
        target.parent.mkdir(parents=True, exist_ok=True)
        store.fetch_file(f"{root}/{source}", target)
        if not isinstance(about, dict) or file_digest(target) != about.get("digest"):
            raise RemoteCopyError(f"its copy of {source} is not the one its record describes (written again since?)")


def _plain(name: str) -> bool:
    """Whether ``name`` is a plain relative path (what a record may name inside an output folder)."""
    return "\x00" not in name and "\\" not in name and all(p not in ("", ".", "..") for p in name.split("/"))


def _send(task: luigi.Task, remote: config.Remote) -> bool:
    """Send ``task``'s output if it is here and current and the remote lacks it; whether it did."""
    if fingerprint.is_external(task):
        if not all(o.exists() for o in flatten(task.output())):
            return False
    elif not task.complete():
        return False
    mine: str = shared(task, _recorded_fingerprint(remote))
    record = _remote_record(remote, task)
    if record is not None and record.get("fingerprint") == mine and not _memo().get("refused:" + task.task_id):
        return False
    files: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for path, rel in _outputs(task):
        found = file_digests(path)
        if found is None:
            return False
        single = storage.active().exists(path)
        for name, (value, size) in found.items():
            key = rel if single else f"{rel}/{name}"
            files[key] = {"digest": value, "size": size}
            sources[key] = path if single else os.path.join(path, name)
    store, root = _store(remote), _root(remote)
    for key in sorted(files):
        store.send_file(Path(sources[key]), f"{root}/{key}")
    written = {"fingerprint": mine, "files": files, "task": str(task), "task_id": task.task_id,
               "written_by": {"host": socket.gethostname(), "user": journal.user_name(), "time": time.time()}}
    record_at = _record_path(remote, task)
    if record_at is not None:
        store.put_bytes(record_at, json.dumps(written, indent=1, sort_keys=True).encode("utf-8"))
        _memo()["record:" + task.task_id] = written
    logger.info("%s: sent to the remote %s", task, remote.url)
    return True

