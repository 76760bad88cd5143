"""luigi's private names, each used once in ``luisy.luigi_adapter``, checked against the installed luigi."""

from __future__ import annotations

import enum
from importlib.metadata import version

import luigi
import pytest

import luisy
from luisy import luigi_adapter
from luisy.execution import run


def test_the_installed_luigi_is_one_the_adapter_was_checked_with():
    major_minor = ".".join(version("luigi").split(".")[:2])
    assert major_minor in luigi_adapter.CHECKED, (
        f"luigi {version('luigi')}: check luisy/luigi_adapter.py against it, then add it to CHECKED")


@luisy.project_name("adapt")
class Fine(luisy.Task):
    def run(self):
        self.write("fine")


@luisy.project_name("adapt")
class Broken(luisy.Task):
    def run(self):
        raise ValueError("adapter sees this")


@luisy.project_name("adapt")
@luisy.raw
class Absent(luisy.ExternalTask):
    pass


def test_task_sets_and_the_scheduler_error_of_a_local_build(luisy_working_dir):
    result = run([Fine(), Broken(), Absent()], log_level="CRITICAL").result
    sets = luigi_adapter.task_sets(result)
    assert sets["completed"] == {Fine()} and sets["failed"] == {Broken()} and sets["still_pending_ext"] == {Absent()}
    assert "adapter sees this" in luigi_adapter.scheduler_error(result, Broken())
    assert luigi_adapter.run_elsewhere(result) == []  # one worker: nothing runs elsewhere
    assert not luigi_adapter.done_in_scheduler(result, Broken())
    assert luigi_adapter.done_in_scheduler(result, Fine())


class Color(enum.Enum):
    red = 1
    blue = 2


def test_choices_of_a_choice_and_an_enum_parameter():
    assert luigi_adapter.choices(luigi.ChoiceParameter(choices=["fast", "exact"])) == ["exact", "fast"]
    assert luigi_adapter.choices(luigi.EnumParameter(enum=Color)) == ["red", "blue"]
    assert luigi_adapter.choices(luigi.IntParameter()) == []


def test_build_returns_luigis_flag_and_run_the_summary(luisy_working_dir):
    assert luisy.build([Fine()], log_level="CRITICAL") is True
    summary = run([Fine()], log_level="CRITICAL")
    assert isinstance(summary, luisy.RunSummary) and summary.ok and summary.result.scheduling_succeeded
    with pytest.raises(TypeError, match="luisy.run"):
        luisy.build([Fine()], detailed_summary=True)
