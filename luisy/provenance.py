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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import luigi
from luigi.task import flatten

from luisy import config
from luisy.errors import ProvenanceError
from luisy.fingerprint.task import current
from luisy.formats import PROVENANCE_KEY, require
from luisy.paths import relative_posix

__all__ = ["KEY", "check_record", "describe", "embedded", "outputs_of", "read_embedded"]

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
    _check_shape(found, _EMBEDDED, f"{path}: its {KEY}")
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
    raise ProvenanceError(f"{path}: its {KEY} attribute is {_kind(value)}, not a string")


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


@dataclass(frozen=True)
class _MapOf:
    """The shape of a JSON object with any keys, each value of the shape ``values``."""

    values: Any


_NUMBER = (int, float)
_STRINGS = _MapOf(str)

# The shape of what embedded() writes. A shape is a type or a tuple of types (the value is
# of one of them exactly), a dict (a JSON object whose fields, where present, have those shapes;
# others are ignored: a later luisy may add some), [shape] (a list of values of that shape) or a _MapOf.
_EMBEDDED: dict[str, Any] = {
    "task": str, "family": str, "class": str, "params": _STRINGS, "fingerprint": str, "run": str,
    "written": str, "luisy_version": str,
}

# The shape of a fingerprint record, as far as `luisy show` reads it.
_RECORD: dict[str, Any] = {
    "fingerprint": str, "code": _STRINGS, "versions": _STRINGS, "params": _STRINGS, "upstream": _STRINGS,
    "provenance": {
        "task": str, "task_id": str, "family": str, "class": str,
        "requires": [{"task": str, "task_id": str, "outputs": [str]}],
        "written_by": {"run": str, "id": str, "host": str, "user": str, "started": _NUMBER},
    },
}


def check_record(record: dict[str, Any], what: str) -> None:
    """Raise :class:`~luisy.errors.ProvenanceError` naming ``what`` (the record's file) if a field
    of the fingerprint record ``record`` that ``luisy show`` reads is not of the type luisy writes."""
    _check_shape(record, _RECORD, what)


def _check_shape(value: Any, shape: Any, what: str) -> None:
    """Raise :class:`~luisy.errors.ProvenanceError` naming ``what`` and the first field of
    ``value`` that does not have ``shape``."""
    found = _mismatch(value, shape, "")
    if found is not None:
        where, wrong, expected = found
        raise ProvenanceError(f"{what}{' field ' + where if where else ''} is {_kind(wrong)}, "
                              f"not {_kind_of_shape(expected)}")


def _mismatch(value: Any, shape: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first place in ``value`` (a dotted path), its value and its shape, where it does not
    have ``shape``; ``None`` if it has."""
    if isinstance(shape, (dict, list, _MapOf)):
        if type(value) is not (list if isinstance(shape, list) else dict):
            return where, value, shape
        if isinstance(shape, dict):
            inner = ((value[name], part, f"{where}.{name}" if where else name)
                     for name, part in shape.items() if name in value)
        elif isinstance(shape, list):
            inner = ((item, shape[0], f"{where}[{i}]") for i, item in enumerate(value))
        else:
            inner = ((item, shape.values, f"{where}[{key!r}]") for key, item in cast(dict, value).items())
        return next(filter(None, (_mismatch(*part) for part in inner)), None)
    return None if type(value) in (shape if isinstance(shape, tuple) else (shape,)) else (where, value, shape)


_KINDS = {dict: "an object", list: "a list", str: "a string", bytes: "bytes", int: "a number", float: "a number",
          bool: "true or false", type(None): "null"}


def _kind(value: Any) -> str:
    """What ``value`` is, in a message."""
    kind = type(value)
    return _KINDS.get(kind) or f"a {kind.__module__}.{kind.__qualname__}"


def _kind_of_shape(shape: Any) -> str:
    if isinstance(shape, (dict, _MapOf)):
        return "an object"
    if isinstance(shape, list):
        return "a list"
    return _KINDS[shape[0] if isinstance(shape, tuple) else shape]
