"""The executors on their own: every index gets exactly one outcome, whatever the worker processes do."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

import pytest

from luisy.executors import ItemStatus, Outcome, ProcessExecutor, SerialExecutor, executor_for
from luisy.interrupts import Stop


def ok(index: int) -> Outcome:
    return Outcome(ItemStatus.OK, index, staged=(index, os.getpid()))


def test_serial_runs_every_index_in_order_in_this_process():
    outcomes = list(SerialExecutor().map(ok, 5))
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert {o.staged[1] for o in outcomes} == {os.getpid()}


@pytest.mark.parametrize("count", [1, 2, 7, 300])
def test_processes_give_one_outcome_per_index_from_other_processes(count):
    outcomes = list(ProcessExecutor(2).map(ok, count))
    assert sorted(o.index for o in outcomes) == list(range(count))
    pids = {o.staged[1] for o in outcomes}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def dies_on_3_and_7(index: int) -> Outcome:
    if index == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    if index == 7:
        sys.exit(5)
    return ok(index)


def test_a_dead_worker_fails_its_item_only_and_is_replaced():
    seen = list(ProcessExecutor(2).map(dies_on_3_and_7, 40))
    outcomes = {o.index: o for o in seen}
    assert sorted(o.index for o in seen) == list(range(40)), seen
    assert outcomes[3] == Outcome(ItemStatus.FAIL, 3, error="worker process died (signal 9)"), seen
    assert outcomes[7] == Outcome(ItemStatus.FAIL, 7, error="worker process died (exit code 5)"), seen
    assert all(o.status is ItemStatus.OK for i, o in outcomes.items() if i not in (3, 7)), seen
    assert len({o.staged[1] for o in seen if o.staged}) >= 3, f"dead workers were not replaced: {seen}"


def always_dies(index: int) -> Outcome:
    os.kill(os.getpid(), signal.SIGKILL)


def test_workers_that_always_die_still_end_the_run():
    outcomes = list(ProcessExecutor(2).map(always_dies, 6))
    assert sorted(o.index for o in outcomes) == list(range(6))
    assert {o.error for o in outcomes} == {"worker process died (signal 9)"}


def test_stopping_early_leaves_no_worker_behind():
    import multiprocessing

    outcomes = ProcessExecutor(2).map(ok, 1000)
    next(outcomes)
    outcomes.close()
    assert multiprocessing.active_children() == []


def test_executor_for():
    assert isinstance(executor_for(1, 100), SerialExecutor)
    assert isinstance(executor_for(4, 1), SerialExecutor)
    assert isinstance(executor_for(2, 2), ProcessExecutor)


def _slow(index: int) -> Outcome:
    time.sleep(0.02)
    return ok(index)


@pytest.mark.parametrize("executor", [SerialExecutor(), ProcessExecutor(2)], ids=["serial", "processes"])
def test_a_stop_starts_no_new_item_and_ends_the_map_without_failures(executor):
    import multiprocessing

    stop = Stop()
    outcomes = []
    for outcome in executor.map(_slow, 400, stop):
        outcomes.append(outcome)
        if len(outcomes) == 10:
            stop.set()
    assert 10 <= len(outcomes) < 400
    assert all(o.status is ItemStatus.OK for o in outcomes), outcomes
    assert len({o.index for o in outcomes}) == len(outcomes)
    assert multiprocessing.active_children() == []


def _stop_at_5(stop: Stop) -> Callable[[int], Outcome]:
    def work(index: int) -> Outcome:
        if index == 5:
            stop.set()  # as a signal handler in the parent would, seen here through shared memory
            time.sleep(0.2)
        return ok(index)
    return work


def test_workers_finish_the_item_they_are_on_when_asked_to_stop():
    stop = Stop()
    outcomes = {o.index: o for o in ProcessExecutor(2).map(_stop_at_5(stop), 400, stop)}
    assert 5 in outcomes and outcomes[5].status is ItemStatus.OK, "the item in progress was not let finish"
    assert len(outcomes) < 400
