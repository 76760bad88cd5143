"""``luisy COMMAND TASK --help`` lists the task's own parameters (as ``luigi --module m Task --help``
does), then the command's options."""

from __future__ import annotations

import re

import pytest
from conftest import run_luisy, write_project

PROJECT = {
    "helppkg/__init__.py": "",
    "helppkg/tasks.py": '''
        import datetime
        import enum

        import luigi
        import luisy


        class Colour(enum.Enum):
            red = 1
            blue = 2


        @luisy.final
        class Report(luisy.Task):
            """A yearly report.

            More text that the help leaves out.
            """

            year = luisy.IntParameter(default=2024, description="the year to report")
            day = luisy.DateParameter(default=datetime.date(2024, 3, 1))
            region = luisy.Parameter(description="where")
            dry = luisy.BoolParameter()
            mode = luisy.ChoiceParameter(choices=["fast", "exact"], default="exact")
            colour = luisy.EnumParameter(enum=Colour, default=Colour.blue)
            columns = luisy.ListParameter(default=["a", "b"])
            hidden = luisy.Parameter(default="x", visibility=luigi.parameter.ParameterVisibility.PRIVATE)
            from_config = luisy.IntParameter(default=1)

            def run(self):
                self.write(1)


        @luisy.raw
        class Given(luisy.ExternalTask):
            pass
    ''',
    "luigi.cfg": '''
        [Report]
        from_config = 7
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    (tmp_path / "data").mkdir()
    return tmp_path


def _section(stdout: str, title: str) -> list[str]:
    """The lines of a help section, up to the next blank line."""
    lines = stdout.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    # luigi's own description of a ChoiceParameter lists its choices in the order of a set
    return [re.sub(r"Choices: \{(.*?)\}", lambda m: "Choices: {" + ", ".join(sorted(m[1].split(", "))) + "}",
                   " ".join(line.split())) for line in lines[start:end]]


def test_run_task_help_lists_the_task_parameters_then_the_run_options(project):
    result = run_luisy(["run", "helppkg.tasks:Report", "--help"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: luisy run [OPTIONS] TASK [TASK_ARGS]...")
    assert _section(result.stdout, "Parameters of Report (helppkg.tasks:Report):") == [
        "A yearly report.",
        "--year INT the year to report [default: 2024]",
        "--day DATE [default: 2024-03-01]",
        "--region TEXT where [required]",
        "--dry [default: False]",
        "--mode exact|fast Choices: {exact, fast} [default: exact]",  # luigi's own description, sorted below
        "--colour red|blue [default: blue]",
        "--columns LIST [default: [\"a\", \"b\"]]",
        "--from-config INT [default: 7]",
    ]
    options = result.stdout.split("Options:", 1)[1]
    assert "--workers INTEGER RANGE" in options and "--dry-run" in options and "-h, --help" in options


@pytest.mark.parametrize("args", [
    ["plan", "-h", "helppkg.tasks:Report"],
    ["status", "--working-dir", "data", "helppkg.tasks:Report", "--year", "3", "--help"],
])
def test_every_task_command_lists_the_parameters(project, args):
    result = run_luisy(args, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "--year INT the year to report [default: 2024]" in _section(result.stdout, "Parameters of Report "
                                                                              "(helppkg.tasks:Report):")


def test_a_task_without_parameters_says_so_and_help_without_a_task_is_the_command_help(project):
    given = run_luisy(["run", "helppkg.tasks:Given", "--help"], cwd=project)
    assert _section(given.stdout, "Parameters of Given (helppkg.tasks:Given):") == ["(none)"]
    plain = run_luisy(["run", "--help"], cwd=project)
    assert plain.returncode == 0 and "Parameters of" not in plain.stdout and "--workers" in plain.stdout


def test_help_for_a_task_that_cannot_be_found_is_one_line(project):
    result = run_luisy(["run", "helppkg.tasks:Nope", "--help"], cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["luisy: error: module 'helppkg.tasks' has no task 'Nope'; tasks defined "
                                          "there: Given, Report"]
