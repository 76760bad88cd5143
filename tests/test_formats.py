from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest

import luisy
from luisy import targets
from luisy.errors import FormatTypeError, MissingExtraError

DF = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]})


def _task(decorator, name):
    @luisy.project_name("fmt")
    @luisy.interim
    @decorator
    class T(luisy.Task):
        def get_file_name(self):
            return name

    return T()


@pytest.mark.parametrize("decorator,ext", [
    (luisy.csv_output, "csv"), (luisy.parquet_output, "parquet"), (luisy.feather_output, "feather"),
    (luisy.xlsx_output, "xlsx"), (luisy.hdf_output, "hdf"), (luisy.pickle_output, "pkl"),
])
def test_dataframe_formats_round_trip(luisy_working_dir, decorator, ext):
    task = _task(decorator, f"frame_{ext}")
    task.write(DF)
    assert task.output().path.endswith(f"interim/frame_{ext}.{ext}")
    pd.testing.assert_frame_equal(task.read(), DF, check_dtype=False)


def test_json_text_npy_pickle_round_trip(luisy_working_dir):
    cases = [(luisy.json_output, {"a": [1, 2], "b": {"c": None}}), (luisy.json_output, [1, "two"]),
             (luisy.text_output, "héllo\nworld"), (luisy.pickle_output, {"any": {1, 2}})]
    for i, (decorator, obj) in enumerate(cases):
        task = _task(decorator, f"obj{i}")
        task.write(obj)
        assert task.read() == obj
    task = _task(luisy.npy_output, "arr")
    arr = np.arange(12, dtype="float32").reshape(3, 4)
    task.write(arr)
    assert task.output().path.endswith("arr.npy")
    np.testing.assert_array_equal(task.read(), arr)


def test_h5_nested_dict_and_attributes(luisy_working_dir):
    @luisy.project_name("fmt")
    @luisy.h5_output
    class Stack(luisy.Task):
        sigma = luisy.FloatParameter(default=1.5)
        label = luisy.Parameter(default="cells")

    task = Stack()
    obj = {"images": {"raw": np.ones((2, 3)), "mask": np.zeros((2, 3), dtype=bool)},
           "count": 7, "mean": 0.25, "name": "run-1", "series": np.arange(4)}
    task.write(obj)
    back = task.read()
    np.testing.assert_array_equal(back["images"]["raw"], obj["images"]["raw"])
    assert back["images"]["mask"].dtype == bool
    assert back["count"] == 7 and back["mean"] == 0.25 and back["name"] == "run-1"
    np.testing.assert_array_equal(back["series"], np.arange(4))
    assert task.output().attrs() == {"sigma": 1.5, "label": "cells"}

    import h5py
    with h5py.File(task.output().path) as f:
        assert set(f) == {"images", "count", "mean", "name", "series"} and set(f["images"]) == {"raw", "mask"}


def test_h5_plain_array(luisy_working_dir):
    task = _task(luisy.h5_output, "array")
    task.write(np.eye(3))
    np.testing.assert_array_equal(task.read(), np.eye(3))


@pytest.mark.parametrize("decorator,obj,fmt", [
    (luisy.csv_output, {"not": "a frame"}, "csv"), (luisy.json_output, "text", "json"),
    (luisy.npy_output, [1, 2], "npy"), (luisy.text_output, 12, "text"), (luisy.parquet_output, DF.values, "parquet"),
    (luisy.h5_output, {"bad": object()}, "h5"), (luisy.h5_output, {"a/b": 1}, "h5"),
])
def test_wrong_type_is_rejected_before_writing(luisy_working_dir, decorator, obj, fmt):
    task = _task(decorator, "wrong")
    with pytest.raises(TypeError, match=rf"T\(\): {fmt} output takes .*, got "):
        task.write(obj)
    assert list(luisy_working_dir.iterdir()) == [], "nothing may be written, not even a folder"


def test_type_error_is_a_luisy_error(luisy_working_dir):
    with pytest.raises(FormatTypeError):
        _task(luisy.csv_output, "x").write([1])


def test_csv_keywords_are_routed_to_reader_and_writer(luisy_working_dir):
    @luisy.project_name("fmt")
    @luisy.csv_output(sep=";", usecols=["a", "c"], decimal=",")
    class Semi(luisy.Task):
        pass

    task = Semi()
    task.write(DF)  # usecols must not reach DataFrame.to_csv, or this raises
    with open(task.output().path) as f:
        assert f.readline().strip() == "a;b;c" and f.readline().strip() == "1;x;0,5"
    pd.testing.assert_frame_equal(task.read(), DF[["a", "c"]])


def test_unknown_keyword_of_a_target_made_directly_is_named(luisy_working_dir):
    target = targets.JSONTarget(luisy_working_dir / "kw.json", colour="red")
    with pytest.raises(TypeError, match="json output does not take the keyword argument 'colour'"):
        target.write({})


def test_parquet_keywords(luisy_working_dir):
    task = _task(luisy.parquet_output(columns=["b"], compression="gzip"), "kw")
    task.write(DF)
    pd.testing.assert_frame_equal(task.read(), DF[["b"]])


@pytest.mark.parametrize("decorator,module,extra", [
    (luisy.xlsx_output, "openpyxl", "excel"), (luisy.hdf_output, "tables", "hdf"), (luisy.h5_output, "h5py", "h5"),
])
def test_missing_optional_dependency_names_the_extra(luisy_working_dir, monkeypatch, decorator, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail, as if not installed
    task = _task(decorator, "needs_extra")
    obj = {"a": np.ones(2)} if extra == "h5" else DF
    with pytest.raises(ImportError, match=rf"pip install 'luisy\[{extra}\]'") as info:
        task.write(obj)
    assert isinstance(info.value, MissingExtraError)
    assert not os.path.exists(task.output().path)


def test_failed_write_leaves_no_file_and_keeps_old_output(luisy_working_dir):
    task = _task(luisy.pickle_output, "atomic")
    task.write({"version": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        task.write({"version": 2, "bad": Unpicklable()})
    assert task.read() == {"version": 1}
    assert sorted(p.name for p in (luisy_working_dir / "fmt" / "interim").iterdir()) == ["atomic.pkl"]


def test_targets_1x_constructors(tmp_path):
    for cls, obj in [(targets.PickleTarget, {"x": 1}), (targets.JSONTarget, {"x": 1}), (targets.TextTarget, "t")]:
        target = cls(path=str(tmp_path / f"out.{cls.file_format.ext}"))
        target.write(obj)
        assert target.exists() and target.read() == obj
    target = targets.CSVTarget(path=tmp_path / "f.csv", sep="|")
    target.write(DF)
    pd.testing.assert_frame_equal(target.read(), DF)
    target = targets.ParquetTarget(path=tmp_path / "f.parquet")
    target.write(DF)
    pd.testing.assert_frame_equal(target.read(), DF)


def _images(folder):
    """One file per kind of image scikit-image reads differently (plain 8-bit ones and converted ones)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 255, (9, 7, 1), dtype=np.uint8)
    plain = {
        "l.png": Image.fromarray(rgb[..., 0]), "la.png": Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"),
        "rgb.png": Image.fromarray(rgb), "rgba.png": Image.fromarray(np.dstack([rgb, alpha])),
        "rgb.jpg": Image.fromarray(rgb), "l.jpeg": Image.fromarray(rgb[..., 0]), "rgb.bmp": Image.fromarray(rgb),
    }
    converted = {
        "p.png": Image.fromarray(rgb).convert("P"), "bw.png": Image.fromarray(rgb[..., 0]).convert("1"),
        "i16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 250),
    }
    for name, image in {**plain, **converted}.items():
        image.save(folder / name)
        yield folder / name
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(folder / "anim.png", save_all=True, append_images=frames[1:])
    yield folder / "anim.png"


def test_images_read_as_scikit_image_reads_them(tmp_path):
    import skimage.io

    from luisy import formats

    for path in _images(tmp_path):
        expected = skimage.io.imread(path)
        got = formats.for_path(path).read(path)
        assert got.dtype == expected.dtype and got.shape == expected.shape, path.name
        np.testing.assert_array_equal(got, expected, err_msg=path.name)
        assert got.flags.writeable, path.name


def _outcome(read, *args, **kwargs):
    try:
        return read(*args, **kwargs)
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError: the same type at the same place
        return type(error), getattr(error, "start", getattr(error, "pos", None))


def _python_reads(path, parse, **options):
    with open(path, encoding="utf-8") as f:
        return parse(f, **options)


@pytest.mark.parametrize("data", [b"one\r\ntwo\rthree\n", "h\u00e9llo".encode(), b"\xef\xbb\xbf[1]", b"[1, \xff]", b"",
                                  b'{"a": "line\r\nbreak"}', b"  [1,\r\n 2]  "])
@pytest.mark.parametrize("name,parse,options", [("t.txt", lambda f: f.read(), {}), ("j.json", json.load, {}),
                                                ("j.json", json.load, {"object_pairs_hook": list})])
def test_text_and_json_read_as_python_reads_them_in_text_mode(tmp_path, data, name, parse, options):
    from luisy import formats

    path = tmp_path / name
    path.write_bytes(data)
    assert _outcome(formats.for_path(path).read, path, **options) == _outcome(_python_reads, path, parse, **options)


def test_a_large_pickle_is_read_from_the_file_a_small_one_from_its_bytes(tmp_path):
    from luisy import formats

    small, large = {"n": 1}, {"xs": bytes(range(256)) * 8192}  # 2 MiB
    for name, obj in (("small.pkl", small), ("large.pkl", large)):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f)
    sizes = [os.path.getsize(tmp_path / n) for n in ("small.pkl", "large.pkl")]
    assert sizes[0] <= formats.Pickle.loads_up_to < sizes[1]
    assert [formats.for_path(tmp_path / n).read(tmp_path / n) for n in ("small.pkl", "large.pkl")] == [small, large]


def test_a_json_files_bytes_are_let_go_before_its_text_is_parsed(tmp_path):
    import tracemalloc

    from luisy import formats

    size = 16 << 20
    path = tmp_path / "big.json"
    path.write_text(json.dumps(["x" * size]))
    tracemalloc.start()
    try:
        obj = formats.for_path(path).read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert obj == ["x" * size]
    # The bytes and the text, then the text and the parsed string: two copies at a time, not three.
    assert peak < 2.5 * size, f"{peak / size:.2f} copies of the file held at once"
