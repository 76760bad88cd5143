"""Files in an object store (S3, Azure Blob, GCS) or any other fsspec file system.

Paths arrive as aliases (``/s3:/lake/data/x.csv``, see :mod:`luisy.urls`) and are turned into the
file system's keys. An object is written with one PUT (whole or absent); a file a format writes is
made in a local temporary folder first and uploaded at publish. Reads download to a local
temporary file (every reader luisy knows takes a path) that is deleted after reading.

What object stores cannot do, and what luisy does instead, is in the docs ("Data in object
stores"): no rename (a directory output's manifest is its commit point, see
:mod:`luisy.directory.remote`), no append (a journal file is written whole each time), no lock
among machines (a conditional write decides between two publishers).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luisy import config, urls
from luisy.atomic import defer
from luisy.digests import digest
from luisy.errors import BrokenFileError, LuisyError
from luisy.sources import SourceItem
from luisy.storage import Appender, ContentDigests, Reader, Storage, Writer

logger = logging.getLogger("luisy")

#: The fsspec package each scheme needs, to name it when it is missing.
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "gs": "gcsfs",
            "gcs": "gcsfs"}


#: How long a process takes a store it could not reach as lost, failing its requests at once.
LOST_SECONDS = 30.0
#: How large a journal object grows before the next events go to a new one.
ROLL_BYTES = 64 << 10
#: How long the first request to a store may take before it counts as unreachable.
REACH_SECONDS = 20.0


class StorageError(LuisyError):
    """An object store cannot be reached, or refused a request."""


@dataclass(frozen=True)
class Entry:
    """An object below a folder: its path relative to the folder, size, version tag, and when it
    was written (epoch seconds; ``None`` where the store does not say)."""

    rel: str
    size: int
    tag: str
    modified: float | None = None


class RemoteStorage(Storage):
    """Objects of one fsspec file system (``scheme``), made with ``options`` (fsspec's storage options)."""

    def __init__(self, scheme: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.scheme = scheme
        self.options = dict(options or {})
        self._fs: Any = None
        self._pid = -1
        self._lock = threading.Lock()
        self._lost_at, self._lost_why = -math.inf, ""

    def __getstate__(self) -> dict[str, Any]:
        # A client does not cross processes (its event loop and connections stay behind).
        return {"scheme": self.scheme, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["scheme"], state["options"])  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        """The fsspec file system, one per process: a forked item process makes its own."""
        if self._pid != os.getpid():
            if self._fs is not None:  # a forked child: fsspec's lock may be held by a thread of the parent
                importlib.import_module("fsspec.asyn").reset_lock()
            self._fs, self._pid = _file_system(self.scheme, self.options), os.getpid()
        return self._fs

    def key(self, path: str | os.PathLike[str]) -> str:
        """The file system's name for the alias ``path``."""
        url = urls.url(path)
        if url is None:
            raise ValueError(f"{os.fspath(path)} is not in a {self.scheme}:// store")
        return str(self.fs._strip_protocol(url)).rstrip("/")

    def _bounded(self) -> dict[str, float]:
        """fsspec's wait limit for one call, where the file system takes one (the asynchronous ones)."""
        return {"timeout": REACH_SECONDS} if getattr(self.fs, "async_impl", False) else {}


    def exists(self, path: str, folder: bool = False) -> bool:
        with self._errors(path):
            key = self.key(path)
            return bool(self.fs.isdir(key) if folder else self.fs.isfile(key))

    def load(self, path: str, read: Reader, folder: bool = False) -> Any:
        with tempfile.TemporaryDirectory(prefix="luisy-get-") as tmp:
            local = os.path.join(tmp, os.path.basename(path) or "object")
            with self._errors(path):
                key = self.key(path)
                if folder:
                    os.mkdir(local)
                    for entry in self.walk(path):
                        os.makedirs(os.path.dirname(os.path.join(local, entry.rel)), exist_ok=True)
                        self.fs.get_file(f"{key}/{entry.rel}", os.path.join(local, entry.rel))
                else:
                    self.fs.get_file(key, local)
            return read(local)

    def save(self, path: str, obj: Any, write: Writer, folder: bool = False) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="luisy-put-"))
        local = tmp / (os.path.basename(path) or "object")
        try:
            if folder:
                local.mkdir()
            write(obj, local)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        defer(functools.partial(self._upload, path, local, folder, tmp),
              functools.partial(shutil.rmtree, tmp, ignore_errors=True))

    def _upload(self, path: str, local: Path, folder: bool, tmp: Path) -> None:
        try:
            with self._errors(path):
                key = self.key(path)
                if not folder:
                    self.fs.put_file(os.fspath(local), key)
                    return
                made = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
                for rel in sorted(made):
                    self.fs.put_file(os.fspath(local / rel), f"{key}/{rel}")
                stale = [e.rel for e in self.walk(path) if e.rel not in made]
                if stale:  # what an earlier write left (another number of parts)
                    self.fs.rm([f"{key}/{rel}" for rel in stale])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def input_items(self, path: str, list_files: Callable[[], Sequence[SourceItem]]) -> Sequence[SourceItem]:
        return list_files()

    def token(self, path: str) -> Hashable | None:
        info = self.info(path)
        return None if info is None else _tag(info)

    def fingerprint(self, path: str, by_content: ContentDigests | None = None) -> str | None:
        # An object's ETag (or version) changes with its bytes: it serves by content and by time.
        info = self.info(path)
        if info is not None and info.get("type") != "directory":
            return digest(_tag(info), str(info.get("size")))
        entries = self.walk(path, once=True)  # an input's: its listing serves the directory task reading it
        return digest(*(f"{e.rel}:{e.tag}:{e.size}" for e in entries)) if entries else None

    def modified(self, path: str) -> float | None:
        info = self.info(path)
        return None if info is None else _seconds(_modified_of(info))

    def size(self, path: str) -> int | None:
        info = self.info(path)
        return int(info["size"]) if info is not None and info.get("type") == "file" and info.get("size") is not None \
            else None

    def info(self, path: str) -> dict[str, Any] | None:
        """What the store says about the object (or folder) at ``path``; ``None`` if nothing is there."""
        with self._errors(path):
            try:
                found: dict[str, Any] = self.fs.info(self.key(path))
            except FileNotFoundError:
                return None
            return found

    def walk(self, path: str, once: bool = False) -> list[Entry]:
        """Every object below the folder ``path``, by relative path: one paged listing. With
        ``once`` (an input folder, which luisy never writes), listed once per build."""
        scans = config.context().caches.scans if once else None
        remembered = ("walk", self.scheme, path)
        if scans is not None and remembered in scans:
            known: list[Entry] = scans[remembered]
            return known
        with self._errors(path):
            key = self.key(path)
            try:
                found = self.fs.find(key, detail=True)
            except FileNotFoundError:
                found = {}
        entries = [Entry(name[len(key) + 1:], int(info.get("size") or 0), _tag(info), _seconds(_modified_of(info)))
                   for name, info in found.items() if name.startswith(key + "/") and info.get("type") != "directory"]
        entries.sort(key=lambda e: e.rel)
        if scans is not None:
            scans[remembered] = entries
        return entries

    def read_bytes(self, path: str, limit: int) -> bytes:
        with self._errors(path):
            data: bytes = self.fs.cat_file(self.key(path))
        if len(data) > limit:
            raise BrokenFileError(f"{urls.shown(path)} has more than {limit} bytes: it is none luisy wrote; "
                                  "remove it")
        return data

    def put_bytes(self, path: str, data: bytes) -> None:
        with self._errors(path):
            self.fs.pipe_file(self.key(path), data)

    def put_if(self, path: str, data: bytes, tag: str | None) -> bool:
        """Write ``data`` at ``path`` only if the object there is still version ``tag`` (``None``:
        only if there is none); ``False`` if it is not."""
        key = self.key(path)
        with self._errors(path):
            try:
                self.fs.pipe_file(key, data, **_condition(self.scheme, tag))
            except Exception as error:
                if _precondition_failed(error):
                    return False
                raise
        return True

    def appender(self, path: str, new: bool) -> Appender:
        if new and self.info(path) is not None:
            raise FileExistsError(path)
        return _Rewriter(self, path, new)

    def listdir(self, path: str) -> list[tuple[str, bool]]:
        with self._errors(path):
            key = self.key(path)
            try:
                found = self.fs.ls(key, detail=True)
            except FileNotFoundError:
                return []
        names = {os.path.basename(info["name"].rstrip("/")): info.get("type") == "directory" for info in found
                 if info["name"].rstrip("/") != key}
        return sorted(names.items())

    @contextlib.contextmanager
    def lock(self, path: str) -> Iterator[None]:
        # No lock reaches other machines: what luisy writes under it is one whole object, and
        # the last writer wins (a record is its task's alone).
        with self._lock:
            yield

    def unwritten(self, targets: Iterable[Any]) -> list[str]:
        return [urls.shown(str(getattr(t, "path", t))) for t in targets if not t.exists()]

    def root_problem(self, path: str) -> str | None:
        """The bucket (container) must exist; the prefix below it need not."""
        bucket = self.key(path).split("/", 1)[0]
        with self._errors(path):
            # Listed, not asked whether it exists: adlfs answers yes when the store is not reached.
            # The prefix first: credentials may reach it and not the whole bucket. A bounded wait:
            # a store that does not answer would otherwise be retried for long.
            for where in (self.key(path), bucket):
                try:
                    self.fs.ls(where, detail=False, **self._bounded())
                    return None
                except FileNotFoundError:  # an empty prefix: the bucket decides
                    continue
        kind = "container" if self.scheme in ("az", "abfs", "abfss") else "bucket"
        return f"is in the {kind} {bucket!r}, which does not exist (create it first)"

    def fetch_file(self, path: str, local: Path) -> None:
        with self._errors(path):
            self.fs.get_file(self.key(path), os.fspath(local))

    def send_file(self, local: Path, path: str) -> None:
        with self._errors(path):
            self.fs.put_file(os.fspath(local), self.key(path))

    def make_folder(self, path: str) -> None:
        pass  # an object store has no folders: a key's prefix is enough

    def remove(self, paths: Sequence[str]) -> None:
        """Delete the objects at ``paths`` (missing ones are no error)."""
        if paths:
            with self._errors(paths[0]), contextlib.suppress(FileNotFoundError):
                self.fs.rm([self.key(p) for p in paths])

    @contextlib.contextmanager
    def _errors(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """A store that cannot be reached, or refuses, is one line naming the URL. Once it could not
        be reached, the next requests of this process fail at once for :data:`LOST_SECONDS`
        (each would wait through the client's retries, item after item)."""
        if time.monotonic() - self._lost_at < LOST_SECONDS:
            raise StorageError(f"{urls.shown(os.fspath(path))}: the store could not be reached "
                               f"{time.monotonic() - self._lost_at:.0f} s ago ({self._lost_why})")
        try:
            yield
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, LuisyError):
            raise
        except Exception as error:
            if isinstance(error, PermissionError) or getattr(error, "status_code", None) in (401, 403):
                raise StorageError(f"{urls.shown(os.fspath(path))}: permission denied ({_said(error)}); "
                                   f"{_credentials(self.scheme)}") from error
            if _unreachable(error):
                self._lost_at, self._lost_why = time.monotonic(), _said(error)
            if type(error).__name__ == "FSTimeoutError":
                raise StorageError(f"{urls.shown(os.fspath(path))}: the store did not answer within "
                                   f"{REACH_SECONDS:g} s (is its endpoint right and reachable?)") from None
            raise StorageError(f"{urls.shown(os.fspath(path))}: {_said(error)}") from error


class _Rewriter:
    """Appends by writing the whole object again: an object store has no append. Past
    :data:`ROLL_BYTES` it goes on in a new object named after the first (``x.json``, then
    ``x-2.json``...), so a long build's journal costs linear, not quadratic, uploads."""

    def __init__(self, store: RemoteStorage, path: str, new: bool) -> None:
        self.store, self.path, self.part = store, path, 1
        self.data: bytes | None = b"" if new else None

    def write(self, data: bytes) -> None:
        if self.data is None:
            try:
                self.data = self.store.read_bytes(self.path, 1 << 30)
            except FileNotFoundError:
                self.data = b""
        if self.data and len(self.data) + len(data) > ROLL_BYTES:
            self.part += 1
            self.data = b""
        self.data += data
        self.store.put_bytes(self._current(), self.data)

    def _current(self) -> str:
        if self.part == 1:
            return self.path
        stem, dot, suffix = self.path.rpartition(".")
        return f"{stem}-{self.part}.{suffix}" if dot else f"{self.path}-{self.part}"

    def close(self) -> None:
        self.data = None


def _condition(scheme: str, tag: str | None) -> dict[str, Any]:
    """The keywords of ``pipe_file`` that make a write conditional on the version ``tag``."""
    if scheme in ("s3", "s3a"):
        # One PUT up to 4 GiB: a multipart upload of s3fs would drop the condition.
        return {"chunksize": 2**31, **({"mode": "create"} if tag is None else {"IfMatch": f'"{tag}"'})}
    if scheme in ("az", "abfs", "abfss"):
        if tag is None:
            return {"mode": "create"}
        from azure.core import MatchConditions

        return {"etag": f'"{tag}"', "match_condition": MatchConditions.IfNotModified}
    if tag is None and scheme not in ("gs", "gcs"):
        return {"mode": "create"}
    _say_unconditional(scheme)  # gcsfs takes no precondition keywords
    return {}


@functools.cache
def _say_unconditional(scheme: str) -> None:
    logger.warning("luisy cannot replace objects on %s:// conditionally: two runs publishing the same "
                   "directory output at once may lose one publication", scheme)


def _precondition_failed(error: BaseException) -> bool:
    """Whether ``error`` says a conditional write found another version (S3: 412, which s3fs
    raises as ``EINVAL``; Azure: 409 or 412)."""
    if isinstance(error, FileExistsError):
        return True
    if isinstance(error, OSError) and error.errno == errno.EINVAL and "Precondition" in str(error):
        return True
    return getattr(error, "status_code", None) in (409, 412) or type(error).__name__ in (
        "ResourceModifiedError", "ResourceExistsError")


def _tag(info: dict[str, Any]) -> str:
    """The version tag of an object: its ETag, version or generation, else size and time."""
    for key in ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash", "content_settings"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return f"{info.get('size')}:{_modified_of(info)}"


def _modified_of(info: dict[str, Any]) -> Any:
    """When the object was last written, in whichever field the file system names it."""
    return next((info[k] for k in ("LastModified", "last_modified", "mtime", "updated", "created")
                 if info.get(k) is not None), None)


def _seconds(when: Any) -> float | None:
    if when is None:
        return None
    return when.timestamp() if hasattr(when, "timestamp") else float(when)


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the store's endpoint did not answer (not: it refused a request)."""
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    return bool(names & {"EndpointConnectionError", "ConnectTimeoutError", "ServiceRequestError",
                         "ClientConnectorError", "ServerDisconnectedError", "FSTimeoutError",
                         "ConnectionRefusedError", "ReadTimeoutError"})


def _said(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def _credentials(scheme: str) -> str:
    return {
        "s3": "check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE / the instance role) and the bucket policy",
        "az": "check AZURE_STORAGE_CONNECTION_STRING, or the account name and key, or DefaultAzureCredential",
        "gs": "check GOOGLE_APPLICATION_CREDENTIALS",
    }.get({"abfs": "az", "abfss": "az", "s3a": "s3", "gcs": "gs"}.get(scheme, scheme),
          "check the store's credentials")


def _file_system(scheme: str, options: dict[str, Any]) -> Any:
    package = PACKAGES.get(scheme)
    try:
        fsspec = importlib.import_module("fsspec")
        cls = fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as error:
        needs = f"pip install {package}" if package else "install fsspec and the package for this scheme"
        raise StorageError(f"a working directory on {scheme}:// needs {package or 'an fsspec implementation'}: "
                           f"{needs} ({_said(error)})") from None
    # Listings are not cached: another process may have published since (luisy caches per build).
    # fsspec's file systems take it through their keywords (DirCache), not as a named parameter.
    kwargs = {"skip_instance_cache": True, "use_listings_cache": False, **options}
    if scheme in ("s3", "s3a"):  # botocore's default retries a lost server for a long time
        kwargs.setdefault("config_kwargs", {"connect_timeout": 10, "read_timeout": 120,
                                            "retries": {"max_attempts": 3, "mode": "standard"}})
    try:
        fs = cls(**kwargs)
        if scheme in ("az", "abfs", "abfss") and "retry_total" not in options:
            _bound_azure_retries(fs)
    except Exception as error:
        raise StorageError(f"cannot make a {scheme}:// client with the options {sorted(options)}: {_said(error)}; "
                           f"{_credentials(scheme)}") from None
    return fs


def _bound_azure_retries(fs: Any) -> None:
    """Give adlfs's client a bounded retry policy: its default retries a lost server for minutes,
    and adlfs takes no retry options of its own."""
    from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

    # The storage SDK's own default waits 15 s, then 18, 24...: over a minute for a lost server.
    limits: dict[str, Any] = {"retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3),
                              "connection_timeout": 10, "read_timeout": 120}
    if getattr(fs, "connection_string", None):
        fs.service_client = BlobServiceClient.from_connection_string(fs.connection_string, **limits)
    else:
        client = fs.service_client
        fs.service_client = BlobServiceClient(account_url=client.url, credential=client.credential, **limits)
