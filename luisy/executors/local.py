"""Executors: run ``work(index)`` for every item index and yield what became of each.

:class:`SerialExecutor` works in this process. :class:`ProcessExecutor` forks worker processes,
so the work function (a closure over the task, any lambda it holds, the items and the writer)
reaches them without pickling. Each worker sends back the small :class:`Outcome` objects of a
chunk of items in one message, and notes in shared memory which item it is working on. A
worker that dies — killed, crashed, ``sys.exit()`` — costs only the item it was working on: that
item's outcome says how the worker died, a new worker takes its place, and the run goes on.

Once a :class:`~luisy.interrupts.Stop` is set, no new item starts: workers finish the item they
are on, send what they finished and exit, and ``map`` ends without outcomes for the rest.
"""

from __future__ import annotations

import collections
import enum
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # multiprocessing is imported when a pool is used, not with luisy
    from multiprocessing.connection import Connection

    from luisy.interrupts import Stop


class ItemStatus(enum.Enum):
    """What became of one item."""

    OK = "ok"  #: an item file was written
    SKIP = "skip"  #: ``process`` returned ``None``: nothing to publish
    FAIL = "fail"  #: ``process`` raised, or its worker process died


@dataclass(frozen=True)
class Outcome:
    """The result of the work on item ``index``; ``staged`` is what an ``OK`` item wrote; a ``FAIL``
    says why in ``error`` (one line) and, for an exception in the item's code, where in
    ``traceback`` (text, so that it pickles; see :mod:`luisy.tracebacks`)."""

    status: ItemStatus
    index: int
    staged: Any = None
    error: str = ""
    traceback: str = ""
    #: How long the item's work took (seconds; 0 where not measured).
    seconds: float = 0.0


Work = Callable[[int], Outcome]

#: A worker sends the outcomes of a chunk at least this often (seconds), so that a worker killed
#: in the middle of a chunk of slow items loses only the items of the last fraction of a second.
SEND_EVERY = 0.2


class Executor(Protocol):
    """Runs ``work`` for the indices ``0 .. count-1``, yielding outcomes in completion order;
    once ``stop`` is set, starts no new item."""

    def map(self, work: Work, count: int, stop: Stop | None = None) -> Iterator[Outcome]: ...


class SerialExecutor:
    """Every item in this process, in order."""

    def map(self, work: Work, count: int, stop: Stop | None = None) -> Iterator[Outcome]:
        for index in range(count):
            if stop:
                return
            yield work(index)


class ProcessExecutor:
    """Items spread over ``processes`` forked worker processes, handed out in chunks."""

    def __init__(self, processes: int) -> None:
        self.processes = processes

    def map(self, work: Work, count: int, stop: Stop | None = None) -> Iterator[Outcome]:
        from luisy.interrupts import Stop

        pool = _Pool(work, count, self.processes, Stop() if stop is None else stop)
        try:
            yield from pool.outcomes()
        finally:
            pool.close()


class _Pool:
    """The workers of one :meth:`ProcessExecutor.map`: started, fed chunks of indices, reaped when
    they end, and replaced when they die with items left to do."""

    def __init__(self, work: Work, count: int, processes: int, stop: Stop) -> None:
        self.work, self.processes, self.stop = work, processes, stop
        self.chunk = max(1, min(64, count // (processes * 8)))
        self.todo = collections.deque(range(count))
        self.workers: dict[Connection, _Worker] = {}
        self.told = False  # whether the workers were told to stop

    def outcomes(self) -> Iterator[Outcome]:
        while self.todo and len(self.workers) < self.processes:
            self.start()
        while self.workers:
            for worker, ended in self.ready():
                yield from self.serve(worker, ended)

    def start(self) -> None:
        worker = _Worker.start(self.work, [w.conn for w in self.workers.values()], self.stop)
        self.workers[worker.conn] = worker
        self.hand_out(worker, chunks=1)  # a first chunk each, so every worker has work from the start

    def hand_out(self, worker: _Worker, chunks: int = 2) -> None:
        """Keep one chunk queued behind the one in progress, so a worker never waits for work."""
        while self.todo and len(worker.assigned) < chunks * self.chunk and not worker.eof:
            indices = [self.todo.popleft() for _ in range(min(self.chunk, len(self.todo)))]
            try:
                worker.conn.send(indices)
            except OSError:  # it died since we last heard from it: the chunk was never given
                self.todo.extendleft(reversed(indices))
                worker.eof = True
            else:
                worker.assigned.extend(indices)

    def ready(self) -> list[tuple[_Worker, bool]]:
        """The workers that sent outcomes or ended, and whether each ended."""
        from multiprocessing.connection import wait

        if self.stop and not self.told:  # idle workers wait for a chunk: tell them there is none
            self.told = True
            for worker in self.workers.values():
                worker.tell_stop()
        sentinels = {w.process.sentinel: w for w in self.workers.values()}
        # A signal that sets ``stop`` does not end the wait: look again now and then.
        ready = set(wait([*self.workers, *sentinels], timeout=None if self.told else 0.25))
        return [(w, w.process.sentinel in ready) for w in self.workers.values()
                if ready & {w.conn, w.process.sentinel}]

    def serve(self, worker: _Worker, ended: bool) -> Iterator[Outcome]:
        """What ``worker`` sent; then more work for it, its retirement, or (it ended) its reaping."""
        yield from worker.received()
        if ended or worker.eof:
            yield from self.reap(worker)
            return
        if not self.stop:
            self.hand_out(worker)
        if not worker.assigned and not worker.eof:  # nothing left for it
            worker.stop()
            del self.workers[worker.conn]

    def reap(self, worker: _Worker) -> Iterator[Outcome]:
        """Remove an ended worker. Had it items left, the one it was on fails and the others are
        done again, by a new worker unless asked to stop."""
        worker.process.join()
        worker.conn.close()
        del self.workers[worker.conn]
        # After a stop it stopped as asked, or the signal that asked reached it too (a SIGTERM to
        # the process group): what it had not finished stays undone.
        if worker.assigned and not self.stop:
            lost = worker.current.value
            if lost not in worker.assigned:  # it died between items: fail the next one
                lost = worker.assigned[0]
            worker.assigned.remove(lost)
            self.todo.extendleft(reversed(worker.assigned))
            yield Outcome(ItemStatus.FAIL, lost, error=worker.death())
        if self.todo and not self.stop:
            self.start()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()


@dataclass
class _Worker:
    process: Any
    conn: Connection
    assigned: collections.deque[int]
    #: The index the worker is working on (-1 between chunks), in memory shared with it.
    current: Any
    eof: bool = False

    @classmethod
    def start(cls, work: Work, others: list[Connection], stop: Stop) -> _Worker:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        current = context.RawValue("q", -1)
        # Not a daemon, so that process() may start processes of its own; the pool stops it.
        process = context.Process(target=_serve, args=(work, child, [parent, *others], current, stop), daemon=False)
        process.start()
        child.close()
        return cls(process, parent, collections.deque(), current)

    def received(self) -> Iterator[Outcome]:
        """The outcomes the worker has sent so far."""
        try:
            while self.conn.poll():
                for outcome in self.conn.recv():  # in the order the indices were handed out
                    self.assigned.popleft()
                    yield outcome
        except (EOFError, OSError):  # the worker is gone; its exit code says how
            self.eof = True

    def death(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"worker process died (signal {-code})"
        return f"worker process died (exit code {code})"

    def tell_stop(self) -> None:
        """Ask the worker to end once it has sent the outcomes of the chunks it has."""
        try:
            self.conn.send(None)
        except OSError:
            pass

    def stop(self) -> None:
        self.tell_stop()
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(work: Work, conn: Connection, parents_ends: list[Connection], current: Any, stop: Stop) -> None:
    """A worker's loop: chunks of indices in, one outcome per index out, until ``None``, a stop
    request or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the workers
    # SIGTERM keeps its default: a Python handler would be inherited by the processes an item forks
    # (its own multiprocessing pool), where a SIGTERM that arrives just after the fork is lost.
    # A SIGTERM to the whole process group ends a worker at once; what it finished is sent often
    # (below), so it loses little more than the item it was on.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Close the parent's ends of the pipes this fork inherited: when the parent dies, nothing holds
    # them open any more, and recv() below ends with EOF instead of waiting for ever.
    for end in parents_ends:
        end.close()
    while True:
        try:
            indices = conn.recv()
        except EOFError:
            return
        if indices is None:
            return
        outcomes: list[Outcome] = []
        sent = time.monotonic()
        try:
            for index in indices:
                if stop:
                    break
                current.value = index
                outcomes.append(work(index))
                if time.monotonic() - sent >= SEND_EVERY:  # a slow chunk: send what is done so far
                    conn.send(outcomes)
                    outcomes, sent = [], time.monotonic()
            current.value = -1
            conn.send(outcomes)
        except OSError:  # the parent is gone
            return
        if stop:
            return


def executor_for(processes: int, count: int) -> Executor:
    """A process pool for ``processes`` > 1 and more than one item; else this process."""
    return ProcessExecutor(processes) if processes > 1 and count > 1 else SerialExecutor()
