"""The README's tutorial and example pipeline do what the README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import nested_pytest, run_luisy

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _readme_module(root: Path, module: str) -> None:
    """Write the README's code block that starts with ``# mypkg/<module>.py`` into ``root``."""
    code = re.search(rf"```python\n(# mypkg/{module}.py\n.*?)```", README, re.S).group(1)
    (root / "mypkg").mkdir(exist_ok=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / f"{module}.py").write_text(code)


def _tutorial(root: Path) -> None:
    """The README's tutorial project with its raw export in ``root/data``."""
    _readme_module(root, "tasks")
    raw = root / "data" / "mypkg" / "raw"
    raw.mkdir(parents=True)
    (raw / "export.csv").write_text("product;units\na;1\nb;3\nc;5\n")


def _help_examples(*command: str) -> list[list[str]]:
    """The example command lines of ``luisy COMMAND --help``, without ``luisy`` and comments."""
    text = run_luisy([*command, "--help"], cwd=ROOT).stdout
    block = text.split("Example:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("#")[0].split()[1:] for line in block.splitlines()]


def test_readme_tutorial(tmp_path):
    _tutorial(tmp_path)

    command = re.search(r"```bash\n(luisy run mypkg\.tasks:Report [^\n#]*)", README).group(1).split()
    result = run_luisy(command[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    listed = re.search(r"writes\n\n```\n(.*?)```", README, re.S).group(1).split()
    for rel in listed:
        assert (tmp_path / rel).is_file(), rel
    report = json.loads((tmp_path / listed[-1]).read_text())
    assert report == {"rows": 2, "units": 8}


def test_example_pipeline(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LUISY_WORKING_DIR", None)
    wd = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "examples.sales.make_data", "--working-dir", str(wd)], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    result = run_luisy(["run", "examples.sales.tasks:Everything", "--working-dir", str(wd)], cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(next((wd / "sales" / "final").glob("SalesReport_*.json")).read_text())
    assert set(report["revenue_by_region"]) == {"north", "south", "east", "west"}
    assert report["total_revenue"] == round(sum(report["revenue_by_region"].values()), 2)
    again = run_luisy(["run", "examples.sales.tasks:Everything", "--working-dir", str(wd)], cwd=tmp_path,
                      env={"PYTHONPATH": str(ROOT)})
    assert again.returncode == 0 and "ran:" not in again.stdout


@pytest.mark.slow
def test_images_example_and_incremental_rerun(tmp_path):
    env = {"PYTHONPATH": str(ROOT)}
    wd = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "examples.images.make_data", "--working-dir", str(wd), "--count", "12"],
                   cwd=tmp_path, env={**os.environ, **env}, check=True, capture_output=True)
    command = ["run", "examples.images.tasks:Everything", "--working-dir", str(wd), "--sigma", "1.5"]
    result = run_luisy(command, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    import h5py
    import pandas as pd

    table = pd.read_parquet(next((wd / "images" / "final").glob("FeatureTable_*.parquet")))
    assert len(table) == 12 and (table["blobs"] >= 1).all()
    with h5py.File(next((wd / "images" / "final").glob("ImageStack_*.h5"))) as stack:
        assert stack["masks"].shape == (12, 64, 64)
        assert stack.attrs["sigma"] == 1.5 and stack.attrs["min_area"] == 4

    # The README's `luisy history` and `luisy show`, on the example's default parameters.
    shown = re.search(r"```bash\n(luisy history[^\n]*)\n(luisy show [^\n]*)\n```", README)
    history = run_luisy(shown.group(1).split("#")[0].split()[1:] + ["--working-dir", str(wd)], cwd=tmp_path)
    assert history.returncode == 0 and history.stdout.splitlines()[0].split()[:4] == ["started", "(UTC)", "duration",
                                                                                       "state"]
    assert {line.split()[4].split("(")[0] for line in history.stdout.splitlines()[1:]} == {
        "Segmented", "FeatureTable", "ImageStack", "Statistics"}
    default = run_luisy(["run", "examples.images.tasks:Everything", "--working-dir", str(wd)], cwd=tmp_path, env=env)
    assert default.returncode == 0, default.stdout + default.stderr
    show = run_luisy(shown.group(2).split()[1:], cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "  task:          FeatureTable(sigma=1.0, min_area=4)  (examples.images.tasks:FeatureTable)" in show.stdout
    assert "  written by:    run " in show.stdout and "(as recorded)" in show.stdout
    for example in _help_examples("show"):  # they name files the example's default run writes
        shown_example = run_luisy(example, cwd=tmp_path)
        assert shown_example.returncode == 0, (example, shown_example.stderr)

    segmented = next((wd / "images" / "interim").glob("Segmented_*sigma=1.5*"))
    before = {p.name: p.stat().st_mtime_ns for p in segmented.glob("*.pkl")}
    raw = wd / "images" / "raw" / "images"
    (raw / "extra.png").write_bytes((raw / "img_0003.png").read_bytes())
    again = run_luisy(command, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {p.name: p.stat().st_mtime_ns for p in segmented.glob("*.pkl")}
    assert set(after) == set(before) | {"extra.pkl"}
    assert all(after[name] == mtime for name, mtime in before.items()), "only the new image is processed"
    assert len(pd.read_parquet(next((wd / "images" / "final").glob("FeatureTable_*.parquet")))) == 13
    # The reduce at the end folds in only the new image.
    assert re.search(r"reduce: Statistics\(.*\): 1 folded, 0 unfolded", again.stdout), again.stdout
    statistics = json.loads(next((wd / "images" / "final").glob("Statistics_*sigma=1.5*.json")).read_text())
    copied = table.set_index("image").loc["img_0003", "blobs"]  # extra.png is a copy of img_0003.png
    assert statistics["images"] == 13 and statistics["blobs"] == table["blobs"].sum() + copied


def test_the_pytest_example_of_the_testing_docs_passes_on_the_tutorial(tmp_path):
    _readme_module(tmp_path, "tasks")
    docs = (ROOT / "docs" / "testing.rst").read_text()
    snippet = re.search(r"``luisy_working_dir``.*?\.\. code-block:: python\n\n(.*?)\n\S", docs, re.S).group(1)
    (tmp_path / "test_report.py").write_text("\n".join(line[3:] for line in snippet.splitlines()))
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    result = nested_pytest(["test_report.py"], tmp_path, tmp_path, {**env, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr


def test_the_top_level_help_examples_run_on_the_tutorial(tmp_path):
    _tutorial(tmp_path)
    examples = _help_examples()
    assert [example[0] for example in examples] == ["run", "plan", "run"]
    for example in examples:
        result = run_luisy(example, cwd=tmp_path)
        assert result.returncode == 0, (example, result.stdout + result.stderr)
    assert (tmp_path / "data" / "mypkg" / "final" / "Report_min_units=3.json").is_file()
    assert "--min-units INT  [default: 1]" in result.stdout, "the last example shows the task's parameters"


def _readme_images(root: Path, count: int = 3) -> Path:
    """The README's directory task with ``count`` RGB PNGs in its input folder; returns the data folder."""
    import numpy as np
    from PIL import Image

    _readme_module(root, "images")
    folder = root / "data" / "mypkg" / "raw" / "images"
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((4, 6, 3), 40 * i, np.uint8)).save(folder / f"img_{i}.png")
    return root / "data"


def test_readme_directory_task(tmp_path):
    data = _readme_images(tmp_path)
    commands = re.search(r"```bash\n(luisy run mypkg\.images:Gray\n.*?)```", README, re.S).group(1)
    results = [run_luisy(line.split("#")[0].split()[1:], cwd=tmp_path) for line in commands.splitlines()]
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results]
    gray = data / "mypkg" / "interim" / "Gray"
    assert sorted(p.name for p in gray.glob("*.npy")) == ["img_0.npy", "img_1.npy", "img_2.npy"]
    import numpy as np

    assert np.load(gray / "img_2.npy").tolist() == [[80.0] * 6] * 4
    assert "Parameters of Gray (mypkg.images:Gray):" in results[1].stdout


@pytest.mark.slow
def test_the_local_cluster_example_of_the_cluster_docs(tmp_path):
    """The script of docs/cluster.rst, run as written on the README's directory task."""
    data = _readme_images(tmp_path)
    docs = (ROOT / "docs" / "cluster.rst").read_text()
    block = re.search(r"\.\. code-block:: python\n\n(   # run_gray\.py\n.*?)(?:\n\S|\Z)", docs, re.S).group(1)
    (tmp_path / "run_gray.py").write_text("\n".join(line[3:] for line in block.splitlines()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    result = subprocess.run([sys.executable, "run_gray.py"], cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((data / "mypkg" / "interim" / "Gray").glob("*.npy"))) == 3
