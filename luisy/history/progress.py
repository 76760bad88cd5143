"""What a running directory task has done so far: one small file per task,
``<working_dir>/.luisy-progress/<task key>.json``, replaced by the task's run about once a second
(as often as it reports its progress to luigi). ``luisy serve`` shows it beside the run journal's
``running`` state; a file whose task no longer runs is stale and ignored."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from luisy import storage
from luisy.config import get_working_dir
from luisy.history.journal import task_key

__all__ = ["PROGRESS_DIR", "note", "read"]

PROGRESS_DIR = ".luisy-progress"
#: A progress file larger than this is none luisy wrote (600 samples and the counts take about 20 KB).
PROGRESS_MAX_BYTES = 1 << 18


def _path(root: str | os.PathLike[str], task_id: str) -> str:
    return os.fspath(Path(root) / PROGRESS_DIR / f"{task_key(task_id)}.json")


def note(task: Any, snapshot: dict[str, Any]) -> None:
    """Record where ``task``'s run is: a :meth:`luisy.directory.runner.Progress.snapshot`."""
    data = {"task_id": task.task_id, "task": str(task), **snapshot, "pid": os.getpid(), "host": socket.gethostname(),
            "time": time.time()}
    try:
        storage.active().put_bytes(_path(get_working_dir(), task.task_id), json.dumps(data).encode())
    except OSError:  # progress is for show: a full disk or a read-only folder must not fail the items
        pass


def read(root: str | os.PathLike[str], task_id: str) -> dict[str, Any] | None:
    """The last progress ``task_id``'s run recorded, or ``None``."""
    try:
        found = json.loads(storage.for_path(root).read_bytes(_path(root, task_id), PROGRESS_MAX_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("task_id") != task_id:
        return None
    counts = [found.get(key) for key in ("done", "total", "failed")]
    if not all(type(n) is int for n in counts) or type(found.get("time")) not in (int, float):
        return None  # not of the shape luisy writes
    return found
