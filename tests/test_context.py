"""The one context: a task answers ``complete()`` the same inside ``luisy.build`` and outside it."""

from __future__ import annotations

import json
import subprocess
import sys

import luigi
import pandas as pd
import pytest

import luisy
from luisy import config


@luisy.project_name("ctx")
@luisy.raw
@luisy.csv_output
class CtxTable(luisy.ExternalTask):
    part = luisy.IntParameter(default=0)

    def get_file_name(self):
        return f"table_{self.part}"


@luisy.project_name("ctx")
@luisy.interim
@luisy.requires(CtxTable)
class CtxDoubled(luisy.Task):
    def run(self):
        df = self.read_input()
        self.write(df.assign(v=df["v"] * 2))


@luisy.project_name("ctx")
@luisy.final
class CtxBoth(luisy.ConcatenationTask):
    def requires(self):
        return [CtxDoubled(part=0), CtxDoubled(part=1)]


@luisy.project_name("ctx")
@luisy.raw
@luisy.directory_input(pattern="*.txt")
class CtxPages(luisy.ExternalTask):
    def get_folder_name(self):
        return "pages"


@luisy.project_name("ctx")
@luisy.interim
@luisy.requires(CtxPages)
@luisy.directory_output(format="json")
class CtxLengths(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"chars": len(obj)}


@luisy.project_name("ctx")
@luisy.interim
@luisy.json_output
class CtxDynamic(luisy.Task):
    def run(self):
        table = yield CtxDoubled(part=1)
        self.write({"rows": len(table.read())})


class CtxPlain(luigi.Task):
    def output(self):
        return luigi.LocalTarget(str(luisy.get_working_dir() / "plain.txt"))

    def run(self):
        with self.output().open("w") as f:
            f.write("plain")


class CtxAll(luisy.WrapperTask):
    def requires(self):
        return [CtxBoth(), CtxLengths(), CtxDynamic(), CtxPlain()]


def kinds():
    return {"external": CtxTable(part=0), "task": CtxDoubled(part=0), "concatenation": CtxBoth(),
            "directory": CtxLengths(), "dynamic": CtxDynamic(), "plain luigi": CtxPlain(), "wrapper": CtxAll()}


@luisy.project_name("ctx")
@luisy.final
@luisy.json_output
class CtxProbe(luisy.Task):
    """Asks, inside a build, what the tasks of every kind answer to complete()."""

    round = luisy.IntParameter()

    def run(self):
        self.write({name: task.complete() for name, task in kinds().items()})


def test_complete_answers_the_same_inside_and_outside_a_build(luisy_working_dir):
    for part in (0, 1):
        CtxTable(part=part).output().write(pd.DataFrame({"v": [part, 2]}))
    pages = luisy_working_dir / "ctx" / "raw" / "pages"
    pages.mkdir(parents=True)
    (pages / "a.txt").write_text("abc")
    assert luisy.build(CtxAll(), log_level="ERROR")
    answers = []
    for round_, change in enumerate([lambda: None, lambda: (pages / "b.txt").write_text("new"),
                                     lambda: CtxTable(part=1).output().write(pd.DataFrame({"v": [9]}))]):
        change()
        assert luisy.build(CtxProbe(round=round_), log_level="ERROR")
        inside = CtxProbe(round=round_).read()
        outside = {name: task.complete() for name, task in kinds().items()}
        assert inside == outside, round_
        answers.append(outside)
    assert all(answers[0].values()), answers[0]
    assert not answers[1]["directory"] and not answers[1]["wrapper"] and answers[1]["task"]
    assert not answers[2]["concatenation"] and not answers[2]["dynamic"] and answers[2]["task"]


def test_a_scope_changes_the_context_for_its_block_only(tmp_path):
    before = config.context()
    with config.scope(working_dir=str(tmp_path)) as inner:
        assert luisy.get_working_dir() == tmp_path and config.context() is inner
        with config.caching("scans") as scans, config.caching("scans") as same:
            assert scans is same and config.context().caches.scans is scans
        assert config.context().caches.scans is None
    assert config.context() is before


def test_importing_luisy_installs_no_fork_hooks_and_sets_no_context():
    code = ("import luisy, luisy.cli, luisy.interrupts as i, luisy.config as c\n"
            "before = i._install_fork_hooks.cache_info().currsize, c._context.get()\n"
            "with i.stop_on_signals(1.0):\n    pass\n"
            "print(json.dumps([before[0], before[1] is None, i._install_fork_hooks.cache_info().currsize]))")
    result = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [0, True, 1]


@pytest.mark.parametrize("name", ["fingerprints", "scans", "temp_listings", "journal_files", "touched"])
def test_every_cache_is_gone_with_the_block_that_made_it(name):
    with config.caching(name) as kept:
        assert getattr(config.context().caches, name) is kept
    assert getattr(config.context().caches, name) is None


def test_a_bounded_cache_keeps_the_most_recently_used_and_not_its_weak_keys_alive():
    import gc

    from luisy.bounded import BoundedCache

    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    classes: BoundedCache[type, str] = BoundedCache(10, weak_keys=True)
    classes.put(type("Gone", (), {}), "fingerprint")
    gc.collect()
    assert len(classes) == 0, "a class nothing else refers to is not kept alive"
