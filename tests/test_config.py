from __future__ import annotations

from pathlib import Path

import luigi
import luigi.configuration
import pytest
from conftest import run_luisy, write_project

import luisy
from luisy import config


@pytest.fixture
def luigi_config():
    parser = luigi.configuration.get_config()
    yield parser
    if parser.has_section("luisy"):
        parser.remove_section("luisy")


def test_default_is_data_below_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.get_working_dir() == tmp_path / "data"


def test_resolution_order(tmp_path, monkeypatch, luigi_config):
    if not luigi_config.has_section("luisy"):
        luigi_config.add_section("luisy")
    luigi_config.set("luisy", "working_dir", str(tmp_path / "cfg"))
    assert config.get_working_dir() == tmp_path / "cfg"
    monkeypatch.setenv("WORKING_DIR", str(tmp_path / "old_env"))
    assert config.get_working_dir() == tmp_path / "old_env"
    monkeypatch.setenv("LUISY_WORKING_DIR", str(tmp_path / "env"))
    assert config.get_working_dir() == tmp_path / "env"
    with luisy.working_dir(tmp_path / "explicit"):
        assert config.get_working_dir() == tmp_path / "explicit"
        assert luisy.Config().get_param("working_dir") == str(tmp_path / "explicit")
    assert config.get_working_dir() == tmp_path / "env"


def test_set_working_dir_is_resolved_not_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    luisy.set_working_dir("relative")
    try:
        assert luisy.Config().working_dir == str(tmp_path / "relative")
        (tmp_path / "other").mkdir()
        monkeypatch.chdir(tmp_path / "other")
        assert config.get_working_dir() == tmp_path / "other" / "relative"
    finally:
        luisy.set_working_dir(None)


def test_config_1x_set_param(tmp_path):
    cfg = luisy.Config()
    cfg.set_param("working_dir", tmp_path)
    try:
        assert cfg.get_param("working_dir") == str(tmp_path)
    finally:
        cfg.set_param("working_dir", None)


def test_unknown_setting_is_named():
    with pytest.raises(KeyError, match="unknown luisy setting 'colour'"):
        luisy.Config().get_param("colour")


def test_fixture_points_at_tmp_path(luisy_working_dir, tmp_path):
    assert luisy_working_dir == tmp_path
    assert config.get_working_dir() == Path(tmp_path)


def test_a_build_holds_its_settings_in_a_run_and_leaves_luigis_config_alone(tmp_path):
    seen = []

    class Probe(luisy.Task):
        def run(self):
            seen.append(config.current())
            self.write(1)

    parser = luigi.configuration.get_config()
    before = {s: dict(parser.items(s)) for s in parser.sections()}
    assert luisy.build([Probe()], working_dir=tmp_path, processes=3, retry_failed=False, log_level="ERROR")
    (run,) = seen
    assert run.working_dir == tmp_path and run.processes == 3 and not run.retry_failed and run.id
    assert {s: dict(parser.items(s)) for s in parser.sections()} == before
    assert config.current().id == "" and config.current().processes == 1 and config.current().retry_failed
    assert config.get_working_dir() != tmp_path, "the build's working directory ends with it"


def test_set_working_dir_in_one_context_does_not_reach_another(tmp_path):
    import contextvars

    contextvars.copy_context().run(luisy.set_working_dir, tmp_path / "elsewhere")
    assert config.get_working_dir() != tmp_path / "elsewhere"


SETTINGS_PROJECT = {"cfgpkg/__init__.py": "", "cfgpkg/tasks.py": '''
    import luisy


    @luisy.final
    @luisy.text_output
    class Hello(luisy.Task):
        def run(self):
            self.write("hello")
'''}


def _run_with_luigi_cfg(tmp_path: Path, text: str):
    write_project(tmp_path, SETTINGS_PROJECT)
    (tmp_path / "data").mkdir()
    (tmp_path / "luigi.cfg").write_text(text)
    result = run_luisy(["run", "cfgpkg.tasks:Hello"], cwd=tmp_path, timeout=120)
    assert not (tmp_path / "data" / "cfgpkg" / "final" / "Hello.txt").exists()
    return result


SECONDS = "must be a number of seconds from 0 to 9223372036"


@pytest.mark.parametrize("setting,value,takes", [
    ("processes", "abc", "must be a whole number from 1 on"),
    ("processes", "0", "must be a whole number from 1 on"),
    ("retry_failed", "maybe", "must be yes or no (also true/false, on/off, 1/0)"),
    ("keep_replaced_seconds", "nan", SECONDS),
    ("checkpoint_seconds", "-1", SECONDS),
    ("grace_seconds", "1e308", SECONDS),
    ("dask_scheduler", "tcp://a b:8786", "must be the address of a Dask scheduler, such as tcp://host:8786"),
    ("input_fingerprint", "bogus", "must be one of mtime, content, write-once"),
])
def test_a_luisy_setting_luisy_cannot_use_is_one_line_naming_what_it_takes(tmp_path, setting, value, takes):
    result = _run_with_luigi_cfg(tmp_path, f"[luisy]\n{setting} = {value}\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"luisy: error: [luisy] {setting} = {value!r}: {takes}\n"


@pytest.mark.parametrize("text,problem", [
    ("[luisy]\nprocesses = 2\nprocesses = 3\n",
     "While reading from 'luigi.cfg' [line 3]: option 'processes' in section 'luisy' already exists"),
    ("[core]\n[core]\n", "While reading from 'luigi.cfg' [line 2]: section 'core' already exists"),
    ("processes = 2\n", "File contains no section headers. file: 'luigi.cfg', line: 1 'processes = 2\\n'"),
])
def test_a_luigi_configuration_file_that_cannot_be_parsed_is_one_line_naming_it(tmp_path, text, problem):
    result = _run_with_luigi_cfg(tmp_path, text)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"luisy: error: cannot read luigi's configuration: {problem}\n"
