"""The README's tutorial and example pipeline do what the README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import run_luisy

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_tutorial(tmp_path):
    code = re.search(r"```python\n(# mypkg/tasks.py\n.*?)```", README, re.S).group(1)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "tasks.py").write_text(code)
    raw = tmp_path / "data" / "mypkg" / "raw"
    raw.mkdir(parents=True)
    (raw / "export.csv").write_text("product;units\na;1\nb;3\nc;5\n")

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
        "Segmented", "FeatureTable", "ImageStack"}
    default = run_luisy(["run", "examples.images.tasks:Everything", "--working-dir", str(wd)], cwd=tmp_path, env=env)
    assert default.returncode == 0, default.stdout + default.stderr
    show = run_luisy(shown.group(2).split()[1:], cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "  task:          FeatureTable(sigma=1.0, min_area=4)  (examples.images.tasks:FeatureTable)" in show.stdout
    assert "  written by:    run " in show.stdout and "(as recorded)" in show.stdout

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


def test_the_pytest_example_of_the_testing_docs_passes_on_the_tutorial(tmp_path):
    code = re.search(r"```python\n(# mypkg/tasks.py\n.*?)```", README, re.S).group(1)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "tasks.py").write_text(code)
    docs = (ROOT / "docs" / "testing.rst").read_text()
    snippet = re.search(r"``luisy_working_dir``.*?\.\. code-block:: python\n\n(.*?)\n\S", docs, re.S).group(1)
    (tmp_path / "test_report.py").write_text("\n".join(line[3:] for line in snippet.splitlines()))
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_report.py"],
                            cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
