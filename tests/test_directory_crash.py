"""A real process running a directory task, stopped by kill -9, Ctrl-C or SIGTERM at the points that matter.

Each test runs ``Doubled`` (from ``directory_tasks``, a checkpoint after every item) in a child
process that announces, through a marker file, that it reached a chosen point and then waits
there; the test signals it, checks that readers see a consistent state, and reruns in this
process. Ctrl-C and SIGTERM let the child go on from the point after a short wait: what it was
doing finishes within the grace period.
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
from luisy.directory.local import latest_checkpoint
from luisy.directory.target import _configuration

pytestmark = pytest.mark.slow  # see pyproject.toml

# Python run in the child before it waits at the point; {marker} is the file it creates.
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
    "while writing a checkpoint": """
        original = target._items_json
        checkpoints = []
        def items_json(items, step=4096):
            checkpoints.append(step)
            text = "".join(original(items, step))
            if len(checkpoints) == 3 and text:  # half of the line is in the file when the signal comes
                yield text[:len(text) // 2]
                pause()
                text = text[len(text) // 2:]
            yield text
        target._items_json = items_json
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
        original = target.retire
        def retire(*args, **kwargs):
            pause()
            return original(*args, **kwargs)
        target.retire = retire
    """,
}
PUBLISHING = list(PAUSES)[2:]


def _run_and_stop(working_dir: Path, tmp_path: Path, point: str, sig: int, processes: int) -> str:
    """Run ``Doubled`` in a child, send ``sig`` when it is at ``point``; the child's stderr."""
    marker = tmp_path / "reached"
    script = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, {tests!r})
        import luisy
        from luisy.directory import local as target
        from directory_tasks import Doubled
        luisy.set_working_dir({working_dir!r})
        Doubled.checkpoint_seconds = 0
        Doubled.processes = {processes}

        def pause():
            open({marker!r}, "w").close()
            time.sleep({seconds})
    """).format(tests=os.path.dirname(__file__), working_dir=str(working_dir), marker=str(marker),
                processes=processes, seconds=120 if sig == signal.SIGKILL else 1)
    script += textwrap.dedent(PAUSES[point]) + "\nDoubled().run()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never reached {point!r}: {child.stderr.read()}")
        time.sleep(0.02)
    os.kill(child.pid, sig)
    try:
        _, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail(f"the child did not end after {signal.Signals(sig).name} {point}")
    assert child.returncode != 0, err
    return err


def _checkpointed(folder: Path) -> set[str]:
    """The items the stopped run checkpointed whose files are still where it staged them."""
    found = latest_checkpoint(folder, _configuration(Doubled()))
    if found is None:
        return set()
    staging, items = found
    return {name for name, item in items.items() if (staging / item.file).is_file()}


def _assert_consistent(folder: Path) -> dict[str, int]:
    """Every listed item is intact; returns item name → first value."""
    out = Doubled().output()
    for name, item in out.manifest.items.items():
        assert checksum(folder / item.file) == item.checksum, name
    return {name: int(obj[0, 0]) for name, obj in out.items()}


CASES = [
    *[(point, signal.SIGKILL, 1) for point in PAUSES],
    *[(point, signal.SIGKILL, 2) for point in PAUSES if point != "while processing"],
    *[(point, sig, processes) for sig in (signal.SIGINT, signal.SIGTERM) for point in PAUSES
      for processes in (1, 2) if (point, processes) != ("while processing", 2)],
]


@pytest.mark.parametrize("point,sig,processes", CASES,
                         ids=[f"{signal.Signals(s).name}-{p.replace(' ', '-')}-p{n}" for p, s, n in CASES])
def test_a_stopped_run_leaves_a_consistent_output_and_the_rerun_converges(
        frames, luisy_working_dir, tmp_path, point, sig, processes):  # noqa: F811
    _build(Doubled())
    folder = Doubled().output().folder
    before = _assert_consistent(folder)
    assert before == {"f0": 0, "f1": 2, "f2": 4, "f3": 6}

    np.save(frames / "f1.npy", np.full((2, 2), 50))  # changed
    os.utime(frames / "f1.npy", ns=(2, 2))
    (frames / "f3.npy").unlink()  # removed
    for i in range(4, 10):  # added
        np.save(frames / f"f{i}.npy", np.full((2, 2), i))
    changed = {"f1", *(f"f{i}" for i in range(4, 10))}

    err = _run_and_stop(luisy_working_dir, tmp_path, point, sig, processes)

    seen = _assert_consistent(folder)
    after = {"f0": 0, "f1": 100, "f2": 4, **{f"f{i}": 2 * i for i in range(4, 10)}}
    assert seen in (before, after), "readers see the previous state or the new one, nothing mixed"
    if sig != signal.SIGKILL:  # what was under way finished: a publish, or the item in progress
        assert seen == (after if point in PUBLISHING else before), err
        said = "the publish was finished first" if point in PUBLISHING else "items kept for the next run"
        assert said in err, err
    kept = _checkpointed(folder) if seen == before else set()
    if seen == before and point not in PUBLISHING:
        # A checkpoint after every item: kill -9 at the 3rd loses it, a signal lets it finish.
        assert len(kept) >= (2 if sig == signal.SIGKILL else 3), (kept, err)

    PROCESSED.clear()
    _build(Doubled())
    assert _assert_consistent(folder) == after
    assert set(PROCESSED) == (set() if seen == after else changed - kept), "finished items are not redone"
    assert len(PROCESSED) == len(set(PROCESSED))

    # the next publish leaves exactly the listed files: the stopped run's leftovers are gone
    np.save(frames / "f10.npy", np.full((2, 2), 10))
    PROCESSED.clear()
    _build(Doubled())
    assert PROCESSED == ["f10"]
    assert files_on_disk(folder) == files_of(Doubled().output().manifest)
    assert not any(p.name.startswith(".luisy-tmp") for p in folder.parent.iterdir())
