"""``luisy watch``: a :class:`~luisy.watch.watcher.Watcher` that scans input folders, waits until
new items have settled (``settling``) and runs the task, woken early by file events (``wakeup``)."""

from __future__ import annotations

from luisy.watch.watcher import Clock, Watcher, watch

__all__ = ["Clock", "Watcher", "watch"]
