"""``kill -9`` of a real process publishing a directory task, at the points that matter.

Each test runs ``Doubled`` (from ``test_directory``) in a child process that announces, through a
marker file, that it reached a chosen point and then waits there; the test kills it with SIGKILL,
checks that readers see a consistent state, and reruns in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from directory_tasks import PROCESSED, Doubled, _build, files_of, files_on_disk

from luisy.digests import file_digest as checksum

# Python run in the child before it waits to be killed; {marker} is the file it creates.
PAUSES = {
    "while processing": """
        original = Doubled.process
        calls = []
        def process(self, name, obj):
            calls.append(name)
            if len(calls) == 3:
                pause()
            return original(self, name, obj)
        Doubled.process = process
    """,
    "between moving items and replacing the manifest": """
        original = target.temp_sibling
        def temp_sibling(path):
            if path.name == target.MANIFEST_NAME:
                pause()
            return original(path)
        target.temp_sibling = temp_sibling
    """,
    "after replacing the manifest, before deleting replaced files": """
        def retire(folder, files, inside=None):
            pause()
        target.retire = retire
    """,
}


def _run_and_kill(working_dir: Path, tmp_path: Path, point: str) -> None:
    marker = tmp_path / "reached"
    script = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, {tests!r})
        import luisy
        from luisy.directory import target
        from directory_tasks import Doubled
        luisy.set_working_dir({working_dir!r})

        def pause():
            open({marker!r}, "w").close()
            time.sleep(120)
    """).format(tests=os.path.dirname(__file__), working_dir=str(working_dir), marker=str(marker))
    script += textwrap.dedent(PAUSES[point]) + "\nDoubled().run()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never reached {point!r}: {child.stderr.read()}")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def _assert_consistent(folder: Path) -> dict[str, int]:
    """Every listed item is intact; returns item name → first value."""
    out = Doubled().output()
    for name, item in out.manifest.items.items():
        assert checksum(folder / item.file) == item.checksum, name
    return {name: int(obj[0, 0]) for name, obj in out.items()}


@pytest.mark.parametrize("point", list(PAUSES))
def test_kill_9_then_rerun_converges_without_redoing_published_items(frames, luisy_working_dir,  # noqa: F811
                                                                    tmp_path, point):
    _build(Doubled())
    folder = Doubled().output().folder
    before = _assert_consistent(folder)
    assert before == {"f0": 0, "f1": 2, "f2": 4, "f3": 6}

    np.save(frames / "f1.npy", np.full((2, 2), 50))  # changed
    os.utime(frames / "f1.npy", ns=(2, 2))
    (frames / "f3.npy").unlink()  # removed
    for i in range(4, 10):  # added
        np.save(frames / f"f{i}.npy", np.full((2, 2), i))

    _run_and_kill(luisy_working_dir, tmp_path, point)

    seen = _assert_consistent(folder)
    after = {"f0": 0, "f1": 100, "f2": 4, **{f"f{i}": 2 * i for i in range(4, 10)}}
    assert seen in (before, after), "readers see the previous state or the new one, nothing mixed"

    PROCESSED.clear()
    _build(Doubled())
    assert _assert_consistent(folder) == after
    changed = {"f1", *(f"f{i}" for i in range(4, 10))}
    assert set(PROCESSED) == (set() if seen == after else changed), "published items are not redone"

    # the next publish leaves exactly the listed files: the killed run's leftovers are gone
    np.save(frames / "f10.npy", np.full((2, 2), 10))
    PROCESSED.clear()
    _build(Doubled())
    assert PROCESSED == ["f10"]
    assert files_on_disk(folder) == files_of(Doubled().output().manifest)
    assert not any(p.name.startswith(".luisy-tmp") for p in folder.parent.iterdir())
