"""luisy's settings, resolved from their sources, and the :class:`Context` that carries them.

One :class:`Context` holds everything luisy's code asks of the scope it runs in: what the user
set (the working directory, luisy 1.x's settings), the :class:`Run` of the build in progress,
where outputs are stored, and what the scope computes once and reuses (:class:`Caches`). It is
the package's one ambient value (a ``ContextVar``); a ``with`` block (:func:`scope`,
:func:`caching`) changes it for its duration, so nothing outlives the block that made it.

Outside a run every call resolves again. The working directory, first found wins:

1. the CLI's ``--working-dir`` / :func:`set_working_dir` / :func:`working_dir` (the same thing),
2. the environment variable ``LUISY_WORKING_DIR``, then ``WORKING_DIR`` (luisy 1.x),
3. ``[luisy] working_dir`` in the luigi configuration,
4. ``./data``, relative to the current directory.

``luisy.build`` resolves every setting once into a :class:`Run` and puts it in the context for
the build (forked luigi workers and item processes inherit it), so the code deep inside
``complete()`` and ``run()`` reads the run's settings without luigi's global configuration
being changed. Outside a build, :func:`current` resolves a run with the same defaults, so a
task answers ``complete()`` the same inside and outside ``build()``.
"""

from __future__ import annotations

import configparser
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from luisy import luigi_adapter, urls
from luisy.errors import LuisyError, SettingValueError, UnknownSettingError

DEFAULT_WORKING_DIR = "data"
#: The ways to fingerprint external input files (``[luisy] input_fingerprint``).
INPUT_FINGERPRINTS = ("mtime", "content", "write-once")
ENV_VARS = ("LUISY_WORKING_DIR", "WORKING_DIR")

def set_working_dir(path: str | os.PathLike[str] | None) -> None:
    """Set the working directory in the current context (for a script: from here on); ``None`` forgets it."""
    _context.set(replace(context(), working_dir=None if path is None else os.fspath(path)))


@contextmanager
def working_dir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Use ``path`` as the working directory inside a ``with`` block."""
    with scope(working_dir=None if path is None else os.fspath(path)):
        yield get_working_dir()


def get_working_dir() -> Path:
    """The working directory in force as an absolute path (it need not exist)."""
    active = context().run
    return active.working_dir if active is not None else resolve_working_dir()


def resolve_working_dir() -> Path:
    """The working directory from its sources, in the order above."""
    return root_path(given_working_dir())


def root_path(given: str | os.PathLike[str]) -> Path:
    """``given`` (a folder or an object store's URL) as an absolute path; a URL as its alias
    (:mod:`luisy.urls`)."""
    remote = urls.alias(given)
    return Path(remote) if remote is not None else Path(urls.local_path(given)).expanduser().absolute()


def given_working_dir() -> str:
    """The working directory as its source gives it (perhaps relative), in the order above."""
    candidates = [context().working_dir, *(os.environ.get(name) for name in ENV_VARS)]
    candidates.append(_luigi_config().get("luisy", "working_dir", None))
    return next((c for c in candidates if c), DEFAULT_WORKING_DIR)


def central_scheduler_url() -> str | None:
    """luigi's configured central scheduler (``[core] default-scheduler-url``), if any."""
    parser = _luigi_config()
    return parser.get("core", "default-scheduler-url", None) or parser.get("core", "scheduler_url", None) or None


def luigi_default_scheduler_url() -> str:
    """The central scheduler luigi uses when told neither ``--local-scheduler`` nor a URL: its
    configured one, else ``[core] default-scheduler-host``/``-port`` (``localhost:8082``)."""
    parser = _luigi_config()
    host = parser.get("core", "default-scheduler-host", "localhost")
    port = parser.getint("core", "default-scheduler-port", 8082)
    return central_scheduler_url() or f"http://{host}:{port}/"


@contextmanager
def luigi_setting(section: str, option: str, value: str) -> Iterator[None]:
    """Set one option of luigi's own configuration inside a ``with`` block, unless the user set it."""
    parser = _luigi_config()
    if parser.get(section, option, None) is not None:
        yield
        return
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, value)
    try:
        yield
    finally:
        parser.remove_option(section, option)


def unreadable_luigi_config() -> LuisyError | None:
    """The error of a luigi configuration file that could not be parsed when luigi was imported, if any."""
    if luigi_adapter.CONFIG_ERROR is None:
        return None
    return SettingValueError(f"cannot read luigi's configuration: {luigi_adapter.CONFIG_ERROR}")


def _luigi_config() -> Any:
    error = unreadable_luigi_config()
    if error is not None:
        raise error
    return luigi_adapter.luigi_config()


#: The section of luigi's configuration whose settings go to the object store's client.
STORAGE_SECTION = "luisy.storage"


def storage_options() -> dict[str, Any]:
    """fsspec's storage options for a working directory on an object store: ``[luisy.storage]``,
    each value as JSON where it parses (``true``, numbers, objects), else as text."""
    parser = _luigi_config()
    if not parser.has_section(STORAGE_SECTION):
        return {}
    return {name: _json_or_text(value) for name, value in parser.items(STORAGE_SECTION)}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


#: The environment variable naming the remote that ``--download`` / ``--upload`` share outputs through.
REMOTE_ENV = "LUISY_REMOTE"
#: luisy 1.x's settings of its Azure remote: the setting's name → its environment variable.
AZURE_1X = {"azure_account_name": "LUISY_AZURE_ACCOUNT_NAME", "azure_storage_key": "LUISY_AZURE_STORAGE_KEY",
            "azure_container_name": "LUISY_AZURE_CONTAINER_NAME"}


@dataclass(frozen=True)
class Remote:
    """Where ``--download`` fetches outputs from and ``--upload`` sends them to (see :mod:`luisy.sharing`)."""

    #: A folder or an object store's URL.
    url: str
    #: fsspec's storage options for its client.
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: Which setting named it, for error messages.
    source: str = ""
    download: bool = False
    upload: bool = False


def resolve_remote(url: str | None = None, download: bool = False, upload: bool = False,
                   azure: Mapping[str, Any] | None = None) -> Remote | None:
    """The remote of a build that downloads or uploads (``None`` if it does neither). First found wins:

    1. ``url`` (``luisy run --remote``, ``luisy.build(remote=...)``),
    2. the environment variable ``LUISY_REMOTE``,
    3. ``[luisy] remote`` in the luigi configuration (its client takes the options of ``[luisy.storage]``),
    4. luisy 1.x's Azure settings: ``azure`` (1.x's ``--azure-*`` options and ``Config`` settings), else
       ``LUISY_AZURE_ACCOUNT_NAME``, ``LUISY_AZURE_STORAGE_KEY`` and ``LUISY_AZURE_CONTAINER_NAME``: the
       container ``az://<container>`` with that account and key (at the endpoint of
       ``AZURE_STORAGE_CONNECTION_STRING`` if that is set, else Azure's own).
    """
    if not (download or upload):
        return None
    for given, source in ((url, "--remote"), (os.environ.get(REMOTE_ENV), REMOTE_ENV),
                          (_luigi_config().get("luisy", "remote", None), "[luisy] remote")):
        if given:
            return Remote(os.fspath(given), storage_options(), source, download, upload)
    given_1x = legacy_settings() if azure is None else azure
    settings = {name: given_1x.get(name) or os.environ.get(variable) for name, variable in AZURE_1X.items()}
    missing = [AZURE_1X[name] for name, value in settings.items() if not value]
    flags = "/".join(f for f, on in (("--download", download), ("--upload", upload)) if on)
    if len(missing) == len(AZURE_1X):
        raise SettingValueError(f"{flags} needs a remote: set {REMOTE_ENV} or [luisy] remote to a folder or a URL "
                                f"(s3://bucket/prefix, az://container/prefix...), or luisy 1.x's "
                                f"{', '.join(AZURE_1X.values())}")
    if missing:
        raise SettingValueError(f"{flags}: luisy 1.x's Azure remote needs {' and '.join(missing)} too")
    source = "LUISY_AZURE_* (luisy 1.x)"
    return Remote(f"az://{settings['azure_container_name']}", _azure_options(
        str(settings["azure_account_name"]), str(settings["azure_storage_key"])), source, download, upload)


def _azure_options(account: str, key: str) -> dict[str, Any]:
    """adlfs's options for 1.x's account and key, at the endpoint of ``AZURE_STORAGE_CONNECTION_STRING``
    if it names one (an emulator, a sovereign cloud), else Azure's."""
    given = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    parts = dict(part.partition("=")[::2] for part in given.split(";") if "=" in part)
    endpoint = parts.get("BlobEndpoint")
    if not endpoint:
        return {"account_name": account, "account_key": key}
    protocol = parts.get("DefaultEndpointsProtocol", endpoint.split(":", 1)[0])
    return {"connection_string": f"DefaultEndpointsProtocol={protocol};AccountName={account};AccountKey={key};"
                                 f"BlobEndpoint={endpoint};"}


@dataclass(frozen=True)
class Run:
    """The settings of one ``luisy.build``, resolved once when it starts."""

    #: Root of the data-layer tree.
    working_dir: Path
    #: Item processes for directory tasks that do not set their own (``--processes``,
    #: ``[luisy] processes``, else 1).
    processes: int = 1
    #: Whether directory tasks retry items that failed before (``[luisy] retry_failed``, default yes).
    retry_failed: bool = True
    #: How long a directory output keeps the files of replaced items for readers of the previous
    #: manifest (``[luisy] keep_replaced_seconds``, default one hour).
    keep_replaced_seconds: float = 3600.0
    #: How often a directory task makes its finished items durable for a run after an interruption
    #: (``[luisy] checkpoint_seconds``, default 30).
    checkpoint_seconds: float = 30.0
    #: After Ctrl-C or SIGTERM, how long a directory task lets the items in progress finish before
    #: it stops them (``[luisy] grace_seconds``, default 10); a second signal stops at once.
    grace_seconds: float = 10.0
    #: Address of a Dask scheduler that runs the items of directory tasks which do not name their own
    #: (``--dask-scheduler``, ``[luisy] dask_scheduler``); ``None``: items run in local processes.
    dask_scheduler: str | None = None
    #: How external input files are fingerprinted: ``"mtime"`` (size and modification time, the
    #: default), ``"content"`` (a checksum, cached by size, mtime and inode) or ``"write-once"``
    #: (as ``"mtime"``, but a folder is listed again only when its folders' modification times
    #: changed: files are never edited in place); ``[luisy] input_fingerprint``. An external
    #: task's ``input_fingerprint`` wins.
    input_fingerprint: str = "mtime"
    #: Identity of the build; ``""`` outside one. A manifest records the run that wrote it.
    id: str = field(default="")
    #: Set by ``luisy watch``: input folder (its ``selection()``: the folder and how files are
    #: selected from it) → {item name → fingerprint} of the items found settled
    #: (unchanged for the settle time). The listing of such a folder holds back every other item:
    #: the run neither processes it nor counts it as removed. ``None``: every item counts.
    settled: Mapping[Any, Mapping[str, str]] | None = field(default=None, hash=False, repr=False)
    #: Where ``--download`` fetches outputs from and ``--upload`` sends them to (:func:`resolve_remote`);
    #: ``None``: the build does neither.
    remote: Remote | None = None

    @classmethod
    def resolve(cls, *, working_dir: str | os.PathLike[str] | None = None, processes: int | None = None,
                retry_failed: bool | None = None, dask_scheduler: str | None = None, new_id: bool = False,
                settled: Mapping[Any, Mapping[str, str]] | None = None, remote: Remote | None = None) -> Run:
        """The settings from their sources; arguments that are not ``None`` win over them."""
        parser = _luigi_config()
        root = resolve_working_dir() if working_dir is None else root_path(working_dir)
        return cls(
            working_dir=root,
            processes=max(1, processes if processes is not None else _setting(parser, "processes", 1, _count)),
            retry_failed=retry_failed if retry_failed is not None else _setting(
                parser, "retry_failed", True, _yes_or_no),
            keep_replaced_seconds=_setting(parser, "keep_replaced_seconds", 3600.0, _seconds),
            checkpoint_seconds=_setting(parser, "checkpoint_seconds", 30.0, _seconds),
            grace_seconds=_setting(parser, "grace_seconds", 10.0, _seconds),
            dask_scheduler=(dask_scheduler if dask_scheduler is not None
                            else _setting(parser, "dask_scheduler", None, _address)) or None,
            input_fingerprint=_setting(parser, "input_fingerprint", "mtime", _input_fingerprint),
            id=uuid.uuid4().hex if new_id else "",
            settled=settled,
            remote=remote,
        )

    def processes_for(self, task_value: int | None) -> int:
        """Item processes for a directory task: its own ``processes`` if set, else the run's."""
        return max(1, int(task_value)) if task_value is not None else self.processes

    def dask_scheduler_for(self, task_value: str | None) -> str | None:
        """The Dask scheduler for a directory task's items: its own ``dask_scheduler`` if set (``""``:
        none), else the run's."""
        return (task_value if task_value is not None else self.dask_scheduler) or None


def _setting(parser: Any, name: str, default: Any, parse: Callable[[str], Any]) -> Any:
    """``[luisy] name`` of luigi's configuration by ``parse``, ``default`` if unset; a value
    ``parse`` refuses (``ValueError``: what the setting takes) is one line naming it."""
    value = parser.get("luisy", name, None)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError as error:
        raise SettingValueError(f"[luisy] {name} = {value!r}: must be {error}") from None


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError("a whole number from 1 on")
    return count


def _yes_or_no(value: str) -> bool:
    states = configparser.ConfigParser.BOOLEAN_STATES
    if value.lower() not in states:
        raise ValueError("yes or no (also true/false, on/off, 1/0)")
    return states[value.lower()]


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    # A timer cannot wait longer than TIMEOUT_MAX; NaN compares as in range and never passes.
    if not 0 <= seconds <= threading.TIMEOUT_MAX:
        raise ValueError(f"a number of seconds from 0 to {threading.TIMEOUT_MAX:.0f}")
    return seconds


def _address(value: str) -> str:
    if any(not c.isprintable() or c.isspace() for c in value):
        raise ValueError("the address of a Dask scheduler, such as tcp://host:8786")
    return value


def _input_fingerprint(value: str) -> str:
    if value not in INPUT_FINGERPRINTS:
        raise ValueError(f"one of {', '.join(INPUT_FINGERPRINTS)}")
    return value


@dataclass(frozen=True)
class Caches:
    """What a scope computes once and reuses; ``None`` where it is not kept. The ``with`` block
    that asks for one (:func:`caching`) makes it, the blocks inside share it, and it is gone with
    the block: no cache outlives the build or command that made it."""

    #: Task id → what the task contributes to the fingerprints of the tasks that require it
    #: (:func:`luisy.fingerprint.task.remembered`).
    fingerprints: dict[str, str] | None = None
    #: Input folder listings, each made once (:func:`luisy.targets.scan_once`).
    scans: dict[tuple[Any, ...], Any] | None = None
    #: Folder → its temporary files, listed once (:func:`luisy.atomic.temps_listed_once`).
    temp_listings: dict[str, list[str]] | None = None
    #: ``(working directory, pid, day)`` → the journal file a process appends to, open
    #: (:func:`luisy.history.journal.one_file_per_process`).
    journal_files: dict[tuple[str, int, str], tuple[Any, Path]] | None = None
    #: Whether content digests computed outside a run update their cache (``luisy watch``).
    digests: bool | None = None
    #: Folder → input files found touched with their content unchanged (``luisy plan``).
    touched: dict[str, set[str]] | None = None
    #: Task id → its shared fingerprint (:mod:`luisy.fingerprint.shared`), and what the build
    #: fetched or found on its remote (:mod:`luisy.sharing`).
    sharing: dict[str, Any] | None = None


@dataclass
class TaskScope:
    """What the ``run()`` of one task collects while it runs (``luisy.tasks.running`` makes one per
    task run): the writes it holds back, what its journal entry notes, and a stop to raise once
    its finished work is published."""

    #: ``(publish, discard)`` of each write held back until ``run()`` returns
    #: (:func:`luisy.atomic.staged`); ``None`` while writes are made at once.
    pending: list[tuple[Callable[[], object], Callable[[], object]]] | None = None
    #: What the journal event that ends the task run adds (:func:`luisy.history.journal.note_items`).
    notes: dict[str, Any] | None = None
    #: A signal that asked to stop after the items were done (:func:`luisy.interrupts.stop_after_publish`).
    stop_after_publish: int | None = None


@dataclass(frozen=True)
class Context:
    """What luisy's code asks of the scope it runs in; replaced, never changed in place."""

    #: The working directory the user set (``--working-dir``, :func:`set_working_dir`); an input
    #: to :func:`resolve_working_dir`, not a result.
    working_dir: str | None = None
    #: luisy 1.x's settings other than the working directory, as set (:class:`Config`).
    legacy: Mapping[str, Any] = field(default_factory=dict)
    #: The settings of the build in progress; ``None`` outside a build.
    run: Run | None = None
    #: Where outputs and records are kept (a :class:`luisy.storage.Storage`); ``None``: the local
    #: file system.
    storage: Any = None
    caches: Caches = Caches()
    #: The task run in progress; ``None`` outside a task's ``run()``.
    task: TaskScope | None = None


_context: ContextVar[Context | None] = ContextVar("luisy_context", default=None)
_DEFAULT = Context()


def context() -> Context:
    """The context in force."""
    return _context.get() or _DEFAULT


@contextmanager
def scope(**changes: Any) -> Iterator[Context]:
    """Inside the block, the context with ``changes`` (fields of :class:`Context`)."""
    token = _context.set(replace(context(), **changes))
    try:
        yield context()
    finally:
        _context.reset(token)


@contextmanager
def caching(name: str, make: Callable[[], Any] = dict, fresh: bool = False) -> Iterator[Any]:
    """Inside the block, the cache ``name`` (a field of :class:`Caches`) is kept: the enclosing
    block's, if one keeps it (unless ``fresh``), else one that ``make()`` makes. Yields it."""
    caches = context().caches
    kept = getattr(caches, name)
    if kept is not None and not fresh:
        yield kept
        return
    with scope(caches=replace(caches, **{name: make()})) as inner:
        yield getattr(inner.caches, name)


def current() -> Run:
    """The run in progress, or the settings as they resolve now outside a run."""
    active = context().run
    return active if active is not None else Run.resolve()


@contextmanager
def running(run: Run) -> Iterator[Run]:
    """Make ``run`` current inside the block."""
    with scope(run=run):
        yield run


# luisy 1.x's settings besides the working directory, with 1.x's defaults. ``luisy.cli.build``
# reads dry_run and hash_update_mode; the others are kept for code that reads them back.
_LEGACY_DEFAULTS: dict[str, Any] = {
    "download": False, "upload": False, "dry_run": False, "no_ask": False, "requirements_path": None,
    "hash_update_mode": False, "spark": None, "azure_storage_key": None, "azure_account_name": None,
    "azure_container_name": None,
}


def legacy_settings() -> dict[str, Any]:
    """luisy 1.x's settings other than the working directory, as set in this context."""
    return {**_LEGACY_DEFAULTS, **context().legacy}


class Config:
    """luisy 1.x's configuration object, kept as a thin view over the resolution above.

    ``Config().get_param("working_dir")`` returns the resolved working directory as a string;
    ``Config().set_param("working_dir", path)`` is :func:`set_working_dir`. 1.x's other settings
    (``dry_run``, ``no_ask``, ``hash_update_mode``, ``requirements_path``...), and settings of a
    project's own, are held for the current context. ``download`` and ``upload`` turn on sharing
    outputs with the remote (:func:`resolve_remote`) for ``luisy.cli.build``.
    """

    def get_param(self, name: str) -> Any:
        """The value of setting ``name``."""
        if name == "working_dir":
            return str(get_working_dir())
        settings = legacy_settings()
        if name not in settings:
            raise UnknownSettingError(f"unknown luisy setting {name!r}; known: {sorted(['working_dir', *settings])}")
        return settings[name]

    def set_param(self, name: str, value: Any) -> None:
        """Set ``name`` in the current context."""
        if name == "working_dir":
            set_working_dir(value)
            return
        current = context()
        _context.set(replace(current, legacy={**current.legacy, name: value}))

    def update(self, params: dict[str, Any]) -> None:
        """:meth:`set_param` for each entry."""
        for name, value in params.items():
            self.set_param(name, value)

    @property
    def working_dir(self) -> str:
        """The resolved working directory."""
        return str(self.get_param("working_dir"))


def activate_download() -> None:
    """luisy 1.x's switch for fetching outputs from the remote in ``luisy.cli.build``; fails at once
    if no remote is set (:func:`resolve_remote`)."""
    resolve_remote(download=True)
    Config().set_param("download", True)


def change_working_dir(path: str, dir_current: str, dir_new: str) -> str:
    """``path`` (below ``dir_current``) moved below ``dir_new`` instead (``""``: the rest of the
    path, starting with ``/``). Both may be relative or absolute, as long as they are alike."""
    current = os.path.normpath(dir_current)
    if not (path == current or path.startswith(current.rstrip("/") + "/")):
        raise ValueError(f"{path} is not below {current}")
    rest = path[len(current.rstrip("/")):]
    return os.path.join(os.path.normpath(dir_new), rest.lstrip("/")) if dir_new else rest


def add_working_dir(path: str) -> str:
    """``path`` (relative to the working directory, with or without a leading ``/``) made absolute."""
    return os.path.join(str(get_working_dir()), path.lstrip("/"))


def remove_working_dir(path: str) -> str:
    """``path`` below the working directory, as ``/project/layer/file`` relative to it; ``path`` may
    be absolute, or relative as the working directory was given."""
    return change_working_dir(path, str(get_working_dir()) if os.path.isabs(path) else given_working_dir(), "")
