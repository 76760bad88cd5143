from __future__ import annotations

import json
import os
from pathlib import Path

import luigi
import numpy as np
import pandas as pd
import pytest
from conftest import run_luisy, write_project

import luisy
from luisy.errors import DecorationError


@luisy.project_name("tp")
@luisy.raw
@luisy.csv_output
class Source(luisy.ExternalTask):
    part = luisy.IntParameter(default=0)

    def get_file_name(self):
        return f"source_{self.part}"


@luisy.project_name("tp")
@luisy.interim
@luisy.requires(Source)
class Double(luisy.Task):
    def run(self):
        df = self.read_input()
        self.write(df.assign(v=df["v"] * 2))


def _write_source(part, values):
    Source(part=part).output().write(pd.DataFrame({"v": values}))


def test_pipeline_runs_and_reads(luisy_working_dir):
    _write_source(0, [1, 2])
    assert luigi.build([Double()], local_scheduler=True, log_level="WARNING")
    assert Double().read()["v"].tolist() == [2, 4]
    assert Double().output().path == str(luisy_working_dir / "tp" / "interim" / "Double_part=0.pkl")


def test_read_before_run_says_run_first(luisy_working_dir):
    with pytest.raises(ValueError, match=r"Double\(part=5\) has no output yet .*run the task first"):
        Double(part=5).read()


def test_failing_run_leaves_no_output_and_keeps_the_previous_one(luisy_working_dir):
    _write_source(0, [1])

    @luisy.project_name("tp")
    @luisy.requires(Double)
    @luisy.json_output
    class WritesThenFails(luisy.Task):
        fail = luisy.BoolParameter(significant=False)

        def run(self):
            self.write({"version": 2})
            if self.fail:
                raise RuntimeError("boom after writing")

    task = WritesThenFails(fail=True)
    assert not luigi.build([task], local_scheduler=True, log_level="CRITICAL")
    assert not task.output().exists()
    assert list(luisy_working_dir.glob("*WritesThenFails*")) == [], "no temporary file may be left behind"

    task.output().write({"version": 1})
    with pytest.raises(RuntimeError, match="boom after writing"):
        task.run()
    assert task.read() == {"version": 1}


def test_generator_run_with_dynamic_dependencies_publishes_at_the_end(luisy_working_dir):
    _write_source(0, [5])

    @luisy.project_name("tp")
    class Dynamic(luisy.Task):
        def run(self):
            self.write("first")
            assert not self.output().exists(), "published before run() ended"
            upstream = yield Double(part=0)
            self.write(f"v={upstream.read()['v'].tolist()}")

    assert luisy.build(Dynamic(), log_level="WARNING")
    assert Dynamic().read() == "v=[10]"


def test_read_input_needs_one_input(luisy_working_dir):
    @luisy.requires(Source, Double)
    class Two(luisy.Task):
        pass

    with pytest.raises(ValueError, match="needs exactly one input, it has 2"):
        Two().read_input()


def test_requires_forms():
    @luisy.requires(Source)
    class One(luisy.Task):
        pass

    @luisy.requires(Source, Double)
    class Many(luisy.Task):
        pass

    @luisy.requires(Source, Double, as_dict=True)
    class AsDict(luisy.Task):
        pass

    assert One(part=3).requires() == Source(part=3)
    assert Many(part=3).requires() == [Source(part=3), Double(part=3)]
    assert AsDict(part=3).requires() == {"Source": Source(part=3), "Double": Double(part=3)}
    assert [name for name, _ in AsDict.get_params()] == ["part"]


def test_requires_without_task_is_type_error():
    with pytest.raises(TypeError, match="at least one task"):
        luisy.requires()


def test_wrapper_task_read_list_and_dict(luisy_working_dir):
    _write_source(0, [1])
    _write_source(1, [2])

    class AsList(luisy.WrapperTask):
        def requires(self):
            return [Double(part=0), Double(part=1)]

    class AsDict(luisy.WrapperTask):
        def requires(self):
            return {"zero": Double(part=0), "src": Source(part=1)}

    assert luisy.build([AsList(), AsDict()], log_level="WARNING")
    assert [df["v"].tolist() for df in AsList().read()] == [[2], [4]]
    got = AsDict().read()
    assert set(got) == {"zero", "src"} and got["src"]["v"].tolist() == [2]


def test_concatenation_task(luisy_working_dir):
    for part in range(3):
        _write_source(part, [part, part + 10])

    @luisy.project_name("tp")
    @luisy.parquet_output
    class Concat(luisy.ConcatenationTask):
        def requires(self):
            return {p: Double(part=p) for p in range(3)}

        def preprocess(self, df):
            return df.sort_values("v", ascending=False)

    assert luisy.build(Concat(), log_level="WARNING")
    assert Concat().read()["v"].tolist() == [24, 22, 20, 4, 2, 0]


def test_get_related_instances(luisy_working_dir):
    @luisy.project_name("tp")
    @luisy.interim
    class Rel(luisy.Task):
        a = luisy.IntParameter()
        b = luisy.Parameter(default="x")
        tags = luisy.ListParameter(default=[1, 2])
        when = luisy.DateParameter(default=None)

        def run(self):
            self.write(self.a)

    made = [Rel(a=1), Rel(a=2, b="y"), Rel(a=3, tags=["p", "q"])]
    assert luisy.build(made, log_level="WARNING")
    (luisy_working_dir / "tp" / "interim" / "Rel_garbage.pkl").write_text("not ours")
    related = Rel.get_related_instances()
    assert sorted(related, key=lambda t: t.a) == made
    assert Rel(a=99) not in related


def test_decorators_with_and_without_parentheses(luisy_working_dir):
    @luisy.raw()
    @luisy.csv_output()
    class A(luisy.Task):
        pass

    @luisy.raw
    @luisy.csv_output
    class B(luisy.Task):
        pass

    assert A().output().path.endswith("/raw/A.csv") and B().output().path.endswith("/raw/B.csv")


def test_subclass_decoration_does_not_change_parent(luisy_working_dir):
    @luisy.interim
    @luisy.csv_output
    class Parent(luisy.Task):
        pass

    @luisy.final
    @luisy.json_output
    class Child(Parent):
        pass

    assert Parent().output().path.endswith("/interim/Parent.csv")
    assert Child().output().path.endswith("/final/Child.json")


def test_output_decorator_on_plain_luigi_task_is_rejected():
    with pytest.raises(DecorationError, match="luisy tasks"):
        @luisy.csv_output
        class NotLuisy(luigi.Task):
            pass


def test_make_directory_output_keeps_per_class_state(luisy_working_dir):
    folder = luisy_working_dir / "tp" / "raw" / "frames"
    folder.mkdir(parents=True)
    for name, text in [("a.txt", "1"), ("b.txt", "2"), ("c.csv", "3"), ("skip.txt", "")]:
        (folder / name).write_text(text)

    def read_int(path):
        text = open(path).read()
        return int(text) if text else None

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.make_directory_output(read_int, regex_pattern=r"\.txt$")
    class Txt(luisy.ExternalTask):
        def get_folder_name(self):
            return "frames"

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.make_directory_output(lambda p: open(p).read() + "!")
    class AllFiles(luisy.ExternalTask):
        def get_folder_name(self):
            return "frames"

    assert list(Txt().read()) == [1, 2]
    assert list(AllFiles().read()) == ["1!", "2!", "3!", "!"]
    assert len(Txt().output()) == 3 and [p.name for p in Txt().output().paths()] == ["a.txt", "b.txt", "skip.txt"]
    assert luisy.build(Txt(), log_level="WARNING")  # an existing folder is a complete ExternalTask


def test_make_directory_output_rejects_other_classes():
    with pytest.raises(ValueError, match="luisy.ExternalTask"):
        @luisy.make_directory_output(print)
        class NotExternal(luisy.Task):
            def get_folder_name(self):
                return "x"

    with pytest.raises(ValueError, match="must define get_folder_name"):
        @luisy.make_directory_output(print)
        class NoFolder(luisy.ExternalTask):
            pass


def test_directory_input_reads_by_extension(luisy_working_dir):
    import skimage.io

    folder = luisy_working_dir / "tp" / "raw" / "mixed"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "a.npy", np.arange(3))
    pd.DataFrame({"x": [1]}).to_csv(folder / "b.csv", index=False)
    (folder / "c.json").write_text('{"k": 1}')
    skimage.io.imsave(folder / "sub" / "d.png", np.full((4, 4), 200, dtype=np.uint8), check_contrast=False)

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.directory_input(recursive=True)
    class Mixed(luisy.ExternalTask):
        def get_folder_name(self):
            return "mixed"

    items = dict(Mixed().output().items())
    assert list(items) == ["a.npy", "b.csv", "c.json", "sub/d.png"]
    np.testing.assert_array_equal(items["a.npy"], np.arange(3))
    assert items["b.csv"]["x"].tolist() == [1] and items["c.json"] == {"k": 1}
    assert items["sub/d.png"].shape == (4, 4) and items["sub/d.png"].max() == 200

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.directory_input(pattern="*.npy")
    class OnlyNpy(luisy.ExternalTask):
        def get_folder_name(self):
            return "mixed"

    assert [p.name for p in OnlyNpy().output().paths()] == ["a.npy"]


def test_directory_input_source_items_are_named_by_path_without_extension(luisy_working_dir):
    folder = luisy_working_dir / "tp" / "raw" / "named"
    (folder / "sub.d").mkdir(parents=True)
    for rel in ("a.npy", "b.tar.npy", ".hidden", "sub.d/c.npy", "sub.d/..x"):
        (folder / rel).write_text("x")

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.directory_input(recursive=True, ignore=())  # hidden files are ignored by default
    class Named(luisy.ExternalTask):
        def get_folder_name(self):
            return "named"

    items = Named().output().source_items()
    assert [item.name for item in items] == [".hidden", "a", "b.tar", "sub.d/..x", "sub.d/c"]
    assert all(item.fingerprint.startswith("1-") for item in items)  # size-mtime
    assert items[1].path == str(folder / "a.npy")


def test_directory_input_two_files_one_item_name_is_an_error(luisy_working_dir):
    folder = luisy_working_dir / "tp" / "raw" / "twins"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.arange(3))
    (folder / "a.json").write_text("[1]")

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.directory_input
    class Twins(luisy.ExternalTask):
        def get_folder_name(self):
            return "twins"

    with pytest.raises(Exception, match=r"Twins\(\): a\.json and a\.npy would both be item 'a'; narrow the pattern"):
        Twins().output().source_items()


def test_directory_input_unreadable_file_names_file(luisy_working_dir):
    folder = luisy_working_dir / "tp" / "raw" / "broken"
    folder.mkdir(parents=True)
    (folder / "bad.npy").write_text("not numpy")

    @luisy.project_name("tp")
    @luisy.raw
    @luisy.directory_input
    class Broken(luisy.ExternalTask):
        def get_folder_name(self):
            return "broken"

    with pytest.raises(Exception, match=r"Broken\(\): cannot read .*bad\.npy"):
        list(Broken().read())


def test_parquetdir_output(luisy_working_dir):
    @luisy.project_name("tp")
    @luisy.interim
    @luisy.parquetdir_output
    class Parts(luisy.ExternalTask):
        def get_folder_name(self):
            return "parts"

    folder = luisy_working_dir / "tp" / "interim" / "parts"
    folder.mkdir(parents=True)
    pd.DataFrame({"x": [3, 4]}, index=[7, 8]).to_parquet(folder / "part-1.parquet")
    pd.DataFrame({"x": [1, 2]}).to_parquet(folder / "part-0.parquet")
    (folder / "_SUCCESS").write_text("")
    assert Parts().read()["x"].tolist() == [1, 2, 3, 4]
    assert Parts().read().index.tolist() == [0, 1, 2, 3]

    @luisy.project_name("tp")
    @luisy.interim
    @luisy.parquetdir_output(outdir="written")
    class Writes(luisy.Task):
        def run(self):
            self.write(pd.DataFrame({"y": [1]}))

    assert luisy.build(Writes(), log_level="WARNING")
    assert Writes().output().path == str(luisy_working_dir / "tp" / "interim" / "written")
    assert Writes().read()["y"].tolist() == [1]


def test_parquetdir_output_needs_a_folder_name():
    with pytest.raises(ValueError, match="must define get_folder_name"):
        @luisy.parquetdir_output
        class NoName(luisy.Task):
            pass


PLAIN_PROJECT = {"plainpkg/__init__.py": "", "plainpkg/tasks.py": '''
    import luisy


    @luisy.interim
    @luisy.json_output
    class Count(luisy.Task):
        def run(self):
            self.write({"n": 21})


    @luisy.final
    @luisy.requires(Count)
    @luisy.json_output
    class Twice(luisy.Task):
        def run(self):
            self.write({"twice": self.input().read()["n"] * 2})
'''}


def _plain_project(tmp_path: Path) -> tuple[Path, Path]:
    write_project(tmp_path, PLAIN_PROJECT)
    (tmp_path / "data").mkdir()
    assert run_luisy(["run", "plainpkg.tasks:Twice"], cwd=tmp_path, timeout=120).returncode == 0
    count, twice = (next((tmp_path / "data").rglob(name)) for name in ("Count.json", "Twice.json"))
    count.unlink()
    twice.unlink()
    return count, twice


def test_a_fifo_in_place_of_a_file_output_is_no_output_and_the_run_replaces_it(tmp_path):
    count, twice = _plain_project(tmp_path)
    os.mkfifo(count)
    result = run_luisy(["run", "plainpkg.tasks:Twice"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert count.is_file() and json.loads(count.read_text()) == {"n": 21}
    assert json.loads(twice.read_text()) == {"twice": 42}


def test_a_folder_in_place_of_a_file_output_is_kept_and_named_in_one_line(tmp_path):
    count, twice = _plain_project(tmp_path)
    count.mkdir()
    (count / "notes.txt").write_text("someone's")
    result = run_luisy(["run", "plainpkg.tasks:Twice"], cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{count} is a folder where a file belongs: remove it, then run again" in result.stdout + result.stderr
    assert (count / "notes.txt").read_text() == "someone's" and not twice.exists()
    assert [p.name for p in count.parent.iterdir()] == ["Count.json"]  # no temporary file left
