"""What ``luisy COMMAND TASK --help`` says about TASK: its parameters with type, default and help."""

from __future__ import annotations

import enum
import inspect

import luigi
from luigi.parameter import ParameterVisibility

from luisy import luigi_adapter

__all__ = ["parameter_rows", "summary"]


def summary(task_cls: type[luigi.Task]) -> str:
    """The first line of the task's docstring, if it has one of its own (not luisy's or luigi's)."""
    doc = task_cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc).splitlines()[0] if doc and doc.strip() else ""


def parameter_rows(task_cls: type[luigi.Task]) -> list[tuple[str, str]]:
    """``(--name TYPE, help [default: value])`` for each parameter of ``task_cls`` a user can set."""
    family = task_cls.get_task_family()
    rows = []
    for name, param in task_cls.get_params():
        if param.visibility == ParameterVisibility.PRIVATE:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _kind(param)
        note = (f"[default: {_shown(param, param.task_value(family, name))}]" if param.has_task_value(family, name)
                else "[required]")
        rows.append((f"{flag} {kind}" if kind else flag, f"{param.description}  {note}" if param.description else note))
    return rows


def _kind(param: luigi.Parameter) -> str:
    """The type of value a parameter takes, as a metavar: ``INT``, ``DATE``, ``a|b``; none for a flag."""
    if isinstance(param, luigi.BoolParameter):
        return "" if param.parsing == luigi.BoolParameter.IMPLICIT_PARSING else "[true|false]"
    choices = luigi_adapter.choices(param)
    if choices:
        return "|".join(choices)
    name = type(param).__name__.removesuffix("Parameter").removeprefix("Optional")
    return (name or "Text").upper()


def _shown(param: luigi.Parameter, value: object) -> str:
    """A default as it would be written on the command line."""
    if value is None:
        return "None"
    if isinstance(value, enum.Enum):
        return value.name
    try:
        return str(param.serialize(value))
    except Exception:  # a parameter class of one's own that cannot serialize its default
        return repr(value)
