"""What decorators attach to a task class: how its output is stored and how its file is named.

Both are immutable; a decorator replaces the attribute on the class it decorates, so a subclass
never changes its parent's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luisy.paths import auto_file_name


@dataclass(frozen=True)
class OutputSpec:
    """The target class of a task's output and the keywords passed to it.

    ``folder`` outputs are a folder named by ``folder_name`` (or the task's
    ``get_folder_name()``), not a file with an extension.
    """

    target_cls: type[Any]
    options: dict[str, Any] = field(default_factory=dict)
    folder: bool = False
    folder_name: str | None = None

    @property
    def ext(self) -> str:
        fmt = getattr(self.target_cls, "file_format", None)
        return "" if self.folder or fmt is None else fmt.ext


@dataclass(frozen=True)
class NamingRule:
    """``auto_filename``'s options."""

    excl_params: tuple[str, ...] = ()
    excl_none: bool = False

    def render(self, task: Any, as_1x: bool = False) -> str:
        return auto_file_name(task, self.excl_params, self.excl_none, as_1x)
