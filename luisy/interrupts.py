"""Ctrl-C and SIGTERM: a first signal asks luisy to stop where that loses nothing, a second insists.

Two kinds of blocks answer the first SIGINT or SIGTERM differently from Python's default (an
immediate ``KeyboardInterrupt``):

- :func:`stop_on_signals`, around a directory task's items: the signal sets a :class:`Stop`; no
  new item starts, the items in progress may finish for a grace period, and the task keeps what
  is finished for the next run. The end of the grace period raises ``KeyboardInterrupt``.
- :func:`held`, around publishing outputs: the publish finishes, then ``KeyboardInterrupt`` is
  raised. A stop that came too late to keep any item from being done (:func:`stop_after_publish`)
  is raised there too, so the build stops once the finished work is published.

In both, a second signal raises ``KeyboardInterrupt`` at once. Only the main thread receives
signals; in other threads the blocks change nothing.
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from luisy import config

if TYPE_CHECKING:
    from luisy.config import TaskScope

__all__ = ["Stop", "held", "hold_signals_until_handled", "signal_name", "signals_held_back", "stop_after_publish",
           "stop_on_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
logger = logging.getLogger("luisy")



class Stop:
    """A request to start no new item; worker processes forked after it was made see it change."""

    def __init__(self) -> None:
        # Anonymous shared memory: a flag the forked item processes read between items.
        self._flag = mmap.mmap(-1, 1)
        #: The signal that asked this process to stop; ``None`` while none did.
        self.signal: int | None = None
        #: Whether a second signal (or the end of the grace period) raised ``KeyboardInterrupt``;
        #: later ones are ignored, so they cannot cut short the saving of the finished work.
        self.insisted = False

    def set(self, signum: int = signal.SIGINT) -> None:
        self.signal = signum
        self._flag[0] = 1

    def __bool__(self) -> bool:
        return self._flag[0] == 1


def signal_name(signum: int | None) -> str:
    """``"SIGINT"`` for 2; ``"stop requested"`` without a signal."""
    return "stop requested" if signum is None else signal.Signals(signum).name


@contextmanager
def _handling(first: Callable[[int], None]) -> Iterator[Stop]:
    """Inside the block, the first SIGINT or SIGTERM sets the stop and calls ``first``; a second
    one raises ``KeyboardInterrupt``."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    owner = os.getpid()

    def handle(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            # A process an item forked (its own multiprocessing pool) inherited this handler: the
            # signal is for it, so it does what it would have done without luisy.
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if stop.insisted:  # already stopping at once: what runs now saves the finished work
            return
        if stop.signal is not None:  # not the shared flag: an item process may have set that
            stop.insisted = True
            raise KeyboardInterrupt(signal_name(signum))
        stop.set(signum)
        first(signum)

    _install_fork_hooks()
    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    _sigterm_handlers.append(handle)
    try:
        yield stop
    finally:
        _sigterm_handlers.remove(handle)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# The SIGTERM handlers installed above, innermost last. A process forked while one is installed
# (an item's own multiprocessing pool) must start with SIGTERM's default: a Python handler there
# loses a SIGTERM that arrives before the child's interpreter has settled after the fork, and
# Pool.terminate() then waits for ever. So around a fork from the main thread SIGTERM is reset.
_sigterm_handlers: list[Callable[[int, Any], None]] = []


# SIGTERM is blocked meanwhile: one that arrives during the fork waits, and then reaches the
# parent's handler or ends the child, as it should.
_forking: list[bool] = []


def _default_sigterm_for_the_child() -> None:
    swapped = bool(_sigterm_handlers) and threading.current_thread() is threading.main_thread()
    _forking.append(swapped)
    if swapped:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sigterm_handler_back() -> None:
    if _forking and _forking.pop():
        signal.signal(signal.SIGTERM, _sigterm_handlers[-1])
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _sigterm_unblocked_in_child() -> None:
    if _forking and _forking.pop():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@functools.cache
def _install_fork_hooks() -> None:
    """Once per process, when luisy first handles signals (not at import: a program that imports
    luisy and never runs a task keeps its forks as they were)."""
    os.register_at_fork(before=_default_sigterm_for_the_child, after_in_parent=_sigterm_handler_back,
                        after_in_child=_sigterm_unblocked_in_child)


@contextmanager
def stop_on_signals(grace: float, on_signal: Callable[[int], None] | None = None) -> Iterator[Stop]:
    """Inside the block, the first SIGINT or SIGTERM sets the returned :class:`Stop` (and calls
    ``on_signal``); a second one, or ``grace`` seconds without the block ending, raises
    ``KeyboardInterrupt``."""
    timers: list[threading.Timer] = []
    main = threading.get_ident()

    def start_grace(signum: int) -> None:
        if on_signal is not None:
            on_signal(signum)
        # The timer's signal reaches the main thread even where it waits in a system call.
        timer = threading.Timer(grace, signal.pthread_kill, (main, signal.SIGINT))
        timer.daemon = True
        timer.start()
        timers.append(timer)

    try:
        with _handling(start_grace) as stop:
            _unblock()  # a signal held back since start-up (see hold_signals_until_handled) arrives now
            yield stop
    finally:
        for timer in timers:
            timer.cancel()


@contextmanager
def held(task: TaskScope | None = None) -> Iterator[None]:
    """Inside the block, a first SIGINT or SIGTERM waits for the block to end and is raised then
    as ``KeyboardInterrupt``, as is a stop ``task``'s run asked for (:func:`stop_after_publish`)."""
    try:
        with _handling(lambda signum: None) as stop:
            yield
    finally:
        pending = task.stop_after_publish if task is not None else None
        if task is not None:
            task.stop_after_publish = None
    if stop.signal is not None:
        logger.warning("interrupted (%s) while publishing: the publish was finished first", signal_name(stop.signal))
        raise KeyboardInterrupt(signal_name(stop.signal))
    if pending is not None:
        raise KeyboardInterrupt(signal_name(pending))


@contextmanager
def signals_held_back() -> Iterator[None]:
    """Inside the block (a short, last write before stopping), SIGINT and SIGTERM wait; they are
    delivered when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))
    try:
        yield
    finally:
        _unblock()


def hold_signals_until_handled() -> None:
    """Hold SIGINT and SIGTERM back until the next :func:`stop_on_signals` block handles them.

    A long-running command calls this first: a signal that comes while it loads the task (which
    can take seconds of imports) then stops it as cleanly as one that comes later.
    """
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))


def _unblock() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNALS))


def stop_after_publish(signum: int | None) -> None:
    """Raise a stop the run noted once what it finished is published (by the :func:`held` block
    that publishes the task run's writes); at once where nothing waits to be published."""
    signum = signum if signum is not None else signal.SIGINT
    task = config.context().task
    if task is None or task.pending is None:
        raise KeyboardInterrupt(signal_name(signum))
    task.stop_after_publish = signum
