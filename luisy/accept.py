"""Hash update mode: accept the outputs that exist as current, running nothing."""

from __future__ import annotations

import time

import luigi
from luigi.task import flatten

from luisy.directory.target import DirectoryTarget
from luisy.fingerprint import records
from luisy.fingerprint.task import accept, is_external
from luisy.graph import upstream_first
from luisy.history.provenance import describe

__all__ = ["update_fingerprints"]


def update_fingerprints(root: luigi.Task) -> list[luigi.Task]:
    """Hash update mode: record current fingerprints for every existing output, running nothing.

    For refactors that do not change results. Directory outputs take the current code and
    parameters; their input items are still compared item by item (data changes are not a refactor).
    The records keep the run that wrote each output, where it was known. Returns the tasks whose
    records were updated, upstream first.
    """
    updated: list[luigi.Task] = []
    for task in upstream_first(root):
        outputs = flatten(task.output())
        if is_external(task) or not hasattr(task, "_luisy_output") or not outputs:
            continue
        if not all(o.exists() for o in outputs):
            continue
        for output in outputs:
            if isinstance(output, DirectoryTarget):
                output.restamp(task)
        before = records.lookup(task)
        written_by = (before.get("provenance") or {}).get("written_by") if isinstance(before, dict) else None
        accept(task, {**describe(task, written_by), "accepted": time.time()})
        updated.append(task)
    return updated
