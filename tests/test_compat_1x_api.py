"""luisy 1.x's API for running and testing pipelines, run side by side with luisy 1.4.7.

Each test writes one project and one script, runs the script with luisy 1.4.7 (its own
virtualenv, see ``luisy1.py``) and with this luisy, and compares what both printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest
from conftest import run_luisy, write_project
from luisy1 import run_both, run_in

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "oldapi/__init__.py": "",
    "oldapi/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.csv_output
        class Raw(luisy.ExternalTask):
            def get_file_name(self):
                return "raw"


        @luisy.interim
        @luisy.requires(Raw)
        class Doubled(luisy.Task):
            def run(self):
                df = self.read_input()
                self.write(df.assign(x=df["x"] * 2))


        @luisy.final
        @luisy.requires(Doubled)
        @luisy.json_output
        class Total(luisy.Task):
            def run(self):
                self.write({"total": int(self.read_input()["x"].sum())})
    ''',
}

PREAMBLE = '''
import json, os
import pandas as pd
import luisy, luisy.cli, luisy.config, luisy.testing
from oldapi.tasks import Doubled, Raw, Total

def sets(summary):
    """luigi's task sets as sorted names, empty ones left out."""
    return {key: sorted(map(str, tasks)) for key, tasks in summary.items() if tasks}

def write_raw():
    folder = os.path.join(os.environ["WORKING_DIR"], "oldapi", "raw")
    os.makedirs(folder, exist_ok=True)
    pd.DataFrame({"x": [1, 2, 3]}).to_csv(os.path.join(folder, "raw.csv"), index=False)
'''


def _same(luisy1_python, tmp_path, script: str, project: dict[str, str] = PROJECT):
    old, new = run_both(luisy1_python, project, PREAMBLE + script, tmp_path)
    assert old.returncode == 0, old.stderr[-3000:]
    assert new.returncode == 0, new.stderr[-3000:]
    assert new.answer == old.answer, (old.answer, new.answer)
    return new.answer


def test_cli_build_with_1x_keywords_returns_luigis_task_sets(luisy1_python, tmp_path):
    answer = _same(luisy1_python, tmp_path, '''
write_raw()
first = luisy.cli.build(task=Total(), workers=1, local_scheduler=True, hash_update_mode=False, dry_run=False,
                        no_ask=True, requirements_path=None, download=False, upload=False)
again = luisy.cli.build(Total())
print(json.dumps({"first": sets(first.tasks_set), "again": sets(again.tasks_set),
                  "completed": sorted(map(str, first.tasks_set["completed"])), "result": Total().read()}))
''')
    assert answer["first"]["completed"] == ["Doubled()", "Total()"] and answer["result"] == {"total": 12}
    assert answer["again"] == {"already_done": ["Total()"]}


def test_cli_build_dry_run_runs_nothing(luisy1_python, tmp_path):
    answer = _same(luisy1_python, tmp_path, '''
write_raw()
luisy.cli.build(task=Total(), dry_run=True)
print(json.dumps({"ran": Doubled().output().exists() or Total().output().exists()}))
''')
    assert answer == {"ran": False}


def test_debug_run_returns_luigis_task_sets(luisy1_python, tmp_path):
    answer = _same(luisy1_python, tmp_path, '''
missing = luisy.testing.debug_run(Total(), return_summary=True)
write_raw()
done = luisy.testing.debug_run([Total()])
result = luisy.testing.debug_run([Total()], return_summary=False)
print(json.dumps({"missing": sets(missing), "done": sets(done), "already_done": sorted(map(str, done["already_done"])),
                  "status": result.status.name}))
''')
    assert answer["missing"]["still_pending_ext"] == ["Raw()"]
    assert answer["done"]["completed"] == ["Doubled()", "Total()"] and answer["status"] == "SUCCESS"


def test_assert_fail_passes_on_a_missing_external_input(luisy1_python, tmp_path):
    project = {**PROJECT, "oldapi/test_pipeline.py": '''
        import pandas as pd
        from luisy.testing import LuisyTestCase
        from oldapi.tasks import Doubled, Raw, Total


        class TestTotal(LuisyTestCase):
            def test_missing_input_fails(self):
                self.assertFail(Total())

            def test_runs_on_given_raw_data(self):
                self.assertSuccess(Total(), existing_outputs=[(Raw(), pd.DataFrame({"x": [1, 2]}))])

            def test_result(self):
                out = self.run_pipeline(Total(), existing_outputs=[(Raw(), pd.DataFrame({"x": [1, 2]}))])
                self.assertEqual(out, {"total": 6})
    '''}
    answer = _same(luisy1_python, tmp_path, '''
import sys, unittest
suite = unittest.defaultTestLoader.loadTestsFromName("oldapi.test_pipeline")
result = unittest.TextTestRunner(stream=sys.stderr).run(suite)
print(json.dumps({"run": result.testsRun, "failures": len(result.failures), "errors": len(result.errors)}))
''', project)
    assert answer == {"run": 3, "failures": 0, "errors": 0}


def test_config_params_and_path_helpers(luisy1_python, tmp_path):
    answer = _same(luisy1_python, tmp_path, '''
from luisy.config import Config, change_working_dir
before = {k: Config().get_param(k) for k in ("no_ask", "dry_run", "hash_update_mode", "requirements_path")}
Config().set_param("no_ask", True)
Config().set_param("requirements_path", "requirements.txt")
after = {k: Config().get_param(k) for k in ("no_ask", "requirements_path", "download", "upload")}
moved = change_working_dir("/data/proj/raw/a.csv", "/data", "/mnt/other")
relative = change_working_dir("/data/proj/raw/a.csv", "/data/", "")
print(json.dumps({"before": before, "after": after, "moved": moved, "relative": relative,
                  "working_dir": Config().get_param("working_dir") == os.environ["WORKING_DIR"]}))
''')
    assert answer["after"] == {"no_ask": True, "requirements_path": "requirements.txt", "download": False,
                               "upload": False}
    assert answer["moved"] == "/mnt/other/proj/raw/a.csv" and answer["working_dir"]


def test_the_1x_command_without_local_scheduler_asks_luigis_central_scheduler(luisy1_python, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = f"[core]\ndefault-scheduler-url = http://127.0.0.1:{port}/\nrpc-retry-attempts = 1\nrpc-retry-wait = 0\n"
    project = {**PROJECT, "luigi.cfg": cfg}
    script = PREAMBLE + '''
import subprocess, sys
write_raw()
command = [os.path.join(os.path.dirname(sys.executable), "luisy"), "--module", "oldapi.tasks", "Total", "--no-ask"]
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
print(json.dumps({"ok": done.returncode == 0, "ran": Total().output().exists()}))
'''
    old, new = run_both(luisy1_python, project, script, tmp_path)
    assert old.answer == new.answer == {"ok": False, "ran": False}, (old.stderr[-2000:], new.stderr[-2000:])
    assert f"cannot reach the luigi central scheduler at http://127.0.0.1:{port}/" in new.stderr


class SparkFeaturesAndAMissingRemoteSayWhatToDo(unittest.TestCase):
    """luisy 2 has no Spark: each 1.x way in is one line naming it, never a traceback. 1.x's cloud
    switches work, and without a remote to share with they say how to set one."""

    def test_in_python(self):
        script = ("import luisy, luisy.config\n"
                  "for reach in ('from luisy import deltatable_output', 'from luisy.tasks import SparkTask',"
                  " 'from luisy.decorators import azure_blob_storage_input', 'luisy.config.activate_download()',"
                  " 'luisy.cli.build(task=luisy.Task(), download=True)', 'luisy.download(luisy.Task())'):\n"
                  "    try:\n        exec(reach)\n"
                  "    except luisy.LuisyError as error:\n        print(error.format_message())\n"
                  "luisy.Config().set_param('upload', True)\n"
                  "print(luisy.Config().get_param('upload'))\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LUISY_REMOTE", "LUISY_AZURE_"))}
        lines = subprocess.run([sys.executable, "-c", "import luisy.cli\n" + script], capture_output=True, text=True,
                               check=True, env=env).stdout.splitlines()
        self.assertEqual(len(lines), 7, lines)
        self.assertTrue(all("is not part of luisy 2" in line for line in lines[:3]), lines)
        self.assertTrue(all("needs a remote: set LUISY_REMOTE" in line for line in lines[3:6]), lines)
        self.assertEqual(lines[6], "True")

    def test_on_the_command_line(self):
        root = Path(self.enterContext(tempfile.TemporaryDirectory()))
        write_project(root, {**PROJECT, "oldapi/spark.py": '''
            import luisy


            @luisy.deltatable_output(table_name="t")
            class Table(luisy.Task):
                pass
        '''})
        (root / "data").mkdir()
        for args, says in ((["--module", "oldapi.tasks", "Total", "--download", "--local-scheduler"], "needs a remote"),
                           (["--module", "oldapi.tasks", "Total", "--upload", "--azure-storage-key", "k",
                             "--local-scheduler"], "needs LUISY_AZURE_ACCOUNT_NAME and LUISY_AZURE_CONTAINER_NAME"),
                           (["run", "oldapi.spark:Table"], "is not part of luisy 2")):
            result = run_luisy(args, cwd=root)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            self.assertIn(says, result.stderr)


NAMES = {
    "names/__init__.py": "",
    "names/tasks.py": '''
        import luisy


        @luisy.interim
        @NAMING
        class Columns(luisy.Task):
            columns = luisy.ListParameter(default=["Processing_Date", "ID"])
            city = luisy.Parameter(default="New York")
            weights = luisy.DictParameter(default={"a": 1})

            def run(self):
                self.write({"made by": self.made_by})

            made_by = "1.x" if not hasattr(luisy, "build") else "2"
    ''',
}


# The 1.x tutorials name outputs with @luisy.auto_filename in each of these forms.
@pytest.mark.parametrize("naming", ["luisy.interim", "luisy.auto_filename", "luisy.auto_filename()",
                                    "luisy.auto_filename(excl_none=True)",
                                    "luisy.auto_filename(excl_params=['weights'])"])
def test_outputs_luisy_1x_made_are_found_where_it_put_them(luisy1_python, tmp_path, naming):
    names = {rel: source.replace("NAMING", naming) for rel, source in NAMES.items()}
    made = run_in(luisy1_python, "1.x", names, PREAMBLE.replace("from oldapi.tasks import Doubled, Raw, Total", "")
                  + '''
from names.tasks import Columns
luisy.cli.build(task=Columns())
print(json.dumps({"path": os.path.relpath(Columns().output().path, os.environ["WORKING_DIR"])}))
''', tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    found = run_in(luisy1_python, "now", names, '''
import json, os, luisy
from names.tasks import Columns
print(json.dumps({"path": os.path.relpath(Columns().output().path, os.environ["WORKING_DIR"]),
                  "read": Columns().output().read()}))
''', tmp_path)
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.answer == {"path": made.answer["path"], "read": {"made by": "1.x"}}
    # Accepted as it is, and then complete: a run writes no second file beside it.
    accepted = run_luisy(["run", "names.tasks:Columns", "--hash-update-mode"], cwd=tmp_path)
    assert "1 task" in accepted.stdout, accepted.stdout + accepted.stderr
    again = run_luisy(["run", "names.tasks:Columns"], cwd=tmp_path)
    assert again.stdout.startswith("nothing to run"), again.stdout + again.stderr
    assert [p.name for p in (tmp_path / "data" / "names" / "interim").iterdir()] == [Path(made.answer["path"]).name]


ONE_AS_DICT = {
    "onedict/__init__.py": "",
    "onedict/tasks.py": '''
        import pathlib  # not os: luisy 1.x cannot fingerprint code that uses a frozen module (Python 3.11)
        import shutil

        import luisy


        @luisy.raw
        @luisy.json_output
        class Source(luisy.ExternalTask):
            def get_file_name(self):
                return "source"


        @luisy.interim
        @luisy.requires(Source, as_dict=True)
        class AsTarget(luisy.Task):
            def run(self):
                self.write(self.input().read()["n"] + 1)  # what 1.x code did


        @luisy.interim
        @luisy.requires(Source, as_dict=True)
        class AsDict(luisy.Task):
            def run(self):
                self.write(self.input()["Source"].read()["n"] + 2)  # what 1.x's docs wrote


        @luisy.interim
        @luisy.requires(Source)
        class MovesAFileIn(luisy.Task):
            def run(self):
                extra = pathlib.Path(luisy.Config().get_param("working_dir"), "extra.txt")
                extra.write_text("made in run()")
                shutil.move(str(extra), str(pathlib.Path(self.get_outdir(), "extra.txt")))  # 1.x's multi-file tutorial
                self.write(["extra.txt"])
    ''',
}


def test_one_requirement_as_dict_and_files_moved_into_get_outdir(luisy1_python, tmp_path):
    script = '''
import json, os, luisy, luisy.cli
from onedict.tasks import AsDict, AsTarget, MovesAFileIn
os.makedirs(os.path.join(os.environ["WORKING_DIR"], "onedict", "raw"))
open(os.path.join(os.environ["WORKING_DIR"], "onedict", "raw", "source.json"), "w").write('{"n": 1}')
answer = {}
for task in (AsTarget(), AsDict(), MovesAFileIn()):
    failed = luisy.cli.build(task=task).tasks_set["failed"]
    answer[type(task).__name__] = "failed" if failed else task.read()
print(json.dumps(answer))
'''
    old, new = run_both(luisy1_python, ONE_AS_DICT, script, tmp_path)
    assert old.answer == {"AsTarget": 2, "AsDict": "failed", "MovesAFileIn": ["extra.txt"]}, old.stderr[-3000:]
    assert new.answer == {"AsTarget": 2, "AsDict": 3, "MovesAFileIn": ["extra.txt"]}, new.stderr[-3000:]


def test_config_of_ones_own_relative_paths_and_a_store_without_root_output(luisy1_python, tmp_path):
    project = {**PROJECT, "oldapi/test_store.py": '''
        import luisy
        import pandas as pd
        from luisy.testing import LuisyTestCase
        from oldapi.tasks import Doubled, Raw


        class Nothing(luisy.Task):
            def requires(self):
                return Doubled()

            def run(self):
                pass  # writes nothing: its store is still asked for


        class TestStore(LuisyTestCase):
            def test_store(self):
                store = self.run_pipeline(Nothing(), existing_outputs=[(Raw(), pd.DataFrame({"x": [1]}))],
                                          return_store=True)
                self.assertEqual(store[Doubled()]["x"].tolist(), [2])
    '''}
    answer = _same(luisy1_python, tmp_path, '''
import sys, unittest
from luisy.config import Config, remove_working_dir, set_working_dir
Config().set_param("threshold", 10)
set_working_dir("data")
removed = remove_working_dir("data/proj/raw/x.pkl")
suite = unittest.defaultTestLoader.loadTestsFromName("oldapi.test_store")
result = unittest.TextTestRunner(stream=sys.stderr).run(suite)
print(json.dumps({"threshold": Config().get_param("threshold"), "removed": removed,
                  "store": [result.testsRun, len(result.failures) + len(result.errors)]}))
''', project)
    assert answer == {"threshold": 10, "removed": "/proj/raw/x.pkl", "store": [1, 0]}


def test_a_name_luisy_2_wrote_for_another_value_is_not_taken_for_a_1x_output(luisy_working_dir):
    import luisy

    class Named(luisy.Task):
        x = luisy.Parameter()

        def run(self):
            self.write({"x": self.x})

    assert luisy.build([Named(x="a_b")])  # "a_b" keeps 1.x's name, Named_x=a_b.pkl
    other = Named(x="a b")  # 1.x named it Named_x=a_b.pkl too; luisy 2 adds a hash
    assert other.output().path != Named(x="a_b").output().path and "~" in other.output().path
    assert luisy.build([other]) and Named(x="a_b").read() == {"x": "a_b"} and other.read() == {"x": "a b"}


@pytest.mark.parametrize("module, name", [  # where luisy 1.x defined them
    ("luisy.tasks.base", "SparkTask"), ("luisy.targets", "CloudTarget"), ("luisy.targets", "SparkTarget"),
    ("luisy.targets", "DeltaTableTarget"), ("luisy.targets", "AzureBlobStorageTarget"),
    ("luisy.decorators", "deltatable_input"), ("luisy.decorators", "deltatable_output"),
    ("luisy.decorators", "azure_blob_storage_input"), ("luisy.decorators", "azure_blob_storage_output"),
])
def test_a_1x_feature_imported_from_its_1x_module_is_one_line(module, name):
    from luisy.errors import UnavailableFeatureError

    with pytest.raises(UnavailableFeatureError) as raised:
        exec(f"from {module} import {name}", {})
    assert raised.value.format_message().startswith("luisy 1.x's ")
    assert "is not part of luisy 2" in raised.value.format_message()
