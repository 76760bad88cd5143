"""The fingerprint of a task instance: its code, significant parameters and what it reads (see docs/reruns.rst).

* A task that runs: its class's code fingerprint, its significant parameter values, and the
  upstream fingerprints of everything it requires — statically, plus the dynamic requirements
  its last successful run yielded (recorded with it).
* An external task (luigi's or luisy's ``ExternalTask``): its files, by size and modification
  time, or by content with ``[luisy] input_fingerprint = content`` or the class's
  ``input_fingerprint = "content"`` (:mod:`luisy.fingerprint.content`).
* A directory output, seen from downstream: its manifest's content — once it is up to date
  itself; a directory task that will rerun makes everything downstream rerun too (until it has
  run, it contributes "stale" and its own fingerprint).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.task import flatten
from luigi.task_register import Register

from luisy import config, storage
from luisy.digests import digest
from luisy.directory.target import DirectoryTarget
from luisy.fingerprint import records
from luisy.fingerprint.code import CodeFingerprint, code_fingerprint
from luisy.fingerprint.content import digests as content_digests
from luisy.fingerprint.content import mode_of
from luisy.parameters import significant_params
from luisy.reasons import Kind, Reason, changes, differing

__all__ = ["TaskFingerprint", "current", "as_upstream", "record_success", "accept", "is_current",
           "is_external"]

MISSING = "missing"
STALE = "stale"


@dataclass(frozen=True)
class TaskFingerprint:
    """What a task's result depends on; ``digest`` is what gets compared."""

    digest: str
    code: CodeFingerprint
    params: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)  # task_id → fingerprint

    def record(self, dynamic: Sequence[luigi.Task] = ()) -> dict[str, Any]:
        """The ``.luisy.hash`` entry for this fingerprint."""
        return {
            "fingerprint": self.digest,
            "code": self.code.definitions,
            "versions": self.code.versions,
            "params": self.params,
            "upstream": self.upstream,
            "dynamic": [[t.get_task_family(), t.to_str_params()] for t in dynamic],
        }


def is_external(task: luigi.Task) -> bool:
    """luigi's convention: an external task has no ``run``."""
    return getattr(type(task), "run", None) is None


# Within a build, what each task contributes downstream is computed once (luigi asks complete()
# of every task, each of which follows its requirements). A plain task's contribution is its own
# fingerprint, which its run does not change; a directory task's (its manifest) and a task with
# dynamic requirements' (its record) do change when they run, so their success empties the memo.
@contextmanager
def remembered() -> Iterator[None]:
    """Within the block, upstream fingerprints are computed once (see above)."""
    with config.caching("fingerprints"):
        yield


def _memo(memo: dict[str, str] | None) -> dict[str, str]:
    if memo is not None:
        return memo
    shared = config.context().caches.fingerprints
    return shared if shared is not None else {}


def current(task: luigi.Task, memo: dict[str, str] | None = None,
            dynamic: list[luigi.Task] | None = None, with_upstream: bool = True) -> TaskFingerprint:
    """The task's fingerprint now. ``dynamic``: its dynamic requirements (default: as last recorded)."""
    memo = _memo(memo)
    code = code_fingerprint(type(task))
    params = significant_params(task)
    upstream = {}
    if with_upstream:
        required = flatten(task.requires()) + (recorded_dynamic(task) if dynamic is None else dynamic)
        upstream = {req.task_id: as_upstream(req, memo) for req in required}
    total = digest(code.digest, *(f"{k}={v}" for k, v in params.items()),
                   *(f"{k}>{v}" for k, v in sorted(upstream.items())))
    return TaskFingerprint(total, code, params, upstream)


def recorded_dynamic(task: luigi.Task) -> list[luigi.Task]:
    """The dynamic requirements the task's last successful run yielded."""
    if not _yields_requirements(task):
        return []
    record = records.lookup(task)
    found = []
    for family, params in record.get("dynamic", []) if isinstance(record, dict) else []:
        try:
            found.append(Register.get_task_cls(family).from_str_params(params))
        except Exception:  # the class is gone or changed: the task must run to find out
            found.append(Vanished(family=family))
    return found


def _yields_requirements(task: luigi.Task) -> bool:
    """Whether the task's ``run()`` is a generator: only such a run yields dynamic requirements."""
    run = getattr(type(task), "run", None)
    if run is None:
        return False
    known = getattr(run, "__luisy_yields__", None)
    if known is None:  # asked for every task of a graph: kept on the function, so a redefined class asks afresh
        known = inspect.isgeneratorfunction(inspect.unwrap(run))
        try:
            run.__luisy_yields__ = known
        except AttributeError:  # not a plain function
            pass
    return known


class Vanished(luigi.ExternalTask):
    """Stands for a recorded dynamic requirement that no longer exists."""

    family = luigi.Parameter()


def as_upstream(task: luigi.Task, memo: dict[str, str] | None = None) -> str:
    """The fingerprint ``task`` contributes to the tasks that require it."""
    memo = _memo(memo)
    key = task.task_id
    if key not in memo:
        memo[key] = _as_upstream(task, memo)
    return memo[key]


def _as_upstream(task: luigi.Task, memo: dict[str, str]) -> str:
    if isinstance(task, Vanished):
        return MISSING
    if not is_external(task) and not _may_have_manifest(type(task)):
        return current(task, memo).digest
    outputs = flatten(task.output())
    manifests = [o for o in outputs if isinstance(o, DirectoryTarget)]
    if manifests:
        if not is_external(task) and not task.complete():
            # Still with what it would be made from: a task whose output came from elsewhere (a
            # remote, hash update mode) is recorded with this, and its inputs changing here shows.
            return digest(STALE, _would_make(task, memo))
        return digest(*(_manifest_digest(o) for o in manifests))
    if is_external(task):
        content = mode_of(task) == "content"
        return digest(*(data_fingerprint(o, content) for o in outputs))
    return current(task, memo).digest


def _would_make(task: luigi.Task, memo: dict[str, str]) -> str:
    """What an incomplete task with a manifest would now be made from. For a directory task over
    one folder: its code, parameters and that folder's items, from the listing the build makes
    anyway (an external folder) or from what its upstream would be made from; walking a folder
    of a million files for its fingerprint would cost more than the rerun. Else its fingerprint."""
    required = flatten(task.requires())
    inputs = getattr(task, "current_inputs_digest", None)
    if len(required) != 1 or inputs is None:
        return current(task, memo).digest
    own = current(task, memo, with_upstream=False).digest
    if not is_external(required[0]):
        return digest(own, as_upstream(required[0], memo))
    try:
        return digest(own, inputs())
    except Exception:  # its input is missing or cannot be listed: the task says so when it runs
        return digest(own, MISSING)


def _may_have_manifest(cls: type[Any]) -> bool:
    """Whether a task of ``cls`` may output a folder with a manifest. Known without making the
    output for luisy's own ``output()``: that is most of the cost of a deep upstream."""
    if not getattr(getattr(cls, "output", None), "__luisy_output__", False):
        return True
    return issubclass(cls._luisy_output.target_cls, DirectoryTarget)


def _manifest_digest(target: Any) -> str:
    try:
        return target.header.content_digest
    except FileNotFoundError:
        return MISSING


def data_fingerprint(target: luigi.Target, content: bool = False) -> str:
    """A file's or folder's fingerprint: size and mtime of each file (or a content checksum)."""
    path = getattr(target, "path", None)
    if path is None:
        return "exists" if target.exists() else MISSING
    return storage.active().fingerprint(os.fspath(path), content_digests if content else None) or MISSING


def is_current(task: luigi.Task) -> bool:
    """Whether the task's recorded fingerprint equals its fingerprint now."""
    return not compare(task)


def compare(task: luigi.Task, detail: bool = False) -> list[Reason]:
    """Why the task's recorded fingerprint is not its fingerprint now (empty if it is): the first
    reason found, or with ``detail`` each part that changed."""
    record = records.lookup(task)
    if record is None:
        return [Reason(Kind.NO_RECORD)]
    if not isinstance(record, dict):
        return [Reason(Kind.RECORDED_BY_1X)]
    now = current(task)
    if record.get("fingerprint") == now.digest:
        return []
    if not detail:
        return [Reason(Kind.FINGERPRINT)]
    found = code_reasons(record, task)
    params = changes(record.get("params", {}), now.params)
    if params:
        found.append(Reason(Kind.PARAMETERS, changes=params))
    changed = differing(record.get("upstream", {}), now.upstream)
    required = {t.task_id: t for t in flatten(task.requires()) + recorded_dynamic(task)}
    data = tuple(str(required[k]) for k in changed if k in required and is_external(required[k]))
    other = tuple(str(required[k]) if k in required else k for k in changed
                  if not (k in required and is_external(required[k])))
    if data:
        found.append(Reason(Kind.INPUT_DATA, data))
    if other:
        found.append(Reason(Kind.UPSTREAM, other))
    return found or [Reason(Kind.FINGERPRINT)]


def code_reasons(record: Any, task: luigi.Task) -> list[Reason]:
    """Which definitions and library versions changed since ``record`` (none for a record that
    is not luisy 2's)."""
    if not isinstance(record, dict):
        return []
    code = code_fingerprint(type(task))
    found = []
    definitions = differing(record.get("code", {}), code.definitions)
    if definitions:
        found.append(Reason(Kind.CODE, tuple(definitions)))
    versions = changes(record.get("versions", {}), code.versions)
    if versions:
        found.append(Reason(Kind.VERSIONS, changes=versions))
    return found


def accept(task: luigi.Task, provenance: dict[str, Any] | None = None) -> None:
    """Record the current fingerprint of an existing output, as if the task had just made it."""
    record_success(task, recorded_dynamic(task), provenance)


def record_success(task: luigi.Task, dynamic: list[luigi.Task], provenance: dict[str, Any] | None = None) -> None:
    """Record the fingerprint of a task whose run just succeeded (its outputs are published),
    with ``provenance`` (where the output came from, see :mod:`luisy.history.provenance`).

    A directory task's manifest already tracks its input items, so its record holds only code
    and parameters (enough for ``plan`` to name what changed).
    """
    directory = any(isinstance(o, DirectoryTarget) for o in flatten(task.output()))
    record = current(task, dynamic=dynamic, with_upstream=not directory).record(dynamic)
    if provenance is not None:
        record["provenance"] = provenance
    records.store(task, record)
    shared = config.context().caches.fingerprints
    if shared and (directory or _yields_requirements(task)):  # what it contributes downstream has changed
        shared.clear()
