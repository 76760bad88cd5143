"""Where an output came from: what a task's fingerprint record says about it, and what files that
carry metadata (parquet, HDF5) hold inside.

The record of a task that ran holds, besides its fingerprint, a ``provenance`` entry: the task
with its parameters and class, what it requires and the outputs those wrote, and the run that
wrote it (run id, task-run id, host, user, time). Parquet and HDF5 outputs also carry the task's
family, parameters and fingerprint under the key :data:`KEY`, so a file copied away still says
where it came from; readers (pandas, h5py, PyTables) ignore it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config
from luisy.fingerprint.task import current
from luisy.formats import PROVENANCE_KEY
from luisy.paths import relative_posix

__all__ = ["KEY", "describe", "embedded", "outputs_of", "read_embedded"]

#: The parquet key-value metadata key and the HDF5 root attribute holding a file's provenance (JSON).
KEY = PROVENANCE_KEY


def outputs_of(task: luigi.Task) -> list[str]:
    """The task's file-system outputs, relative to the working directory where they are below it."""
    root = config.get_working_dir()
    found = []
    for output in flatten(task.output()):
        path = getattr(output, "path", None)
        if path:
            rel = relative_posix(path, root)
            found.append(Path(path).as_posix() if rel.startswith("..") else rel)
    return found


def describe(task: luigi.Task, written_by: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``provenance`` entry of a task's record: the task, what it requires, the run that wrote it."""
    cls = type(task)
    about: dict[str, Any] = {
        "task": str(task),
        "task_id": task.task_id,
        "family": task.get_task_family(),
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "requires": [{"task": str(req), "task_id": req.task_id, "outputs": outputs_of(req)}
                     for req in flatten(task.requires())],
    }
    if written_by is not None:
        about["written_by"] = dict(written_by)
    return about


def embedded(task: luigi.Task) -> dict[str, Any]:
    """What a parquet or HDF5 output of ``task`` carries inside: family, parameters, fingerprint."""
    cls = type(task)
    fingerprint = current(task)
    return {
        "task": str(task),
        "family": task.get_task_family(),
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "params": fingerprint.params,
        "fingerprint": fingerprint.digest,
        "run": config.current().id,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "luisy_version": getattr(sys.modules.get("luisy"), "__version__", ""),
    }


def read_embedded(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance a parquet or HDF5 file carries (see :data:`KEY`), or ``None``."""
    path = os.fspath(path)
    text: Any = None
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            text = (pq.read_schema(path).metadata or {}).get(KEY.encode())
        elif path.endswith((".h5", ".hdf5", ".hdf")):
            text = _hdf5_attribute(path)
    except (OSError, ValueError, ImportError):  # not such a file after all, or no reader installed
        return None
    if text is None:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _hdf5_attribute(path: str) -> Any:
    try:
        import h5py
    except ImportError:
        h5py = None
    if h5py is not None:
        with h5py.File(path, "r") as f:
            value = f.attrs.get(KEY)
        return value.decode() if isinstance(value, bytes) else value
    import tables

    with tables.open_file(path, "r") as f:
        return getattr(f.root._v_attrs, KEY, None)
