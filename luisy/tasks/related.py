"""The instances of a task class whose outputs exist, found from their paths (``get_related_instances``).

A stand-in instance, whose parameters are unique placeholders, shows where each parameter's value
appears in the output path: in an ``auto_filename`` name, in a custom ``get_file_name()`` or in
``get_sub_dir()``. Files (or folders) that fit that pattern give the values back; a candidate is
kept only if the instance built from them names exactly the path it was found at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi

from luisy import storage
from luisy.atomic import TMP_MARKER
from luisy.errors import BrokenFileError, InstanceLookupError
from luisy.paths import parse_file_name, parse_value, with_extension

__all__ = ["related_instances"]

# A private-use character: no real path contains it, and get_string_repr leaves it alone.
_MARK = "\ue000"
_SLOT = re.compile(f"{_MARK}(\\d+){_MARK}")
# A value stays inside one path component unless the caller's pattern says otherwise.
_DEFAULT_VALUE = "[^/]*?"


def related_instances(task_cls: type[Any], regex_placeholder: str | None = None) -> list[Any]:
    """Instances of ``task_cls`` whose outputs exist, sorted by output path.

    ``regex_placeholder`` is a regular expression every parameter value in the path must match
    (default: any text within one path component). Parameters that do not appear in the path take
    their defaults. Raises :class:`~luisy.errors.InstanceLookupError` if the output path cannot be
    computed from placeholder values, or a parameter without default does not appear in it.
    """
    stand_in = _stand_in(task_cls, {name: f"{_MARK}{i}{_MARK}" for i, (name, _) in enumerate(task_cls.get_params())})
    try:
        pattern_path = Path(stand_in.get_output_path())
        auto_name = with_extension(task_cls._luisy_naming.render(stand_in), task_cls._luisy_output.ext)
    except Exception as error:
        raise InstanceLookupError(
            f"{task_cls.__name__}.get_related_instances(): its output path cannot be computed with placeholder "
            f"parameter values ({type(error).__name__}: {error}); get_file_name() and get_sub_dir() must accept "
            "any text as a parameter value"
        ) from error
    _check_required_in_path(task_cls, os.fspath(pattern_path))
    value = _DEFAULT_VALUE if regex_placeholder is None else f"(?:{regex_placeholder})"
    if pattern_path.name == auto_name and _MARK not in os.fspath(pattern_path.parent):
        found = _by_auto_name(task_cls, pattern_path, value)
    else:
        found = _by_pattern(task_cls, pattern_path, value)
    return [instance for path, instance in sorted(found, key=lambda pair: pair[0])
            if instance is not None and _names(instance, path)]


def _stand_in(task_cls: type[Any], values: dict[str, str]) -> Any:
    # luigi's constructor would normalise the placeholders (a DateParameter rejects them, a
    # BoolParameter turns them into None) and cache the instance, so the stand-in skips it.
    task = object.__new__(task_cls)
    task.param_kwargs = dict(values)
    for name, value in values.items():
        setattr(task, name, value)
    return task


def _check_required_in_path(task_cls: type[Any], path: str) -> None:
    family = task_cls.get_task_family()
    absent = [name for i, (name, param) in enumerate(task_cls.get_params())
              if f"{_MARK}{i}{_MARK}" not in path and not param.has_task_value(family, name)]
    if absent:
        raise InstanceLookupError(
            f"{task_cls.__name__}.get_related_instances(): the parameters {', '.join(absent)} have no default and "
            "do not appear in the output path, so existing outputs cannot tell their values"
        )


def _by_auto_name(task_cls: type[Any], pattern_path: Path, value: str) -> Iterator[tuple[Path, Any]]:
    """Candidates in the one folder of an ``auto_filename`` output, parsed by name."""
    folder, ext = pattern_path.parent, task_cls._luisy_output.ext
    for path in _entries(folder, 1):
        stem = path.name[: -len(ext) - 1] if ext and path.name.endswith(f".{ext}") else path.name
        if ext and stem == path.name:
            continue
        kwargs = parse_file_name(task_cls, stem, task_cls._luisy_naming.excl_params, value)
        if kwargs is not None:
            yield path, _built(task_cls, kwargs)


def _by_pattern(task_cls: type[Any], pattern_path: Path, value: str) -> Iterator[tuple[Path, Any]]:
    """Candidates below the deepest folder free of placeholders, matched against the whole pattern."""
    parts = pattern_path.parts
    fixed = next(i for i, part in enumerate(parts) if _MARK in part or i == len(parts) - 1)
    base, rest = Path(*parts[:fixed]), parts[fixed:]
    regex = _path_regex(rest, value)
    params = task_cls.get_params()  # slot i stands for params[i]
    for path in _entries(base, len(rest)):
        match = regex.fullmatch(path.relative_to(base).as_posix())
        if match is None:
            continue
        try:
            kwargs = {params[i][0]: parse_value(params[i][1], text)
                      for i, text in ((int(key[1:]), text) for key, text in match.groupdict().items())}
        except ValueError:
            continue
        yield path, _built(task_cls, kwargs)


def _path_regex(parts: tuple[str, ...], value: str) -> re.Pattern[str]:
    """The path components as a regular expression: literal text, a named group at each parameter's
    first slot and a back reference at any later one (a value used twice must be the same)."""
    pieces: list[str] = []
    seen: set[str] = set()
    for part in parts:
        last = 0
        for slot in _SLOT.finditer(part):
            pieces.append(re.escape(part[last:slot.start()]))
            key = f"p{slot[1]}"
            pieces.append(f"(?P={key})" if key in seen else f"(?P<{key}>{value})")
            seen.add(key)
            last = slot.end()
        pieces.append(re.escape(part[last:]) + "/")
    return re.compile("".join(pieces)[:-1])


def _entries(base: Path, depth: int) -> Iterator[Path]:
    """What is ``depth`` levels below ``base`` in the storage in force, leaving out luisy's
    temporary files (whether it is an output is for the instance built from its path to say)."""
    where = storage.active()

    def below(folder: str, level: int) -> Iterator[Path]:
        for name, is_folder in where.listdir(folder):
            if level == depth and TMP_MARKER not in name:
                yield Path(folder, name)
            elif level < depth and is_folder:
                yield from below(os.path.join(folder, name), level + 1)

    try:
        yield from below(os.fspath(base), 1)
    except BrokenFileError:  # a file where a folder of the pattern goes: no output is in it
        return


def _built(task_cls: type[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return task_cls(**kwargs)
    except Exception:  # a file that merely looks like ours (a value the parameter rejects)
        return None


def _names(instance: luigi.Task, path: Path) -> bool:
    """Whether ``instance``'s output is exactly ``path`` and exists."""
    output = instance.output()
    return os.fspath(getattr(output, "path", "")) == os.fspath(path) and output.exists()
