"""Why a task would run: each reason is data (:class:`Reason`), put into words by :func:`describe`
only where it is shown (``luisy plan``, ``luisy status``, 1.x's dry run); ``plan --json`` gives
the data itself.

``complete()`` and ``plan`` ask the same question of a task, ``task.why(detail)``: empty when the
task is complete. ``complete()`` stops at the first reason found; ``plan`` asks for every reason,
in detail. So the two cannot disagree about *whether* a task runs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Kind(str, enum.Enum):
    """What kind of change makes a task run."""

    NO_OUTPUT = "no output"
    CORRUPT = "corrupt manifest"
    NO_RECORD = "no record"
    RECORDED_BY_1X = "recorded by luisy 1.x"
    FINGERPRINT = "fingerprint changed"
    CODE = "code changed"
    VERSIONS = "versions changed"
    PARAMETERS = "parameters changed"
    INPUT_DATA = "input data changed"
    UPSTREAM = "upstream changed"
    EVERY_ITEM = "every item is processed again"
    ITEMS = "items changed"
    RESUME = "resume"
    RETRY = "failed items to retry"
    REQUIREMENTS = "runs once its requirements are complete"
    NOT_COMPLETE = "not complete"
    MISSING_INPUT = "missing input"
    FOLD = "items to fold"
    REFOLD = "every item is folded again"


@dataclass(frozen=True)
class Reason:
    """One reason a task would run."""

    kind: Kind
    #: What changed: the definitions (code), or the tasks (input data, upstream).
    names: tuple[str, ...] = ()
    #: ``(name, before, now)`` of each parameter or library version that changed.
    changes: tuple[tuple[str, str, str], ...] = ()
    #: Item counts: ``new``, ``changed``, ``removed`` (items); ``retried``; ``kept`` of ``todo`` (resume).
    counts: Mapping[str, int] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The reason as plain data (``luisy plan --json``)."""
        out: dict[str, Any] = {"kind": self.kind.name.lower(), "text": describe(self)}
        if self.names:
            out["names"] = list(self.names)
        if self.changes:
            out["changes"] = [{"name": name, "before": before, "now": now} for name, before, now in self.changes]
        if self.counts:
            out["counts"] = dict(self.counts)
        return out


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """``(key, before, now)`` for each key whose value differs, or that only one side has."""
    return tuple((k, str(old.get(k, "(none)")), str(new.get(k, "(none)")))
                 for k in differing(old, new))


def differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ, or that only one side has, sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


_FIXED = {
    Kind.NO_RECORD: "no fingerprint recorded, or none luisy can read (made by luisy 1.x or copied in? "
                    "`luisy run --hash-update-mode` accepts it)",
    Kind.RECORDED_BY_1X: "fingerprint recorded by luisy 1.x (`luisy run --hash-update-mode` accepts the output)",
}


def describe(reason: Reason) -> str:
    """The reason in words, as ``luisy plan`` prints it."""
    kind, counts = reason.kind, reason.counts
    if kind in _FIXED:
        return _FIXED[kind]
    if kind is Kind.CORRUPT:  # names: what is wrong with it
        return (f"corrupt manifest ({reason.names[0]}; `luisy verify TASK --repair` removes it, "
                "and the run makes the output again)")
    if kind is Kind.ITEMS:
        return f"{counts['new']} new, {counts['changed']} changed, {counts['removed']} removed items"
    if kind is Kind.RESUME:
        return f"resume: {counts['kept']} of {counts['todo']} items kept from an interrupted run"
    if kind is Kind.FOLD and not counts:
        return f"fold {reason.names[0]}"
    if kind is Kind.FOLD:
        return (f"fold {counts['new']} new, unfold and fold {counts['changed']} changed, "
                f"unfold {counts['removed']} removed items")
    if kind is Kind.RETRY:
        return f"{counts['retried']} failed items to retry"
    if reason.changes:
        return f"{kind.value}: " + ", ".join(f"{name} {before} → {now}" for name, before, now in reason.changes)
    if reason.names:
        return f"{kind.value}: " + ", ".join(reason.names)
    return str(kind.value)


def described(reasons: Iterable[Reason]) -> list[str]:
    """Each reason in words."""
    return [describe(reason) for reason in reasons]
