"""Executors run work per item and yield one :class:`Outcome` per item index: serially or in a
pool of forked processes on this machine (``local``), or on a Dask cluster (``dask``, which
imports ``distributed`` only when used)."""

from __future__ import annotations

from luisy.executors.local import (
    Executor,
    ItemStatus,
    Outcome,
    ProcessExecutor,
    SerialExecutor,
    Work,
    executor_for,
)

__all__ = ["Executor", "ItemStatus", "Outcome", "ProcessExecutor", "SerialExecutor", "Work", "executor_for"]
