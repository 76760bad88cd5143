"""Where outputs came from: metadata inside parquet and HDF5 files, and ``luisy show`` for each kind of output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_luisy, write_project

import luisy
from luisy import formats
from luisy.fingerprint import records
from luisy.history import journal
from luisy.history.provenance import KEY, read_embedded

PROJECT = {
    "prov/__init__.py": "",
    "prov/tasks.py": '''
        import numpy as np
        import pandas as pd

        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="json")
        class Parsed(luisy.DirectoryTask):
            def process(self, name, obj):
                return {"name": name, "words": len(obj.split())}


        @luisy.final
        @luisy.requires(Parsed)
        @luisy.parquet_output
        class Table(luisy.Task):
            scale = luisy.IntParameter(default=2)

            def run(self):
                self.write(pd.DataFrame([{**item, "scaled": item["words"] * self.scale}
                                         for item in self.input().read()]).set_index("name"))


        @luisy.final
        @luisy.requires(Table)
        @luisy.h5_output
        class Stack(luisy.Task):
            def run(self):
                self.write({"scaled": self.read_input()["scaled"].to_numpy()})


        @luisy.final
        @luisy.requires(Table)
        @luisy.hdf_output
        class Store(luisy.Task):
            def run(self):
                self.write(self.read_input())


        class All(luisy.WrapperTask):
            scale = luisy.IntParameter(default=2)

            def requires(self):
                return [Stack(scale=self.scale), Store(scale=self.scale)]
    ''',
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("prov")
    write_project(root, PROJECT)
    notes = root / "data" / "prov" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"n{i}.txt").write_text("a b c " * (i + 1))
    result = run_luisy(["run", "prov.tasks:All", "--scale", "3"], cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def _show(project, path, *more):
    result = run_luisy(["show", str(path), *more], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _record(project, rel):
    return records.lookup_at(project / "data" / "prov", rel)


def test_show_file_output(project):
    out = _show(project, "data/prov/final/Table_scale=3.parquet")
    record = _record(project, "prov/final/Table_scale=3.parquet")
    assert "  kind:          output file" in out
    assert "  task:          Table(scale=3)  (prov.tasks:Table)" in out
    assert "  parameters:    scale=3" in out
    assert f"  fingerprint:   {record['fingerprint']}" in out
    assert "prov.tasks:Table " in out  # the code's definitions
    upstream = record["upstream"][next(iter(record["upstream"]))]
    assert f"  upstream:      Parsed(): prov/interim/Parsed (fingerprint {upstream})" in out
    run = json.loads(run_luisy(["history", "Table", "--json"], cwd=project).stdout)[0]
    assert f"  written by:    run {run['run']} (task run {run['id']}), SUCCESS" in out
    assert "pandas " + pd.__version__ in out and "luisy " in out and "Python " in out
    assert f"fingerprint {record['fingerprint']} (as recorded)" in out

    data = json.loads(run_luisy(["show", "data/prov/final/Table_scale=3.parquet", "--json"], cwd=project).stdout)
    assert data["kind"] == "file" and data["task"] == "Table(scale=3)"
    assert data["record"]["fingerprint"] == record["fingerprint"] and data["run"]["id"] == run["id"]


def test_show_directory_output_and_item(project):
    folder = project / "data" / "prov" / "interim" / "Parsed"
    out = _show(project, folder)
    assert "  kind:          directory output" in out and "  items:         3 (0 failed)" in out
    assert "  upstream:      Notes(): prov/raw/notes (fingerprint items " in out
    assert "  task:          Parsed()  (prov.tasks:Parsed)" in out

    item = _show(project, folder / "n1.json")
    assert "  kind:          item of a directory output" in item
    assert f"  in:            {folder}" in item
    manifest = luisy.directory.Manifest.load(folder)
    entry = manifest.items["n1"]
    assert f"  item:          'n1': {entry.size} bytes, checksum {entry.checksum}" in item
    assert f"  made from:     data/prov/raw/notes/n1.txt (input fingerprint {entry.source})" in item
    assert f"  written by:    run {manifest.run} " in item


def test_show_refuses_what_luisy_did_not_write(project):
    for path, expected in [
        ("data/prov/raw/notes/n0.txt", "luisy has no record of this output"),
        ("data/prov/nothing.parquet", "no such file or folder"),
        ("data/prov/interim/Parsed/_luisy_manifest.json", "is the manifest of"),
    ]:
        result = run_luisy(["show", path], cwd=project)
        assert result.returncode == 2 and expected in result.stderr and result.stderr.count("\n") == 1, path
    stray = project / "data" / "prov" / "interim" / "Parsed" / "stray.json"
    stray.write_text("{}")
    try:
        result = run_luisy(["show", str(stray)], cwd=project)
        assert result.returncode == 2 and "not an item of" in result.stderr
    finally:
        stray.unlink()


@pytest.mark.parametrize("name", ["Table_scale=3.parquet", "Stack_scale=3.h5", "Store_scale=3.hdf"])
def test_metadata_inside_the_file_survives_a_copy(project, tmp_path, name):
    source = project / "data" / "prov" / "final" / name
    copy = tmp_path / name
    shutil.copy(source, copy)
    embedded = read_embedded(copy)
    record = _record(project, f"prov/final/{name}")
    family = name.split("_")[0]
    assert embedded["family"] == family and embedded["params"] == {"scale": "3"}
    assert embedded["fingerprint"] == record["fingerprint"] and embedded["task"] == f"{family}(scale=3)"
    out = _show(tmp_path, copy)
    assert f"  task:          {family}(scale=3)" in out and "no fingerprint record" in out
    assert f"fingerprint {record['fingerprint']}" in out


def test_readers_ignore_the_metadata(project):
    final = project / "data" / "prov" / "final"
    table = pd.read_parquet(final / "Table_scale=3.parquet")
    assert table.attrs == {} and table.index.name == "name"
    assert list(table["scaled"]) == [9, 18, 27]
    pd.testing.assert_frame_equal(pd.read_hdf(final / "Store_scale=3.hdf", "data"), table)
    import h5py

    with h5py.File(final / "Stack_scale=3.h5") as f:
        assert list(f) == ["scaled"] and KEY in f.attrs
    # luisy's own h5 reader and attrs() (the task's parameters, as in luisy 1.x) leave it out.
    assert formats.H5.read_attrs(final / "Stack_scale=3.h5") == {"scale": 3}
    np.testing.assert_array_equal(formats.H5().read(final / "Stack_scale=3.h5")["scaled"], [9, 18, 27])


def test_round_trip_in_process_with_index_and_options(luisy_working_dir):
    @luisy.final
    @luisy.parquet_output(compression="gzip", index=True)
    class Indexed(luisy.Task):
        label = luisy.Parameter(default="x")

        def run(self):
            self.write(pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["a", "b"], name="key")))

    assert luisy.build(Indexed(label="y"), working_dir=luisy_working_dir)
    path = Indexed(label="y").output().path
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "GZIP"
    back = Indexed(label="y").read()
    pd.testing.assert_frame_equal(back, pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["a", "b"], name="key")))
    assert read_embedded(path)["params"] == {"label": "y"}
    assert read_embedded(path)["fingerprint"] == records.lookup(Indexed(label="y"))["fingerprint"]


@pytest.mark.parametrize("columns", [[0, 1], [("a", "x"), ("a", "y")]], ids=["int names", "tuple names"])
def test_a_frame_whose_column_names_are_not_str_is_still_written(luisy_working_dir, columns):
    frame = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], columns=pd.MultiIndex.from_tuples(columns)
                         if isinstance(columns[0], tuple) else columns)

    @luisy.final
    @luisy.parquet_output
    class Numbered(luisy.Task):
        def run(self):
            self.write(frame)

    assert luisy.build(Numbered(), working_dir=luisy_working_dir)
    back = Numbered().read()
    assert back.to_numpy().tolist() == frame.to_numpy().tolist()
    assert [str(c) for c in back.columns] == [str(c) for c in frame.columns]
    assert records.lookup(Numbered())["provenance"]["family"] == "Numbered", "the record still says where it came from"


def test_show_of_a_task_with_dynamic_requirements_does_not_cry_replaced(luisy_working_dir):
    from luisy.history.show import show

    @luisy.interim
    @luisy.json_output
    class Up(luisy.Task):
        def run(self):
            self.write({"v": 1})

    @luisy.final
    @luisy.parquet_output
    class Dynamic(luisy.Task):
        def run(self):
            up = yield Up()
            self.write(pd.DataFrame({"v": [up.read()["v"]]}))

    assert luisy.build(Dynamic(), working_dir=luisy_working_dir)
    with luisy.working_dir(luisy_working_dir):
        text = "\n".join(show(Dynamic().output().path).lines())
    assert "in the file:" in text and "replaced by hand" not in text, text


# --- Crafted files: `luisy show` never unpickles, and bad input is one line ------------------------

ESC = "\x1b]0;owned\x07\x1b[2J\x9b1m\x7f"  # sets the window title, clears the screen; C1 CSI and DEL


def _no_h5py(tmp_path):
    """Environment for a process in which ``import h5py`` fails, as where only ``luisy[hdf]`` is installed."""
    stub = tmp_path / "no_h5py"
    stub.mkdir(exist_ok=True)
    (stub / "h5py.py").write_text("raise ImportError('h5py is not installed here')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))}


class _OpensMarker:
    """Unpickled, it creates the file ``marker``: what a crafted file can make an unpickler do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _one_line_error(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("luisy: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stdout + result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize("h5py_importable", [True, False], ids=["h5py importable", "h5py not importable"])
def test_show_never_unpickles_the_provenance_of_an_hdf5_file(tmp_path, h5py_importable):
    import tables

    marker = tmp_path / "unpickled"
    crafted = tmp_path / "crafted.h5"
    with tables.open_file(crafted, "w") as f:
        f.root._v_attrs[KEY] = _OpensMarker(marker)  # PyTables pickles what is not an array
    with tables.open_file(crafted) as f:  # the attack is real: PyTables' attribute access runs it
        getattr(f.root._v_attrs, KEY).close()
    assert marker.exists()
    marker.unlink()

    result = run_luisy(["show", str(crafted)], cwd=tmp_path, env=None if h5py_importable else _no_h5py(tmp_path))
    assert not marker.exists(), "luisy show unpickled the file's attribute"
    if h5py_importable:
        _one_line_error(result, f"{crafted}: its {KEY} is not JSON")
    else:
        _one_line_error(result, f"{crafted}: luisy has no record of this output",
                        "reading the provenance inside an HDF5 file needs the package 'h5py': pip install 'luisy[h5]'")


def test_show_without_h5py_shows_the_record_and_says_what_it_cannot_read(project, tmp_path):
    result = run_luisy(["show", "data/prov/final/Store_scale=3.hdf"], cwd=project, env=_no_h5py(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  task:          Store(scale=3)  (prov.tasks:Store)" in result.stdout
    assert ("  note:          reading the provenance inside an HDF5 file needs the package 'h5py'"
            in result.stdout) and "in the file:" not in result.stdout


def _parquet_with(path, value):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({KEY: value}), path)


def _wrong_type(tmp_path):
    _parquet_with(tmp_path / f"crafted{ESC}.parquet", json.dumps({"task": "T", "params": "scale=3"}))
    return "its luisy_provenance field params is a string, not an object"


def _too_deep(tmp_path):
    _parquet_with(tmp_path / f"crafted{ESC}.parquet", "[" * 100_000 + "]" * 100_000)
    return "its luisy_provenance is not JSON (RecursionError)"


def _too_long(tmp_path):
    _parquet_with(tmp_path / f"crafted{ESC}.parquet", json.dumps({"task": "T", "pad": "x" * (17 << 20)}))
    return "its luisy_provenance is longer than the 16 MiB luisy reads"


def _not_a_string(tmp_path):
    import h5py

    with h5py.File(tmp_path / f"crafted{ESC}.h5", "w") as f:
        f.attrs[KEY] = np.arange(3)
    return "its luisy_provenance attribute is a numpy.ndarray, not a string"


@pytest.mark.parametrize("craft", [_wrong_type, _too_deep, _too_long, _not_a_string])
def test_show_refuses_crafted_provenance_in_one_line(tmp_path, craft):
    expected = craft(tmp_path)
    crafted = next(tmp_path.glob("crafted*"))
    result = run_luisy(["show", str(crafted)], cwd=tmp_path)
    _one_line_error(result, expected, f"{tmp_path}/crafted\\x1b]0;owned\\x07\\x1b[2J\\x9b1m\\x7f.")


@pytest.fixture
def copied(project, tmp_path):
    """A copy of the project, to tamper with."""
    return Path(shutil.copytree(project, tmp_path / "copy"))


def _edit_record(root, edit):
    path = records.record_path(root / "data" / "prov", "prov/final/Table_scale=3.parquet")
    path.write_text(edit(json.loads(path.read_text())))
    return path


def _edit_journal(root, edit):
    """Every journal line of ``Table(scale=3)`` edited by ``edit`` (a dict → the new dict)."""
    for path in (root / "data" / journal.JOURNAL_DIR).rglob("*.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(edit(e) if e["task"] == "Table(scale=3)" else e) + "\n" for e in lines))


def test_show_refuses_a_record_of_the_wrong_shape_naming_its_file(copied):
    path = _edit_record(copied, lambda record: json.dumps({**record, "provenance": {"requires": ["Parsed()"]}}))
    result = run_luisy(["show", "data/prov/final/Table_scale=3.parquet"], cwd=copied)
    _one_line_error(result, f"its fingerprint record {path} field provenance.requires[0] is a string, not an object")


@pytest.mark.parametrize("started", [1e308, float("nan"), -1e18], ids=["far future", "NaN", "before 1970"])
def test_show_refuses_a_record_whose_run_started_at_no_time_in_one_line(copied, started):
    def with_started(record):
        record["provenance"]["written_by"]["started"] = started
        return json.dumps(record)

    path = _edit_record(copied, with_started)
    result = run_luisy(["show", "data/prov/final/Table_scale=3.parquet"], cwd=copied)
    _one_line_error(result, f"its fingerprint record {path} field provenance.written_by.started is a number, "
                            "not a time")


def test_show_takes_a_record_nested_too_deeply_for_no_record(copied):
    _edit_record(copied, lambda record: "[" * 100_000 + "]" * 100_000)
    result = run_luisy(["show", "data/prov/final/Table_scale=3.parquet"], cwd=copied)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  task:          Table(scale=3)" in result.stdout  # from the file
    assert "  note:          no fingerprint record" in result.stdout


def test_show_skips_journal_lines_of_the_wrong_types(copied):
    _edit_journal(copied, lambda event: {**event, "started": "yesterday"})
    result = run_luisy(["show", "data/prov/final/Table_scale=3.parquet"], cwd=copied)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(not in the run journal)" in result.stdout


def test_show_escapes_control_characters_from_every_file(copied):
    table = copied / "data" / "prov" / "final" / "Table_scale=3.parquet"
    embedded = read_embedded(table)
    _parquet_with(table, json.dumps({**embedded, "task": f"Table{ESC}"}))

    def with_escapes(record):
        record["provenance"]["class"] = f"prov.tasks:Table{ESC}"
        record["params"] = {f"scale{ESC}": f"3{ESC}"}
        return json.dumps(record)

    _edit_record(copied, with_escapes)
    _edit_journal(copied, lambda event: {**event, "user": f"someone{ESC}"})

    text = run_luisy(["show", str(table)], cwd=copied)
    assert text.returncode == 0, text.stdout + text.stderr
    for control in "\x1b\x07\x9b\x7f":
        assert control not in text.stdout
    escaped = "\\x1b]0;owned\\x07\\x1b[2J\\x9b1m\\x7f"
    assert f"(prov.tasks:Table{escaped})" in text.stdout  # the record
    assert f"  parameters:    scale{escaped}=3{escaped}" in text.stdout
    assert f"UTC, someone{escaped}@" in text.stdout  # the journal
    assert f"  in the file:   Table{escaped}, " in text.stdout  # the file

    as_json = run_luisy(["show", str(table), "--json"], cwd=copied)
    assert "\x1b" not in as_json.stdout and "\x9b" not in as_json.stdout
    data = json.loads(as_json.stdout)
    assert data["embedded"]["task"] == f"Table{ESC}" and data["run"]["user"] == f"someone{ESC}"
