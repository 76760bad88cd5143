from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import luigi
import pytest

import luisy
from luisy.errors import UnsafePathError
from luisy.helpers import get_string_repr


@luisy.project_name("proj")
class Plain(luisy.Task):
    a = luisy.IntParameter(default=1)
    b = luisy.Parameter(default="x")


@luisy.interim
@luisy.project_name("proj")
class Listy(luisy.Task):
    items = luisy.ListParameter(default=[1, [2, 3]])
    when = luisy.DateParameter(default=None)
    name = luisy.Parameter(default="a b/c")
    secret = luisy.Parameter(default="pw", significant=False)


@luisy.final
@luisy.project_name("proj")
@luisy.auto_filename(excl_params=["skip"], excl_none=True)
class Excluding(luisy.Task):
    keep = luisy.IntParameter(default=3)
    skip = luisy.IntParameter(default=4)
    maybe = luisy.OptionalParameter(default=None)


@luisy.raw
@luisy.project_name("proj")
@luisy.xlsx_output
class Named(luisy.Task):
    file = luisy.Parameter(default="my")
    sub = luisy.Parameter(default="")

    def get_file_name(self):
        return self.file

    def get_sub_dir(self):
        return self.sub


class Namespaced(luisy.Task):
    task_namespace = "ABC"
    n = luisy.IntParameter(default=2)


def test_layer_path(luisy_working_dir):
    path = Path(Listy().output().path)
    assert path.parent == luisy_working_dir / "proj" / "interim"
    # 1.x's rendering, plus a hash where it could be shared: [1, [2, 3]] and [1, 2, 3] both render
    # as 1_2_3, "a b/c" and "a_b_c" as a_b_c.
    assert re.fullmatch(r"Listy_items=1_2_3~[0-9a-f]{8}_name=a_b_c~[0-9a-f]{8}_when=None\.pkl", path.name), path.name
    assert Path(Listy(items=[1, 2, 3], name="a_b_c").output().path).name == "Listy_items=1_2_3_name=a_b_c_when=None.pkl"


def test_no_layer_path_has_no_project_folder(luisy_working_dir):
    assert Plain().output().path == str(luisy_working_dir / "Plain_a=1_b=x.pkl")


def test_excl_params_and_excl_none(luisy_working_dir):
    assert Excluding().output().path == str(luisy_working_dir / "proj" / "final" / "Excluding_keep=3.pkl")
    assert Excluding(maybe="m").get_file_name() == "Excluding_keep=3_maybe=m"


def test_namespace_in_family():
    assert Namespaced().get_file_name() == "ABC.Namespaced_n=2"


def test_extension_not_doubled_and_other_extension_kept(luisy_working_dir):
    raw = luisy_working_dir / "proj" / "raw"
    assert Named(file="my.xlsx").output().path == str(raw / "my.xlsx")
    assert Named(file="my").output().path == str(raw / "my.xlsx")
    assert Named(file="my.pkl").output().path == str(raw / "my.pkl.xlsx")


def test_sub_dir(luisy_working_dir):
    assert Named(sub="deep/er").output().path == str(luisy_working_dir / "proj" / "raw" / "deep" / "er" / "my.xlsx")


@pytest.mark.parametrize("file,sub", [("../escape", ""), ("my", "../../up"), ("/etc/passwd", ""), ("my", "/abs"),
                                      ("bad\0name", "")])
def test_escaping_names_are_rejected_naming_task_and_parameter(luisy_working_dir, file, sub):
    task = Named(file=file, sub=sub)
    with pytest.raises(ValueError, match=r"Named\(.*parameter '(file|sub)'"):
        task.output()
    assert list(luisy_working_dir.iterdir()) == []


def test_nul_in_auto_filename_names_parameter(luisy_working_dir):
    with pytest.raises(UnsafePathError, match="parameter 'b' contains a NUL byte"):
        Plain(b="x\0y").output()


def test_computing_a_path_creates_nothing(luisy_working_dir):
    Listy().output()
    Excluding().output().exists()
    assert list(luisy_working_dir.iterdir()) == []


@pytest.mark.parametrize("value,expected", [
    (None, "None"), ([1, 2], "1_2"), ((1, (2, [3])), "1_2_3"), ("a b/c", "a_b_c"), (1.5, "1.5"),
    ({"k": [1, 2]}, "k=1_2"), (True, "True"),
])
def test_get_string_repr(value, expected):
    assert get_string_repr(value) == expected


def test_default_project_name_is_top_level_package():
    cls = type("InPkg", (luisy.Task,), {"__module__": "mypkg.sub.tasks"})
    assert luisy.paths.project_name_of(cls) == "mypkg"


def test_project_name_of_script_is_its_stem(tmp_path):
    script = tmp_path / "my_analysis.py"
    script.write_text(
        "import luisy\n"
        "@luisy.raw\nclass T(luisy.Task):\n    pass\n"
        f"luisy.set_working_dir({str(tmp_path)!r})\n"
        "print(T().output().path)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tmp_path / "my_analysis" / "raw" / "T.pkl")


def test_luigi_parameter_classes_are_reexported():
    for name in ("Parameter", "IntParameter", "FloatParameter", "BoolParameter", "DateParameter",
                 "DateIntervalParameter", "MonthParameter", "ListParameter", "TupleParameter",
                 "DictParameter", "ChoiceParameter", "EnumParameter", "PathParameter"):
        assert getattr(luisy, name) is getattr(luigi, name)


def test_parse_file_name_reverses_auto_file_name():
    from luisy.paths import parse_file_name

    for task in (Plain(a=3, b="y"), Plain(), Listy(items=[1, 2], name="n")):
        kwargs = parse_file_name(type(task), task.get_file_name())
        assert type(task)(**kwargs).get_file_name() == task.get_file_name(), kwargs
    assert parse_file_name(Plain, "Other_a=1") is None
    assert parse_file_name(Plain, "Plain_a=notanint_b=x") is None
