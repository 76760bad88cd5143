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
from luisy.errors import ProvenanceError
from luisy.fingerprint.task import current
from luisy.formats import PROVENANCE_KEY, require
from luisy.paths import relative_posix
from luisy.shapes import MapOf, kind, problem

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
    """The provenance a parquet or HDF5 file carries (see :data:`KEY`), or ``None`` if it carries none.

    Nothing is unpickled: HDF5 files are read with h5py, never PyTables (whose attribute access
    unpickles what a crafted file holds). Raises :class:`~luisy.errors.MissingExtraError` for an
    HDF5 file if h5py is not installed, and :class:`~luisy.errors.ProvenanceError` if the file
    carries a value that is not the JSON object luisy writes.
    """
    path = os.fspath(path)
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            text = (pq.read_schema(path).metadata or {}).get(KEY.encode())
        except (OSError, ValueError, pa.ArrowException):  # not a parquet file after all, or one pyarrow cannot read
            return None
    elif path.endswith(_HDF5_SUFFIXES):
        text = _hdf5_attribute(path)
    else:
        return None
    if text is None:
        return None
    found = _parse_json(text, f"{path}: its {KEY}")
    wrong = problem(found, _EMBEDDED)
    if wrong is not None:
        raise ProvenanceError(f"{path}: its {KEY} {wrong}")
    return found


_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _hdf5_attribute(path: str) -> str | bytes | None:
    h5py = require("h5py", "h5", "reading the provenance inside an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError:  # not an HDF5 file after all
        return None
    with f:
        try:
            value = f.attrs.get(KEY)
        except (OSError, TypeError, ValueError) as error:  # a type h5py cannot read
            raise ProvenanceError(f"{path}: its {KEY} attribute cannot be read ({error})") from None
    if value is None or isinstance(value, (str, bytes)):
        return value
    raise ProvenanceError(f"{path}: its {KEY} attribute is {kind(value)}, not a string")


# The most JSON luisy parses from a file's provenance: what it writes is a few kB, and a huge
# document would take many times its size in memory.
_MAX_JSON = 16 * 1024 * 1024


def _parse_json(text: str | bytes, what: str) -> Any:
    """``text`` parsed as JSON; :class:`~luisy.errors.ProvenanceError` naming ``what`` if it is not
    JSON, is nested too deeply for the parser, or is longer than luisy reads."""
    if len(text) > _MAX_JSON:
        raise ProvenanceError(f"{what} is longer than the {_MAX_JSON >> 20} MiB luisy reads")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # a deeply nested document exhausts the parser
        raise ProvenanceError(f"{what} is not JSON ({type(error).__name__})") from None


# The shape of what embedded() writes (see luisy.shapes).
_EMBEDDED: dict[str, Any] = {
    "task": str, "family": str, "class": str, "params": MapOf(str), "fingerprint": str, "run": str,
    "written": str, "luisy_version": str,
}

