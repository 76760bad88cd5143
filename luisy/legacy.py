"""luisy 1.x's ``luisy.cli.build``: 1.x's keywords, and an object with 1.x's ``tasks_set``."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import luigi

from luisy import config, luigi_adapter
from luisy.accept import update_fingerprints
from luisy.execution import RunSummary
from luisy.execution import run as run_tasks
from luisy.graph import upstream_first
from luisy.plan import report
from luisy.sharing import upload as upload_outputs

__all__ = ["Coordinator", "build"]

# luisy 1.x's keywords of luisy.cli.build besides task, workers and local_scheduler.
_KEYWORDS = {"hash_update_mode", "dry_run", "no_ask", "requirements_path", "download", "upload",
             "azure_storage_key", "azure_account_name", "azure_container_name", "working_dir", "spark"}


@dataclass
class Coordinator:
    """What ``luisy.cli.build`` returns, as in 1.x: the root task, its graph and luigi's task sets."""

    root_task: luigi.Task
    #: luigi's tasks by status (``"completed"``, ``"already_done"``, ``"failed"``...), as 1.x gave them.
    tasks_set: dict[str, set[luigi.Task]]
    #: Every task in the root task's graph.
    tasks: set[luigi.Task] = field(default_factory=set)
    #: luisy 2's summary of the run (``None`` for a dry run or hash update mode).
    summary: RunSummary | None = None


def build(task: luigi.Task | None = None, workers: int = 1, local_scheduler: bool = True,
          **options: Any) -> Coordinator:
    """luisy 1.x's ``luisy.cli.build``: run ``task`` and everything it needs.

    ``hash_update_mode=True`` and ``dry_run=True`` do what ``luisy run --hash-update-mode`` and
    ``--dry-run`` do (unset, they are taken from ``Config()``, as in 1.x). ``no_ask`` and
    ``requirements_path`` are accepted and change nothing: luisy 2 never asks, and fingerprints a
    task's code without a requirements file. ``download``/``upload`` share outputs with the remote
    (see :mod:`luisy.sharing`); 1.x's ``azure_*`` keywords name its Azure remote.
    Unlike 1.x, ``local_scheduler=False`` uses luigi's central scheduler.
    """
    if task is None:
        raise TypeError("luisy.cli.build() needs the task to run: build(task=MyTask())")
    unknown = sorted(set(options) - _KEYWORDS)
    if unknown:
        raise TypeError(f"luisy.cli.build() got unknown keyword(s) {', '.join(unknown)}; luisy 1.x's are "
                        f"{', '.join(sorted(_KEYWORDS))}")
    settings = {**config.legacy_settings(), **options}
    download, upload = bool(settings.get("download")), bool(settings.get("upload"))
    with config.working_dir(options["working_dir"]) if options.get("working_dir") else nullcontext(), \
            config.scope(legacy=settings):
        if settings.get("hash_update_mode"):
            update_fingerprints(task)
            if upload:
                upload_outputs(task)
            return Coordinator(task, {}, set(upstream_first(task)))
        if settings.get("dry_run"):
            print("\n".join(report(task)))
            return Coordinator(task, {}, set(upstream_first(task)))
        summary = run_tasks([task], workers=workers, local_scheduler=local_scheduler, download=download,
                            upload=upload)
        return Coordinator(task, luigi_adapter.task_sets(summary.result), set(upstream_first(task)), summary)
