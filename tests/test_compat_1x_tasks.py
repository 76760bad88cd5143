"""luisy 1.x's task API kept: get_outdir, logger, project_name, get_related_instances, visualize,
layered WrapperTasks, ConcatenationTask's index.

Differential tests run one script against luisy 1.4.7 and this luisy and compare the answers;
plain tests cover what 1.x did not do (or did wrong).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import tempfile
import unittest
import unittest.mock
from pathlib import Path

import luigi
import pandas as pd
import pytest
from luisy1 import run_both

import luisy
import luisy.helpers
from luisy.errors import InstanceLookupError, MissingExtraError, NoOutputError
from luisy.plan import plan
from luisy.status import status
from luisy.visualize import label, layers

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "shop/__init__.py": "",
    "shop/tasks.py": '''
        import os

        import luigi
        import pandas as pd

        import luisy
        from luisy.decorators import project_name


        @luisy.raw
        @luisy.csv_output
        class Orders(luisy.ExternalTask):
            region = luisy.Parameter()

            def get_sub_dir(self):
                return self.region

            def get_file_name(self):
                return "orders_%s" % self.region


        @luisy.interim
        class Daily(luisy.Task):
            region = luisy.Parameter()
            year = luisy.IntParameter(default=2024)

            def run(self):
                self.write(self.year)


        @project_name("reports")
        @luisy.final
        class Report(luisy.Task):
            region = luisy.Parameter()
            version = luisy.IntParameter(default=1)

            def get_sub_dir(self):
                return str(self.version)

            def get_file_name(self):
                return "report_%s" % self.region


        class Unlayered(luisy.Task):
            def get_sub_dir(self):
                return "scratch"


        class PlainFile(luigi.Task):
            outdir = luigi.Parameter()

            def output(self):
                return luigi.LocalTarget(os.path.join(self.outdir, "plain.txt"))

            def run(self):
                with self.output().open("w") as f:
                    f.write("written by luigi")


        @luisy.interim
        class UsesPlain(luisy.Task):
            def requires(self):
                return PlainFile(outdir=self.get_outdir())

            def run(self):
                self.logger.info("reading %s", self.input().path)
                with self.input().open() as f:
                    self.write(f.read())


        @luisy.interim
        class Part(luisy.Task):
            month = luisy.IntParameter()

            def run(self):
                index = pd.date_range("2024-%02d-01" % self.month, periods=2, freq="D")
                self.write(pd.DataFrame({"v": [self.month, self.month * 10]}, index=index))


        @luisy.final
        class Year(luisy.ConcatenationTask):
            def requires(self):
                return [Part(month=1), Part(month=2)]


        @luisy.final
        class Both(luisy.WrapperTask):
            def requires(self):
                return {"jan": Part(month=1), "feb": Part(month=2)}


        @luisy.final
        class Summary(luisy.Task):
            def requires(self):
                return {"year": Year(), "both": Both(), "orders": Orders(region="north")}
    ''',
}

HEADER = '''
import json
import os

import luigi

from shop.tasks import *

WD = os.environ["WORKING_DIR"]


def rel(path):
    return os.path.relpath(path, WD)


def files(below):
    return sorted(rel(os.path.join(root, f)) for root, _, names in os.walk(os.path.join(WD, below)) for f in names)
'''


def _compare(luisy1_python, tmp_path, script, env=None):
    old, now = run_both(luisy1_python, PROJECT, HEADER + script, tmp_path, env)
    assert old.returncode == 0 and old.answer is not None, old.stderr[-3000:]
    assert now.returncode == 0 and now.answer is not None, now.stderr[-3000:]
    assert now.answer == old.answer
    return now.answer


def test_get_outdir_project_name_and_logger_as_in_1x(luisy1_python, tmp_path):
    answer = _compare(luisy1_python, tmp_path, '''
tasks = [Orders(region="north"), Daily(region="north"), Report(region="n"), Unlayered(), UsesPlain()]
built = luigi.build([UsesPlain()], local_scheduler=True, log_level="WARNING")
print(json.dumps({
    "outdir": {t.get_task_family(): rel(t.get_outdir()) for t in tasks},
    "next_to_output": [os.path.dirname(t.output().path) == os.path.normpath(t.get_outdir()) for t in tasks],
    "project_name": {t.get_task_family(): t.project_name for t in tasks},
    "logger": {t.get_task_family(): t.logger.name for t in tasks},
    "built": built,
    "plain_file": rel(UsesPlain().input().path),
    "read": UsesPlain().read(),
}))
''')
    assert answer["outdir"] == {"Orders": "shop/raw/north", "Daily": "shop/interim", "Report": "reports/final/1",
                                "Unlayered": "scratch", "UsesPlain": "shop/interim"}
    assert answer["project_name"]["Daily"] == "shop" and answer["project_name"]["Report"] == "reports"
    assert answer["plain_file"] == "shop/interim/plain.txt" and answer["read"] == "written by luigi"


def test_get_related_instances_as_in_1x(luisy1_python, tmp_path):
    answer = _compare(luisy1_python, tmp_path, '''
import pandas as pd
import luisy.helpers

for region in ("north", "south"):
    Orders(region=region).write(pd.DataFrame({"n": [1]}))
    Report(region=region, version=2 if region == "south" else 1).write("report")
    for year in (2023, 2024):
        Daily(region=region, year=year).write(year)
with open(os.path.join(Daily(region="x").get_outdir(), "notes.txt"), "w") as f:
    f.write("not an output")


def found(instances):
    return sorted([rel(t.output().path), {k: str(v) for k, v in t.param_kwargs.items()}] for t in instances)


print(json.dumps({
    "Orders": found(Orders.get_related_instances()),
    "Daily": found(Daily.get_related_instances()),
    "Report": found(luisy.helpers.get_related_instances(Report)),
}))
''')
    assert [path for path, _ in answer["Orders"]] == ["shop/raw/north/orders_north.csv",
                                                      "shop/raw/south/orders_south.csv"]
    assert len(answer["Daily"]) == 4
    assert answer["Report"] == [["reports/final/1/report_north.pkl", {"region": "north", "version": "1"}],
                                ["reports/final/2/report_south.pkl", {"region": "south", "version": "2"}]]


def test_layered_wrapper_task_and_concatenation_index_as_in_1x(luisy1_python, tmp_path):
    answer = _compare(luisy1_python, tmp_path, '''
import luisy

before = Both().complete()
built = luigi.build([Both(), Year()], local_scheduler=True, log_level="WARNING")
year = Year().read()
print(json.dumps({
    "is_luisy_task": isinstance(Both(), luisy.Task),
    "is_luigi_wrapper": isinstance(Both(), luigi.WrapperTask),
    "complete": [before, Both().complete()],
    "built": built,
    "read": {k: v["v"].tolist() for k, v in Both().read().items()},
    "outdir": rel(Both().get_outdir()),
    "final_files": files("shop/final"),
    "index": [type(year.index).__name__, [str(t) for t in year.index]],
    "values": year["v"].tolist(),
}))
''')
    assert answer["is_luisy_task"] and answer["is_luigi_wrapper"] and answer["complete"] == [False, True]
    assert answer["final_files"] == ["shop/final/Year.pkl"], "a WrapperTask writes nothing"
    assert answer["index"][0] == "DatetimeIndex"


def test_visualize_labels_as_in_1x(luisy1_python, tmp_path):
    answer = _compare(luisy1_python, tmp_path, '''
import matplotlib.pyplot as plt


def labels(**options):
    _, ax = plt.subplots()
    Summary().visualize(ax=ax, **options)
    return sorted(t.get_text() for t in ax.texts if t.get_text())


print(json.dumps({
    "default": labels(),
    "all_children": labels(unique_children=False),
    "without_month": labels(unique_children=False, parameters_to_exclude=["month"]),
}))
''', env={"MPLBACKEND": "Agg"})
    assert answer["default"] == ["Both", "Orders\nregion=north", "Part\nmonth=1", "Summary", "Year"]
    assert "Part\nmonth=2" in answer["all_children"]
    assert answer["without_month"] == ["Both", "Orders\nregion=north", "Part", "Summary", "Year"]


# --- What 1.x did not do, or did wrong --------------------------------------------------------------


@luisy.interim
class Sales(luisy.Task):
    """Dates and flags in a custom name, a value inside a sub dir's name: 1.x found none of these."""

    day = luisy.DateParameter()
    shop = luisy.Parameter(default="main")
    net = luisy.BoolParameter(default=False)

    def get_sub_dir(self):
        return f"shop-{self.shop}"

    def get_file_name(self):
        return f"sales_{self.day}_net={self.net}_{self.day}"

    def run(self):
        self.write(str(self.day))


@luisy.interim
class Formatted(luisy.Task):
    number = luisy.IntParameter()

    def get_file_name(self):
        return f"item_{self.number:03d}"


@luisy.interim
class Unnamed(luisy.Task):
    a = luisy.Parameter()
    b = luisy.Parameter()

    def get_file_name(self):
        return f"only_{self.a}"


@luisy.interim
@luisy.auto_filename(excl_none=True)
class Auto(luisy.Task):
    a = luisy.IntParameter()
    tags = luisy.ListParameter(default=[1, 2])
    when = luisy.OptionalParameter(default=None)

    def run(self):
        self.write(self.a)


class Everything(luisy.WrapperTask):
    def requires(self):
        return [Auto(a=1), Auto(a=2)]


class Frame(luisy.Task):
    n = luisy.IntParameter()

    def run(self):
        self.write(pd.DataFrame({"v": [self.n]}, index=pd.to_datetime([f"2024-01-0{self.n}"])))


class Frames(luisy.ConcatenationTask):
    def requires(self):
        return [Frame(n=1), Frame(n=2)]


class WorkingDirTestCase(unittest.TestCase):
    """A fresh working directory on disk for each test."""

    def setUp(self):
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        context = luisy.working_dir(folder.name)
        self.working_dir = Path(context.__enter__())
        self.addCleanup(context.__exit__, None, None, None)


class TestTaskHelpers(WorkingDirTestCase):
    def test_get_outdir_is_the_folder_of_the_output(self):
        task = Sales(day=datetime.date(2024, 3, 1), shop="east")
        self.assertEqual(task.get_outdir(), os.path.dirname(task.output().path))
        self.assertEqual(task.get_outdir(), str(self.working_dir / "test_compat_1x_tasks" / "interim" / "shop-east"))

    def test_logger_is_named_after_the_class(self):
        task = Sales(day=datetime.date(2024, 3, 1))
        self.assertIs(task.logger, logging.getLogger("Sales"))
        with self.assertLogs("Sales", level="INFO"):
            task.logger.info("from run()")

    def test_project_name_defaults_to_the_top_level_package(self):
        self.assertEqual(Sales(day=datetime.date(2024, 3, 1)).project_name, "test_compat_1x_tasks")
        self.assertEqual(Sales.project_name, "test_compat_1x_tasks")

    def test_project_name_decorator_is_kept_and_inherited(self):
        @luisy.project_name("elsewhere")
        @luisy.raw
        class Named(luisy.Task):
            pass

        class Child(Named):
            pass

        for cls in (Named, Child):
            self.assertEqual(cls().project_name, "elsewhere")
            self.assertTrue(cls().output().path.startswith(str(self.working_dir / "elsewhere" / "raw")))
        self.assertEqual(Sales.project_name, "test_compat_1x_tasks", "the parent class keeps its own")


class TestGetRelatedInstances(WorkingDirTestCase):
    def test_dates_flags_and_a_value_used_twice(self):
        made = [Sales(day=datetime.date(2024, 3, d), shop=s, net=n)
                for d, s, n in ((1, "main", False), (2, "east", True), (2, "main", True))]
        self.assertTrue(luisy.build(made, log_level="WARNING"))
        folder = self.working_dir / "test_compat_1x_tasks" / "interim" / "shop-main"
        (folder / "sales_2024-03-01_net=True_2024-03-02.pkl").write_text("the day differs: not an output")
        (folder / "sales_2024-03-09_net=True_2024-03-09.pkl.bak").write_text("not an output")
        (folder / "sales_someday_net=True_someday.pkl").write_text("not a date")

        found = Sales.get_related_instances()
        self.assertEqual(sorted(found, key=str), sorted(made, key=str))
        self.assertEqual(luisy.helpers.get_related_instances(Sales), found)

    def test_regex_placeholder_restricts_the_values(self):
        made = [Sales(day=datetime.date(2024, 3, 1)), Sales(day=datetime.date(2024, 4, 1), shop="east")]
        self.assertTrue(luisy.build(made, log_level="WARNING"))
        self.assertEqual(Sales.get_related_instances(regex_placeholder=r"main|False|2024-03-\d\d"), made[:1])

    def test_regex_placeholder_with_auto_filename(self):
        made = [Auto(a=1), Auto(a=2, tags=["p", "q"]), Auto(a=3, when="x")]
        for task in made:
            task.write(task.a)
        self.assertEqual(Auto.get_related_instances(), made)
        self.assertEqual(Auto.get_related_instances(regex_placeholder=r"\d|1_2"), made[:1])

    def test_a_name_that_does_not_take_any_text_is_a_clear_error(self):
        with self.assertRaisesRegex(InstanceLookupError, r"Formatted.get_related_instances\(\).*placeholder"):
            Formatted.get_related_instances()

    def test_a_required_parameter_missing_from_the_path_is_a_clear_error(self):
        with self.assertRaisesRegex(InstanceLookupError, r"parameters b have no default and do not appear"):
            Unnamed.get_related_instances()

    def test_a_wrapper_task_has_no_related_instances(self):
        self.assertEqual(Everything.get_related_instances(), [])


class TestWrapperTask(WorkingDirTestCase):
    def test_is_a_luisy_task_that_writes_nothing(self):
        self.assertTrue(issubclass(luisy.WrapperTask, luisy.Task))
        self.assertTrue(issubclass(luisy.WrapperTask, luigi.WrapperTask))
        self.assertFalse(Everything().complete())
        self.assertTrue(luisy.build([Everything()], log_level="WARNING"))
        self.assertTrue(Everything().complete())
        self.assertEqual(Everything().read(), [1, 2])
        self.assertFalse((self.working_dir / "test_compat_1x_tasks" / "final").exists())
        with self.assertRaises(NoOutputError):
            Everything().write("anything")

    def test_takes_layer_decorators(self):
        for layer in (luisy.raw, luisy.interim, luisy.final):
            @layer
            class Layered(luisy.WrapperTask):
                def requires(self):
                    return Auto(a=1)

            self.assertEqual(Layered().get_outdir(),
                             str(self.working_dir / "test_compat_1x_tasks" / Layered._luisy_layer))
            self.assertEqual(Layered().output(), [])

    def test_plan_and_status_treat_a_layered_one_as_complete_once_its_requirements_are(self):
        @luisy.final
        class Layered(Everything):
            pass

        self.assertEqual([str(step.task) for step in plan(Layered())],
                         ["Auto(a=1, tags=[1, 2], when=)", "Auto(a=2, tags=[1, 2], when=)", "Layered()"])
        self.assertTrue(luisy.build([Layered()], log_level="WARNING"))
        self.assertEqual(plan(Layered()), [])
        row = {str(r.task): r for r in status(Layered())}["Layered()"]
        self.assertTrue(row.complete)
        self.assertEqual(row.fingerprint, "current")


class TestConcatenationTask(WorkingDirTestCase):
    def test_keeps_the_index_of_the_frames(self):
        self.assertTrue(luisy.build([Frames()], log_level="WARNING"))
        df = Frames().read()
        self.assertIsInstance(df.index, pd.DatetimeIndex)
        self.assertEqual(list(df.index), list(pd.to_datetime(["2024-01-01", "2024-01-02"])))


class TestVisualize(unittest.TestCase):
    def test_draws_labelled_nodes_and_edges_into_an_agg_axis(self):
        matplotlib = pytest.importorskip("matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure()
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        self.assertIs(Everything().visualize(ax=ax, unique_children=False), ax)
        figure.canvas.draw()  # really rendered, not only added
        texts = sorted(t.get_text() for t in ax.texts if t.get_text())
        self.assertEqual(texts, ["Auto\na=1\ntags=(1, 2)\nwhen=None", "Auto\na=2\ntags=(1, 2)\nwhen=None",
                                 "Everything"])
        arrows = [t for t in ax.texts if isinstance(t, matplotlib.text.Annotation) and t.arrow_patch is not None]
        self.assertEqual(len(arrows), 2)
        self.assertFalse(ax.axison)

    def test_requirements_are_drawn_below_and_excluded_parameters_merge_nodes(self):
        rows, edges = layers(Everything(), unique_children=False, parameters_to_exclude=["a", "tags", "when"])
        self.assertEqual(rows, [["Everything"], ["Auto"]])
        self.assertEqual(edges, {("Auto", "Everything")})
        self.assertEqual(label(Auto(a=1), ["tags"]), "Auto\na=1\nwhen=None")

    def test_without_matplotlib_one_line_names_the_extra(self):
        blocked = {name: None for name in ("matplotlib", "matplotlib.pyplot")}
        with unittest.mock.patch.dict(sys.modules, blocked):
            with self.assertRaises(MissingExtraError) as caught:
                Everything().visualize()
        message = caught.exception.format_message()
        self.assertIn("pip install 'luisy[plot]'", message)
        self.assertNotIn("\n", message)
