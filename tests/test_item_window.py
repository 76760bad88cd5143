"""``luisy.items.window``: a page of a directory task's items found by bisection equals the same
rows read one by one, for every offset, with failed, skipped and bad items among them."""

from __future__ import annotations

import importlib
import itertools
import sys

import pytest
from conftest import run_luisy, write_project

import luisy
from luisy.items import items, window

TASKS = """
    import luisy

    @luisy.raw
    @luisy.directory_input(pattern="*.txt")
    class Words(luisy.ExternalTask):
        def get_folder_name(self):
            return "words"

    @luisy.interim
    @luisy.requires(Words)
    class Checked(luisy.DirectoryTask):
        on_error = "skip"

        def process(self, name, text):
            if text.startswith("bad"):
                raise ValueError("bad word " + name)
            if text.startswith("skip"):
                return None
            return text.upper()
"""


@pytest.fixture
def checked(tmp_path, monkeypatch):
    write_project(tmp_path, {"windowed.py": TASKS})
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("windowed", None)
    tasks = importlib.import_module("windowed")
    words = tmp_path / "data" / "windowed" / "raw" / "words"
    words.mkdir(parents=True)
    for i in range(60):
        text = "bad" if i % 7 == 3 else "skip" if i % 11 == 5 else f"w{i}"
        (words / f"{'ab'[i % 2]}{i:02d}.txt").write_text(text)
    with luisy.config.working_dir(tmp_path / "data"):
        luisy.execution.run([tasks.Checked()], working_dir=tmp_path / "data")
        yield tasks, tmp_path
    sys.modules.pop("windowed", None)


def test_a_window_equals_the_rows_read_one_by_one(checked):
    tasks, root = checked
    task = tasks.Checked()
    folder = task.output().folder
    (folder / task.output().manifest.items["a12"].file).write_bytes(b"damaged")
    verify = run_luisy(["verify", "windowed:Checked", "--working-dir", str(root / "data")], cwd=root)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    every = list(items(task, inputs=False))
    states = {row.state for row in every}
    assert states == {"ok", "failed", "skipped", "bad"}, states
    for offset, size in itertools.product(range(0, len(every) + 3), (1, 5, 50)):
        assert window(task, offset, size) == every[offset:offset + size], (offset, size)
