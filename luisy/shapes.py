"""The shapes of the JSON luisy writes and reads back: a value read from a file is used only if it
has the shape luisy writes, so that a file edited by hand or damaged is one line naming the field,
or is passed over, never a traceback further on.

A shape is a type or a tuple of types (the value is of one of them exactly: ``true`` is no
number), a dict (a JSON object whose fields, where present, have those shapes; others are
ignored: a later luisy may add some), ``[shape]`` (a list of values of that shape), a
:class:`MapOf` (an object with any keys) or a :class:`Check` (a value a test accepts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

__all__ = ["MapOf", "Check", "TIME", "LAST_TIME", "is_time", "problem", "checker", "kind"]


@dataclass(frozen=True)
class MapOf:
    """The shape of a JSON object with any keys, each value of the shape ``values``."""

    values: Any


@dataclass(frozen=True)
class Check:
    """The shape of the values ``test`` accepts; ``kind`` says what they are, in a message."""

    kind: str
    test: Callable[[Any], bool]


#: The last time luisy reads (epoch seconds): the end of the year 9999, the last a date can show.
LAST_TIME = 253_402_300_799.0


def is_time(value: Any) -> bool:
    """Whether ``value`` is a time as luisy writes one: epoch seconds (a number, not a bool) from
    1970 to the end of the year 9999 (not NaN, not infinite)."""
    return type(value) in (int, float) and 0 <= value <= LAST_TIME


TIME = Check("a time (epoch seconds from 1970 to 9999)", is_time)


def problem(value: Any, shape: Any) -> str | None:
    """Where ``value`` does not have ``shape``, in words (``field a.b is a string, not an
    object``); ``None`` if it has."""
    found = _mismatch(value, shape, "")
    if found is None:
        return None
    where, wrong, expected = found
    return f"{'field ' + where + ' ' if where else ''}is {kind(wrong)}, not {_kind_of_shape(expected)}"


def checker(shape: Any) -> Callable[[Any], bool]:
    """A test of whether a value has ``shape``: for many values, quicker than :func:`problem`."""
    if isinstance(shape, Check):
        return shape.test
    if isinstance(shape, (type, tuple)):
        types = shape if isinstance(shape, tuple) else (shape,)
        return lambda value: type(value) in types
    return lambda value: _mismatch(value, shape, "") is None


def _mismatch(value: Any, shape: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first place in ``value`` (a dotted path), its value and its shape, where it does not
    have ``shape``; ``None`` if it has."""
    if isinstance(shape, Check):
        return None if shape.test(value) else (where, value, shape)
    if isinstance(shape, (dict, list, MapOf)):
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


def kind(value: Any) -> str:
    """What ``value`` is, in a message."""
    of = type(value)
    return _KINDS.get(of) or f"a {of.__module__}.{of.__qualname__}"


def _kind_of_shape(shape: Any) -> str:
    if isinstance(shape, Check):
        return shape.kind
    if isinstance(shape, (dict, MapOf)):
        return "an object"
    if isinstance(shape, list):
        return "a list"
    return _KINDS[shape[0] if isinstance(shape, tuple) else shape]
