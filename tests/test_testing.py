from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import nested_pytest
from luigi.execution_summary import LuigiStatusCode

import luisy
from luisy import config
from luisy.testing import LuisyTestCase, create_testing_config, debug_run, get_all_dependencies


@luisy.project_name("tt")
@luisy.raw
@luisy.csv_output
class Raw(luisy.ExternalTask):
    pass


@luisy.project_name("tt")
@luisy.interim
@luisy.requires(Raw)
class Scale(luisy.Task):
    factor = luisy.IntParameter(default=2)

    def run(self):
        df = self.read_input()
        df["x"] *= self.factor
        self.write(df)


@luisy.project_name("tt")
@luisy.final
@luisy.requires(Scale)
class Total(luisy.Task):
    def run(self):
        self.write(int(self.read_input()["x"].sum()))


@luisy.project_name("tt")
@luisy.requires(Scale)
class Broken(luisy.Task):
    def run(self):
        raise RuntimeError("broken on purpose")


@luisy.project_name("tt")
@luisy.raw
@luisy.directory_input(pattern="*.npy")
class Frames(luisy.ExternalTask):
    def get_folder_name(self):
        return "frames"


@luisy.project_name("tt")
@luisy.requires(Frames)
@luisy.directory_output(format="npy")
class Halved(luisy.DirectoryTask):
    def process(self, name, obj):
        return obj / 2


@luisy.project_name("tt")
@luisy.requires(Halved)
@luisy.json_output
class Sums(luisy.Task):
    def run(self):
        self.write({name: float(obj.sum()) for name, obj in self.input().items()})


class TestDirectoryTasks(LuisyTestCase):
    frames = {"a": np.ones(3), "b": np.arange(4.0)}

    def test_directory_task_value_is_a_dict(self):
        before = config.get_working_dir()
        out = self.run_pipeline(Halved(), existing_outputs=[(Frames(), self.frames)])
        assert sorted(out) == ["a", "b"] and out["b"].tolist() == [0, 0.5, 1, 1.5]
        assert config.get_working_dir() == before

    def test_downstream_of_a_directory_task_and_1x_list_input(self):
        assert self.run_pipeline(Sums(), existing_outputs=[(Frames(), self.frames)]) == {"a": 1.5, "b": 3.0}
        assert self.run_pipeline(Sums(), existing_outputs=[(Frames(), [np.ones(2)])]) == {"0": 1.0}

    def test_existing_directory_output_short_circuits_upstream(self):
        store = self.run_pipeline(Sums(), existing_outputs=[(Halved(), {"z": np.full(2, 7.0)})], return_store=True)
        assert store[Sums()] == {"z": 14.0} and Frames() not in store

    def test_directory_tasks_touch_no_disk_and_run_in_this_process(self):
        import os
        import tempfile

        seen = []

        class Spy(Halved):
            processes = 2  # in memory, items are processed here all the same

            def process(self, name, obj):
                seen.append(os.getpid())
                return obj

        with tempfile.TemporaryDirectory() as root, config.working_dir(root):
            out = self.run_pipeline(Spy(), existing_outputs=[(Frames(), self.frames)])
            written = [p for p in Path(root).rglob("*")]
        assert sorted(out) == ["a", "b"] and written == []
        assert seen == [os.getpid(), os.getpid()]


class TestLuisyTestCase(LuisyTestCase):
    def setUp(self):
        self.raw = pd.DataFrame({"x": [1, 2, 3]})

    def test_run_pipeline_returns_root_output(self):
        assert self.run_pipeline(Total(factor=3), existing_outputs=[(Raw(), self.raw)]) == 18

    def test_nothing_touches_the_disk(self):
        import tempfile

        with tempfile.TemporaryDirectory() as root, config.working_dir(root):
            assert self.run_pipeline(Total(), existing_outputs=[(Raw(), self.raw)]) == 12
            written = [p for p in Path(root).rglob("*")]
        assert written == []

    def test_existing_outputs_short_circuit_upstream(self):
        scaled = pd.DataFrame({"x": [100]})
        summary = self.get_execution_summary(Total(), existing_outputs=[(Scale(), scaled)])
        assert {str(t) for t in summary["completed"]} == {"Total(factor=2)"}
        assert self.run_pipeline(Total(), existing_outputs=[(Scale(), scaled)]) == 100

    def test_return_store(self):
        store = self.run_pipeline(Total(), existing_outputs=[(Raw(), self.raw)], return_store=True)
        assert set(store) == {Raw(), Scale(), Total()}
        assert store[Total()] == 12 and store[Scale()]["x"].tolist() == [2, 4, 6]

    def test_reads_return_copies(self):
        raw = self.raw
        self.run_pipeline(Total(factor=10), existing_outputs=[(Raw(), raw)])
        assert raw["x"].tolist() == [1, 2, 3], "Scale's in-place *= must not reach the caller's frame"

    def test_asserts(self):
        self.assertSuccess(Total(), existing_outputs=[(Raw(), self.raw)])
        self.assertFail(Broken(), existing_outputs=[(Raw(), self.raw)])
        self.assertMissing(Total())
        self.assertFail(Total())  # a missing external input: the run does not succeed (1.x's testing docs)
        with self.assertRaises(AssertionError):
            self.assertFail(Total(), existing_outputs=[(Raw(), self.raw)])
        with self.assertRaises(AssertionError):
            self.assertSuccess(Broken(), existing_outputs=[(Raw(), self.raw)])
        with self.assertRaises(AssertionError):
            self.assertMissing(Total(), existing_outputs=[(Raw(), self.raw)])

    def test_incomplete_root_fails_the_test(self):
        with self.assertRaises(AssertionError) as info:
            self.run_pipeline(Broken(), existing_outputs=[(Raw(), self.raw)])
        assert "Broken" in str(info.exception)


def test_helpers_1x(tmp_path):
    try:
        create_testing_config(working_dir=str(tmp_path))
        assert config.get_working_dir() == tmp_path
        assert get_all_dependencies(Total()) == {Total(), Scale(), Raw()}
        Raw().output().write(pd.DataFrame({"x": [1]}))
        debug_run([Total()])
        assert Total().read() == 2
    finally:
        luisy.set_working_dir(None)


def test_debug_run_returns_luigis_tasks_by_status_as_in_1x(luisy_working_dir):
    Raw().output().write(pd.DataFrame({"x": [1]}))
    summary = debug_run(Broken())
    assert summary["failed"] == {Broken()} and summary["already_done"] == {Raw()}
    result = debug_run([Total()], return_summary=False)
    assert result.status is LuigiStatusCode.SUCCESS and Total().read() == 2


def test_fixture_restores_working_dir_and_is_a_plugin(tmp_path):
    # Runs in a separate pytest process, so the plugin must come from the entry point, not this conftest.
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent("""
        import luisy
        BEFORE = luisy.get_working_dir()

        def test_uses_tmp(luisy_working_dir, tmp_path):
            assert luisy.get_working_dir() == tmp_path == luisy_working_dir

        def test_restored_afterwards():
            assert luisy.get_working_dir() == BEFORE
    """))
    result = nested_pytest([str(test_file)], tmp_path, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
