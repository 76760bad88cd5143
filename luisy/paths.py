"""Where a task's output lives: project name, file-name rendering, and the escape guards.

Computing a path never touches the disk; directories are made when something is written.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

import luigi
from luigi.task import flatten

from luisy.config import get_working_dir
from luisy.digests import digest
from luisy.errors import UnsafePathError

#: Longest file name most file systems allow, in bytes.
NAME_MAX = 255


def get_string_repr(value: Any) -> str:
    """Render a parameter value for a file name (the renderer of ``auto_filename``).

    ``None`` renders as ``None``, lists and tuples (nested ones flattened) are joined
    with ``_``, mappings as ``key=value`` pairs in key order, enums by member name,
    everything else with ``str``. ``/`` and spaces become ``_``.
    """
    return _render(value).replace("/", "_").replace(" ", "_")


def _render(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        return "_".join(f"{k}={_render(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, (list, tuple)):
        return "_".join(_render(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.name
    return str(value)


def auto_file_name(task: Any, excl_params: Iterable[str] = (), excl_none: bool = False, as_1x: bool = False) -> str:
    """``<task family>_<name>=<value>...`` for the task's significant parameters, sorted by name.

    Values are rendered as luisy 1.x rendered them. Where that rendering could be shared by
    another value of the same parameter — a text with ``/``, a space, ``=`` or ``~``, the text
    ``"None"``, list items with ``_``, nested lists — a short hash of the value is appended
    (``x=a_b~1f0c2e9d``), so different tasks never share a file. ``as_1x``: without that hash,
    exactly as 1.x named the file (where an output made by 1.x is found).
    """
    excluded = set(excl_params)
    parts = [task.get_task_family()]
    serialized = None
    for name in sorted(significant_param_names(type(task))):
        value = getattr(task, name)
        if name in excluded or (excl_none and value is None):
            continue
        rendered = get_string_repr(_keys_only(value) if as_1x else value)
        if "\0" in rendered:
            raise UnsafePathError(f"{task!r}: parameter {name!r} contains a NUL byte")
        if not as_1x and not _renders_uniquely(value):
            serialized = serialized or task.to_str_params()
            rendered = f"{rendered}~{digest(str(serialized[name]), size=4)}"
        parts.append(f"{name}={rendered}")
    return "_".join(parts)


def _keys_only(value: Any) -> Any:
    """A mapping as luisy 1.x rendered it in file names: its keys (what iterating over it gives)."""
    return list(value) if isinstance(value, Mapping) else value


_SHARED_RENDERING = re.compile(r"[/ =~]")


def _renders_uniquely(value: Any, in_collection: bool = False) -> bool:
    """Whether no other value of the same type renders as ``value`` does (see :func:`auto_file_name`)."""
    if isinstance(value, str):
        return not (_SHARED_RENDERING.search(value) or value == "None"
                    or (in_collection and ("_" in value or not value or _reads_as_scalar(value))))
    if isinstance(value, Mapping):
        return not in_collection and all(
            _renders_uniquely(k, True) and _renders_uniquely(v, True) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return not in_collection and all(_renders_uniquely(v, True) for v in value)
    return True  # numbers, dates, enums, None: str() tells values of one type apart


def parse_file_name(task_cls: type[Any], name: str, excl_params: Iterable[str] = (),
                    value_pattern: str = ".*?") -> dict[str, Any] | None:
    """The parameters an :func:`auto_file_name` rendering ``name`` (without extension) stands for.

    ``None`` if ``name`` is not such a rendering, or a value does not match the regular expression
    ``value_pattern``. Lists come back as tuples of numbers or texts; parameters left out of the
    name are left out here.
    """
    excluded = set(excl_params)
    names = [n for n in sorted(significant_param_names(task_cls)) if n not in excluded]
    groups = "".join(f"(?:_{re.escape(n)}=(?P<p{i}>{value_pattern}))?" for i, n in enumerate(names))
    match = re.fullmatch(re.escape(task_cls.get_task_family()) + groups, name)
    if match is None:
        return None
    params = dict(task_cls.get_params())
    try:
        return {n: parse_value(params[n], match[f"p{i}"]) for i, n in enumerate(names) if match[f"p{i}"] is not None}
    except ValueError:
        return None


def parse_value(param: luigi.Parameter, text: str) -> Any:
    """The value of ``param`` that :func:`get_string_repr` rendered as ``text`` (lists: items guessed)."""
    if text == "None":
        return None
    if isinstance(param, (luigi.ListParameter, luigi.TupleParameter)):
        return tuple(_guess_scalar(part) for part in text.split("_")) if text else ()
    return param.parse(text)


def _guess_scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _reads_as_scalar(text: str) -> bool:
    """Whether a list item ``text`` renders like a number or a constant would (``"1"`` and ``1``)."""
    if text in ("True", "False"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def significant_param_names(task_cls: type[Any]) -> list[str]:
    """Names of the parameters that identify a task (luigi's ``significant=True``)."""
    return [name for name, param in task_cls.get_params() if param.significant]


def project_name_of(task_cls: type[Any]) -> str:
    """The ``project_name`` a class sets (``@luisy.project_name``), else the top-level package of its module.

    A task defined in ``__main__`` takes the script's file stem (``__main__`` in a notebook).
    """
    explicit = _explicit_project_name(task_cls)
    if explicit:
        return str(explicit)
    module = task_cls.__module__
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        return Path(main_file).stem if main_file else "__main__"
    return module.split(".")[0]


def _explicit_project_name(task_cls: type[Any]) -> Any:
    # Read the class dictionaries, not the attribute: luisy's tasks answer ``project_name`` through a
    # descriptor that calls this function.
    for klass in task_cls.__mro__:
        if "project_name" in vars(klass):
            value = vars(klass)["project_name"]
            return None if hasattr(value, "__get__") else value
    return None


def with_extension(name: str, ext: str) -> str:
    """Append ``.ext`` unless ``name`` already ends with it."""
    return name if not ext or name.endswith(f".{ext}") else f"{name}.{ext}"


def output_dir(task: Any, layer: str | None) -> Path:
    """``<working_dir>/<project>/<layer>/<sub_dir>``; without a layer, ``<working_dir>/<sub_dir>``.

    Raises :class:`~luisy.errors.UnsafePathError` when the sub directory would leave the working
    directory.
    """
    return Path(_joined(task, layer))


def output_path(task: Any, name: str, layer: str | None) -> Path:
    """``name`` inside :func:`output_dir`.

    Raises :class:`~luisy.errors.UnsafePathError` when the sub directory or the name
    would place the output outside the working directory.
    """
    _check_part(task, "the file name", name)
    return Path(_joined(task, layer, name))


def _joined(task: Any, layer: str | None, *name: str) -> str:
    # One Path made of a joined string: joining Paths parses each part again (a wide graph
    # makes thousands of output paths).
    sub_dir = os.fspath(task.get_sub_dir() or "")
    _check_part(task, "get_sub_dir()", sub_dir)
    parts = (project_name_of(type(task)), layer) if layer else ()
    return os.path.join(get_working_dir(), *parts, *((sub_dir,) if sub_dir else ()), *name)


def _check_part(task: Any, source: str, part: str) -> None:
    _check_relative(task, source, part)
    if len(part) * 4 <= NAME_MAX:  # UTF-8 has at most 4 bytes a character: no part can be too long
        return
    for component in PurePath(part).parts:
        size = len(os.fsencode(component))
        if size > NAME_MAX:
            raise UnsafePathError(f"{task!r}: the output name {component[:40]!r}... is {size} bytes long, file "
                                  f"systems allow {NAME_MAX}; shorten it (get_file_name(), auto_filename(excl_params))")


def _check_relative(task: Any, source: str, part: str) -> None:
    problem = None
    if "\0" in part:
        problem = "contains a NUL byte"
    elif os.path.isabs(part):
        problem = "is an absolute path"
    elif ".." in part.split("/"):
        problem = "contains '..'"
    if problem is None:
        return
    culprit = _parameter_in(task, part)
    what = f"parameter {culprit!r}" if culprit else source
    raise UnsafePathError(
        f"{task!r}: {what} would place the output outside the working directory: "
        f"{part!r} {problem}"
    )


def _parameter_in(task: Any, text: str) -> str | None:
    """The name of a parameter whose value appears in ``text``, to point the user at it."""
    for name, _ in type(task).get_params():
        value = getattr(task, name, None)
        if value is not None and str(value) and str(value) in text:
            return name
    return None


def linked_folder(folder: str | os.PathLike[str]) -> str | None:
    """The first symbolic link among ``folder`` and the folders it is in below the working
    directory (a layer folder, say); ``None`` if there is none. For a folder outside the working
    directory only the folder itself is looked at. The working directory itself may be a link."""
    path, root = os.path.abspath(folder), os.fspath(get_working_dir())
    below = path.startswith(root.rstrip(os.sep) + os.sep)
    parts = os.path.relpath(path, root).split(os.sep) if below else [path]
    current = root if below else ""
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            return current
    return None


def refuse_linked(folder: str | os.PathLike[str], owner: str | None = None) -> None:
    """Raise :class:`~luisy.errors.UnsafePathError` if ``folder`` is reached through a symbolic link
    (see :func:`linked_folder`): luisy writes and deletes only through real folders, so nothing
    lands in, or disappears from, the folder a link leads to. ``owner`` (a task) starts the error."""
    link = linked_folder(folder)
    if link is not None:
        raise UnsafePathError(
            f"{f'{owner}: ' if owner else ''}{link} is a symbolic link (to {os.path.realpath(link)}); luisy "
            f"writes and deletes in {os.fspath(folder)} only through real folders: replace the link by a "
            "folder (the working directory itself may be a link)")


def relative_posix(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` with ``/`` separators (starting with ``..`` if outside it):
    how records, provenance and ``show`` name an output within the working directory."""
    return Path(os.path.relpath(os.path.abspath(path), root)).as_posix()


def expected_at(task: luigi.Task) -> str:
    """Where a task's output is looked for (several paths: comma-separated), for "missing input" lines."""
    paths = [os.fspath(o.path) for o in flatten(task.output()) if getattr(o, "path", None)]
    return ", ".join(paths) if paths else "no file"
