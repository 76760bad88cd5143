"""luisy's task classes."""

from __future__ import annotations

from typing import Any

from luisy.tasks.base import ConcatenationTask, ExternalTask, Task, WrapperTask
from luisy.tasks.directory import DirectoryTask
from luisy.tasks.reduce import ReduceTask

__all__ = ["Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "DirectoryTask", "ReduceTask"]


def __getattr__(name: str) -> Any:
    # luisy 1.x's cloud and Spark names fail with one line that says what to do instead.
    from luisy.unavailable import missing

    raise missing(__name__, name)
