"""luisy 1.x's ``luisy.helpers`` module path."""

from __future__ import annotations

from typing import Any

from luisy.paths import get_string_repr

__all__ = ["get_string_repr", "get_related_instances"]


def get_related_instances(task_cls: type[Any], regex_placeholder: str | None = None) -> list[Any]:
    """The instances of the luisy task class ``task_cls`` whose outputs exist on disk.

    Same as ``task_cls.get_related_instances(regex_placeholder)``: the parameter values are read
    back from the output paths (``auto_filename`` names, or a ``get_file_name()`` /
    ``get_sub_dir()`` that puts values into the path); parameters not in the path take their
    defaults. ``regex_placeholder`` is a regular expression every value must match.
    """
    return task_cls.get_related_instances(regex_placeholder)
