"""A project written for luisy 1.x runs unchanged: both CLI forms, luigi.build, LuisyTestCase."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import nested_pytest, run_luisy, write_project

from luisy.history import journal

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "oldproj/__init__.py": "",
    "oldproj/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.csv_output(sep=";", decimal=",")
        class RawMeasurements(luisy.ExternalTask):
            site = luisy.Parameter()

            def get_file_name(self):
                return "measurements_%s" % self.site


        @luisy.interim
        @luisy.requires(RawMeasurements)
        @luisy.auto_filename(excl_params=["debug"])
        class Cleaned(luisy.Task):
            debug = luisy.BoolParameter(default=False)
            thresholds = luisy.ListParameter(default=[1, 5])

            def run(self):
                df = self.read_input()
                lo, hi = self.thresholds
                self.write(df[(df["value"] >= lo) & (df["value"] <= hi)].assign(site=self.site))


        @luisy.interim
        @luisy.parquet_output
        class AllSites(luisy.ConcatenationTask):
            sites = luisy.ListParameter(default=["a", "b"])

            def requires(self):
                return [Cleaned(site=s) for s in self.sites]

            def preprocess(self, df):
                return df.sort_values("value").reset_index(drop=True)


        @luisy.interim
        @luisy.json_output
        class Counts(luisy.Task):
            sites = luisy.ListParameter(default=["a", "b"])

            def requires(self):
                return {s: Cleaned(site=s) for s in self.sites}

            def run(self):
                self.write({k: len(v.read()) for k, v in self.input().items()})


        @luisy.final
        @luisy.requires(AllSites, Counts, as_dict=True)
        class Final(luisy.Task):
            def run(self):
                df = self.input()["AllSites"].read()
                self.write({"mean": float(df["value"].mean()), "counts": self.input()["Counts"].read()})


        class Everything(luisy.WrapperTask):
            def requires(self):
                return {"final": Final(), "all": AllSites()}
    ''',
    "oldproj/test_pipeline.py": '''
        import pandas as pd
        from luisy.testing import LuisyTestCase
        from oldproj.tasks import AllSites, Cleaned, Final, RawMeasurements


        class TestFinal(LuisyTestCase):
            def test_with_existing_outputs(self):
                raw = [(RawMeasurements(site=s), pd.DataFrame({"value": [0.5, 2.0, 4.0, 9.0]})) for s in "ab"]
                out = self.run_pipeline(Final(), existing_outputs=raw)
                assert out == {"mean": 3.0, "counts": {"a": 2, "b": 2}}

            def test_upstream_given(self):
                given = [(AllSites(), pd.DataFrame({"value": [1.0, 3.0]})),
                         (Cleaned(site="a"), pd.DataFrame({"value": [1.0]})),
                         (Cleaned(site="b"), pd.DataFrame({"value": [1.0, 2.0]}))]
                assert self.run_pipeline(Final(), existing_outputs=given)["mean"] == 2.0
    ''',
}

EXPECTED = {
    "oldproj/raw/measurements_a.csv", "oldproj/raw/measurements_b.csv",
    "oldproj/interim/Cleaned_site=a_thresholds=1_5.pkl", "oldproj/interim/Cleaned_site=b_thresholds=1_5.pkl",
    "oldproj/interim/AllSites_sites=a_b.parquet", "oldproj/interim/Counts_sites=a_b.json",
    "oldproj/final/Final_sites=a_b.pkl",
}
# One fingerprint record per task that ran (1.x kept them all in oldproj/.luisy.hash).
RECORDS = {"Cleaned_site=a_thresholds=1_5.pkl", "Cleaned_site=b_thresholds=1_5.pkl", "AllSites_sites=a_b.parquet",
           "Counts_sites=a_b.json", "Final_sites=a_b.pkl"}


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path, PROJECT)


def _raw_data(working_dir):
    raw = working_dir / "oldproj" / "raw"
    raw.mkdir(parents=True)
    (raw / "measurements_a.csv").write_text("value;note\n0,5;low\n2,0;ok\n4,5;ok\n")
    (raw / "measurements_b.csv").write_text("value;note\n3,0;ok\n7,0;high\n")


def _files(working_dir):
    return {p.relative_to(working_dir).as_posix() for p in working_dir.rglob("*")
            if p.is_file() and not {".luisy-records", ".luisy-journal"} & set(p.parts)}


def _check_results(working_dir):
    assert _files(working_dir) == EXPECTED
    records = {p.name.split(".")[0].rsplit("~", 1)[1] for p in (working_dir / "oldproj" / ".luisy-records").iterdir()}
    assert {r.split(".")[0] for r in RECORDS} == records
    succeeded = [e for e in journal.events(working_dir) if e.event == journal.SUCCESS]
    assert len(succeeded) >= len(RECORDS), "every task run is in the journal"
    all_sites = pd.read_parquet(working_dir / "oldproj/interim/AllSites_sites=a_b.parquet")
    assert all_sites["value"].tolist() == [2.0, 3.0, 4.5]
    result = pd.read_pickle(working_dir / "oldproj/final/Final_sites=a_b.pkl")
    assert result == {"mean": pytest.approx(9.5 / 3), "counts": {"a": 2, "b": 1}}


def test_1x_cli_form(project):
    wd = project / "wd1"
    _raw_data(wd)
    result = run_luisy(["--module", "oldproj.tasks", "Everything", f"--working-dir={wd}", "--local-scheduler",
                        "--no-ask"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_results(wd)


def test_run_command(project):
    wd = project / "wd2"
    _raw_data(wd)
    result = run_luisy(["run", "oldproj.tasks:Final", "--working-dir", str(wd), "--workers", "2"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'complete: Final(sites=["a", "b"])' in result.stdout
    _check_results(wd)


def test_luigi_build_with_1x_environment_variable(project):
    wd = project / "wd3"
    _raw_data(wd)
    code = ("import luigi; from oldproj.tasks import Everything; "
            "assert luigi.build([Everything()], local_scheduler=True)")
    env = {"WORKING_DIR": str(wd), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], cwd=project, env=env, check=True, capture_output=True)
    _check_results(wd)
    read_back = ("import luisy; from oldproj.tasks import Everything; "
                 "out = Everything().read(); print(sorted(out), out['final']['counts'])")
    out = subprocess.run([sys.executable, "-c", read_back], cwd=project, env=env, check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "['all', 'final'] {'a': 2, 'b': 1}"


def test_luisy_test_case_in_the_project(project, tmp_path):
    working_dir = tmp_path / "wd"
    working_dir.mkdir()
    env = {**os.environ, "WORKING_DIR": str(working_dir)}  # where the project's outputs would land
    result = nested_pytest(["oldproj"], project, tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert list(working_dir.rglob("*")) == [], "LuisyTestCase must keep outputs in memory"
    assert not (project / "data").exists()
