"""luisy's task classes."""

from __future__ import annotations

from luisy.tasks.base import ConcatenationTask, ExternalTask, Task, WrapperTask
from luisy.tasks.directory import DirectoryTask

__all__ = ["Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "DirectoryTask"]
