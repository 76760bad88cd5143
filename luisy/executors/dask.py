"""The Dask executor: a directory task's items on a Dask cluster (``distributed``, the extra ``luisy[dask]``).

Items go to the cluster in chunks, one Dask task per chunk, so that 100 000 items make a few
thousand tasks, not 100 000. The work function is pickled with each chunk; the runner's work is
cut to the items of the chunk (its ``part(indices)``), so a chunk carries only what it needs.
Workers write the item files into the task's staging folder, on a file system they share with the
luigi worker (NFS, Lustre, or the same disk), and send back the outcomes (file, size, checksum);
the luigi worker alone writes the manifest and publishes.

A worker that dies while on a chunk costs nothing: the Dask scheduler gives the chunk to another
worker. After ``distributed.scheduler.allowed-failures`` deaths (3 by default) it gives up on the
chunk; its items are then sent one by one, and an item given up on alone fails, as an item that
kills its worker process does in a local pool. Dask counts a death against every task the worker
held, so an item queued behind one that kills workers may fail with it; the next run retries both.
A scheduler that goes away raises :class:`~luisy.errors.DaskClusterError`.

``distributed`` is imported when a map starts, never with luisy.
"""

from __future__ import annotations

import importlib.util
import pickle
import queue
import socket
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from luisy.errors import DaskClusterError, MissingExtraError
from luisy.executors.local import ItemStatus, Outcome, Work

if TYPE_CHECKING:
    from luisy.interrupts import Stop

#: The port of a Dask scheduler address that names none.
DEFAULT_PORT = 8786
#: How often (seconds) a map looks whether it was asked to stop while it waits for chunks.
POLL = 0.25
#: The error of an item whose Dask task the scheduler gave up on: every worker that ran it died.
WORKER_DIED = "Dask worker died (every worker that ran the item died; see the workers' logs)"
_SETTING = "--dask-scheduler, [luisy] dask_scheduler or the task's dask_scheduler"


def require_distributed() -> Any:
    """Import ``distributed``, or raise :class:`MissingExtraError` naming the extra."""
    _check_installed()
    import distributed

    return distributed


def _check_installed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise MissingExtraError(f"running items on a Dask cluster ({_SETTING}) needs the extra luisy[dask]: "
                                "pip install 'luisy[dask]'")


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Raise unless the extra is installed and something listens at ``address`` (a TCP probe,
    without starting Dask's event loop in this process, which luigi may fork)."""
    _check_installed()
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # another transport (ucx, inproc): the connection itself tells
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or DEFAULT_PORT), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        raise DaskClusterError(f"cannot reach the Dask scheduler at {address} ({error}); start one with "
                               f"`dask scheduler`, or check {_SETTING}") from None


def chunk_size(count: int, threads: int) -> int:
    """Items per Dask task: about eight chunks per worker thread, at most 64 items each."""
    return max(1, min(64, count // (max(1, threads) * 8)))


class DaskExecutor:
    """Items spread over the workers of the Dask scheduler at ``address``, in chunks."""

    def __init__(self, address: str, owner: str = "items", connect_timeout: float = 10.0) -> None:
        """``owner`` names the task in errors; ``connect_timeout``: seconds to reach the scheduler."""
        self.address, self.owner, self.connect_timeout = address, owner, connect_timeout

    def map(self, work: Work, count: int, stop: Stop | None = None) -> Iterator[Outcome]:
        if count == 0:
            return
        distributed = require_distributed()
        import cloudpickle  # a dependency of distributed; pickles the lambdas a work may hold
        client = self._connect(distributed)
        prefix = f"luisy-items-{uuid.uuid4().hex[:12]}"
        pending: dict[Any, list[int]] = {}
        # Done chunks (also cancelled ones, when the scheduler is lost), put there by Dask's thread:
        # each chunk is looked at once, however many are pending.
        finished: queue.Queue[Any] = queue.Queue()

        def submit(indices: list[int]) -> None:
            key = f"{prefix}-{indices[0]}-{len(indices)}"
            chunk = cloudpickle.dumps(_Chunk(_part(work, indices), indices))
            future = client.submit(pickle.loads, chunk, key=key)
            pending[future] = indices
            future.add_done_callback(finished.put)

        try:
            size = chunk_size(count, sum(client.nthreads().values()))
            for start in range(0, count, size):
                submit(list(range(start, min(count, start + size))))
            while pending:
                if stop:  # chunks not begun are dropped; those begun finish there unseen, and are made again
                    client.cancel(list(pending))
                    return
                try:
                    future = finished.get(timeout=POLL)  # a signal that sets ``stop`` does not end the wait
                except queue.Empty:
                    continue
                indices = pending.pop(future)
                try:
                    yield from future.result()
                except distributed.KilledWorker:
                    if len(indices) > 1:  # find the item that kills its worker: one Dask task each
                        for index in indices:
                            submit([index])
                    else:
                        yield Outcome(ItemStatus.FAIL, indices[0], error=WORKER_DIED)
                except Exception as error:  # process() errors are outcomes: this is the cluster's
                    raise self._failure(client, error) from None
        finally:
            client.close()  # releases the chunks not yet done

    def _connect(self, distributed: Any) -> Any:
        try:
            return distributed.Client(self.address, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise DaskClusterError(f"{self.owner}: cannot reach the Dask scheduler at {self.address} ({error}); "
                                   f"start one with `dask scheduler`, or check {_SETTING}") from None

    def _failure(self, client: Any, error: BaseException) -> DaskClusterError:
        if client.status != "running" or isinstance(error, CancelledError):  # the futures go with the connection
            return DaskClusterError(f"{self.owner}: lost the Dask scheduler at {self.address} while its items ran; "
                                    "nothing was published, the next run keeps the finished items")
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        return DaskClusterError(f"{self.owner}: a Dask worker could not run its items ({detail}); "
                                "the task's code and its packages must be importable on every worker")


def _part(work: Work, indices: Sequence[int]) -> Work:
    """What a chunk carries: the work cut to ``indices`` where it can be (the runner's work can)."""
    part = getattr(work, "part", None)
    return part(indices) if part is not None else work


class _Chunk:
    """A chunk of items, pickled so that unpickling it on a worker runs it and gives its outcomes.

    The Dask scheduler unpickles the tasks it is given: a task that is ``pickle.loads`` of bytes
    needs neither luisy nor the task's code on the scheduler, only on the workers.
    """

    def __init__(self, work: Work, indices: Sequence[int]) -> None:
        self.work, self.indices = work, indices

    def __reduce__(self) -> tuple[Any, ...]:
        return run_chunk, (self.work, self.indices)


def run_chunk(work: Work, indices: Sequence[int]) -> list[Outcome]:
    """On a Dask worker: the outcomes of ``indices``, in order."""
    return [work(index) for index in indices]
