from __future__ import annotations

from pathlib import Path

import luigi
import luigi.configuration
import pytest

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
