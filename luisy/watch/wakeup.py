"""Wake the watcher early when the operating system reports a change in a watched folder.

File events (inotify, FSEvents... through ``watchdog``) only say *look now*: they are lost on
network shares and under load, so the watcher rescans the folders on a timer as well, and the
folder listing decides what changed. Without ``watchdog`` installed (the ``watch`` extra) the
timer alone does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any


class Wakeup:
    """An event the watcher waits on; file events in the watched folders set it.

    ``folders``: ``(path, recursive, ignored)`` per folder, where ``ignored(name)`` tells names whose
    events do not matter (temporary files being written: only their renaming into place does).
    """

    def __init__(self, folders: Sequence[tuple[str, bool, Callable[[str], Any]]]) -> None:
        self._event = threading.Event()
        self._folders = list(folders)
        self._scheduled: set[str] = set()
        self._observer: Any = None
        try:
            from watchdog.observers import Observer
        except ImportError:
            return
        self._observer = Observer()
        self._observer.daemon = True
        self.watch_new_folders()
        self._observer.start()

    @property
    def folders(self) -> list[str]:
        """The folders whose events wake the watcher."""
        return [path for path, _, _ in self._folders]

    @property
    def events(self) -> bool:
        """Whether file events can wake the watcher (``watchdog`` is installed)."""
        return self._observer is not None

    def watch_new_folders(self) -> None:
        """Start watching the folders that did not exist before (an input folder made later)."""
        if self._observer is None:
            return
        for path, recursive, ignored in self._folders:
            if path not in self._scheduled and os.path.isdir(path):
                try:
                    self._observer.schedule(_Handler(self._event, ignored), path, recursive=recursive)
                except OSError:  # e.g. no inotify watches left: the timer still finds the changes
                    continue
                self._scheduled.add(path)

    def wait(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds passed; whether woken. Clears the event."""
        woken = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return woken

    def set(self) -> None:
        """Wake the watcher now (a signal asks it to stop); safe in a signal handler.

        The event is set from another thread: the handler may run while this thread holds the
        event's lock (inside ``wait`` or ``clear``), and setting it here would wait for itself.
        """
        threading.Thread(target=self._event.set, name="luisy-wakeup", daemon=True).start()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)


class _Handler:
    """A watchdog event handler that sets ``event`` for any event on a name that matters."""

    def __init__(self, event: threading.Event, ignored: Callable[[str], Any]) -> None:
        self.event, self.ignored = event, ignored

    def dispatch(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):  # a reader, such as the run itself
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(path and not self.ignored(os.path.basename(os.fsdecode(path))) for path in paths):
            self.event.set()
