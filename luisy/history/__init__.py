"""What happened, as data: the run journal (``journal``), task runs read from it (``runs``:
``luisy history`` and ``status``), where a file says it came from (``provenance``), and
``luisy show PATH`` from records, manifests and the journal (``show``)."""

from __future__ import annotations

from luisy.history.runs import TaskRun, history, last_runs, runs_of

__all__ = ["TaskRun", "history", "last_runs", "runs_of"]
