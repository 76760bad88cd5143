"""luisy's task classes."""

from __future__ import annotations

from luisy.tasks.base import ConcatenationTask, ExternalTask, Task, WrapperTask

__all__ = ["Task", "ExternalTask", "WrapperTask", "ConcatenationTask"]
