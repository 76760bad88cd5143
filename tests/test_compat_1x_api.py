"""luisy 1.x's API for running and testing pipelines, run side by side with luisy 1.4.7.

Each test writes one project and one script, runs the script with luisy 1.4.7 (its own
virtualenv, see ``luisy1.py``) and with this luisy, and compares what both printed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from conftest import run_luisy, write_project
from luisy1 import run_both

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


class CloudAndSparkFeaturesSayWhatToDo(unittest.TestCase):
    """luisy 2 has no cloud sync or Spark: each 1.x way in is one line naming it, never a traceback."""

    def test_in_python(self):
        script = ("import luisy, luisy.config\n"
                  "for reach in ('from luisy import deltatable_output', 'from luisy.tasks import SparkTask',"
                  " 'from luisy.decorators import azure_blob_storage_input', 'luisy.config.activate_download()',"
                  " 'luisy.Config().set_param(\"upload\", True)', 'luisy.cli.build(task=None, download=True)'):\n"
                  "    try:\n        exec(reach)\n"
                  "    except luisy.LuisyError as error:\n        print(error.format_message())\n")
        lines = subprocess.run([sys.executable, "-c", "import luisy.cli\n" + script.replace(
            "'luisy.cli.build(task=None, download=True)'", "'luisy.cli.build(task=luisy.Task(), download=True)'")],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        self.assertEqual(len(lines), 6, lines)
        self.assertTrue(all("is not part of luisy 2" in line for line in lines), lines)

    def test_on_the_command_line(self):
        root = Path(self.enterContext(tempfile.TemporaryDirectory()))
        write_project(root, {**PROJECT, "oldapi/spark.py": '''
            import luisy


            @luisy.deltatable_output(table_name="t")
            class Table(luisy.Task):
                pass
        '''})
        (root / "data").mkdir()
        for args in (["--module", "oldapi.tasks", "Total", "--download", "--local-scheduler"],
                     ["--module", "oldapi.tasks", "Total", "--azure-storage-key", "k", "--local-scheduler"],
                     ["run", "oldapi.spark:Table"]):
            result = run_luisy(args, cwd=root)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            self.assertIn("is not part of luisy 2", result.stderr)
