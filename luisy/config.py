"""Resolve luisy's settings.

Nothing here caches a resolved value: every call looks at the sources again, in
this order (first found wins):

1. the CLI's ``--working-dir`` / :func:`set_working_dir` (the same thing),
2. the environment variable ``LUISY_WORKING_DIR``, then ``WORKING_DIR`` (luisy 1.x),
3. ``[luisy] working_dir`` in the luigi configuration,
4. ``./data``, relative to the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import luigi.configuration

DEFAULT_WORKING_DIR = "data"
ENV_VARS = ("LUISY_WORKING_DIR", "WORKING_DIR")

# The one piece of state luisy owns: what the user set explicitly for this process.
# It is an input to resolution, never a cached result.
_explicit_working_dir: str | None = None


def set_working_dir(path: str | os.PathLike[str] | None) -> None:
    """Set the working directory for this process; ``None`` forgets the setting."""
    global _explicit_working_dir
    _explicit_working_dir = None if path is None else os.fspath(path)


@contextmanager
def working_dir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Use ``path`` as the working directory inside a ``with`` block."""
    previous = _explicit_working_dir
    set_working_dir(path)
    try:
        yield get_working_dir()
    finally:
        set_working_dir(previous)


def get_working_dir() -> Path:
    """The resolved working directory as an absolute path (it need not exist)."""
    candidates = [_explicit_working_dir, *(os.environ.get(name) for name in ENV_VARS)]
    candidates.append(luigi.configuration.get_config().get("luisy", "working_dir", None))
    chosen = next((c for c in candidates if c), DEFAULT_WORKING_DIR)
    return Path(chosen).expanduser().absolute()


def resolve_processes(task_value: int | None = None) -> int:
    """Worker processes for a directory task: the task's own value, else ``[luisy] processes``, else 1.

    ``luisy run --processes N`` and ``luisy.build(processes=N)`` set ``[luisy] processes`` for
    their run (see :func:`processes`), so a value the task author wrote down still wins.
    """
    if task_value is not None:
        return max(1, int(task_value))
    return max(1, luigi.configuration.get_config().getint("luisy", "processes", 1))


@contextmanager
def processes(count: int | None) -> Iterator[None]:
    """Set ``[luisy] processes`` in luigi's configuration inside a ``with`` block (``None``: unchanged).

    luigi's configuration is the one place forked luigi workers inherit settings from.
    """
    with luigi_setting("luisy", "processes", None if count is None else str(count)):
        yield


@contextmanager
def luigi_setting(section: str, option: str, value: str | None) -> Iterator[None]:
    """Set one option of luigi's configuration inside a ``with`` block, unless the user set it already.

    ``[luisy] processes`` is luisy's own and is always set (``None``: leave unchanged).
    """
    parser = luigi.configuration.get_config()
    previous = parser.get(section, option, None)
    if value is None or (previous is not None and section != "luisy"):
        yield
        return
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, value)
    try:
        yield
    finally:
        if previous is None:
            parser.remove_option(section, option)
        else:
            parser.set(section, option, previous)


def retry_failed() -> bool:
    """Whether directory tasks retry their failed items (``[luisy] retry_failed``, default yes)."""
    return luigi.configuration.get_config().getboolean("luisy", "retry_failed", True)


def keep_replaced_seconds() -> float:
    """How long a directory output keeps the files of replaced items for readers of the previous
    manifest (``[luisy] keep_replaced_seconds``, default one hour)."""
    return luigi.configuration.get_config().getfloat("luisy", "keep_replaced_seconds", 3600.0)


def current_run() -> str:
    """Identity of the ``luisy.build`` call in progress (``[luisy] run``), ``""`` outside one."""
    return luigi.configuration.get_config().get("luisy", "run", "") or ""


def central_scheduler_url() -> str | None:
    """luigi's configured central scheduler (``[core] default-scheduler-url``), if any."""
    parser = luigi.configuration.get_config()
    return parser.get("core", "default-scheduler-url", None) or parser.get("core", "scheduler_url", None) or None


class Config:
    """luisy 1.x's configuration object, kept as a thin view over the resolution above.

    ``Config().get_param("working_dir")`` returns the resolved working directory as a
    string; ``Config().set_param("working_dir", path)`` is :func:`set_working_dir`.
    """

    _getters = {"working_dir": lambda: str(get_working_dir())}
    _setters = {"working_dir": set_working_dir}

    def get_param(self, name: str) -> Any:
        """The resolved value of setting ``name``."""
        try:
            return self._getters[name]()
        except KeyError:
            raise KeyError(f"unknown luisy setting {name!r}; known: {sorted(self._getters)}") from None

    def set_param(self, name: str, value: Any) -> None:
        """Set ``name`` for this process."""
        try:
            self._setters[name](value)
        except KeyError:
            raise KeyError(f"unknown luisy setting {name!r}; known: {sorted(self._setters)}") from None

    @property
    def working_dir(self) -> str:
        """The resolved working directory."""
        return self.get_param("working_dir")
