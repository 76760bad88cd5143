"""Outputs shared through a remote: ``luisy run --upload`` / ``--download``, end to end through the
``luisy`` command, with a folder as the remote and with a real S3 server (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

from luisy.sharing import SHARED_DIR

PROJECT = {
    "team/__init__.py": "",
    "team/tasks.py": '''
        import pathlib

        import luisy


        def note(name):
            """Which run() ran: a line in ran.log beside the working directory."""
            with (pathlib.Path(luisy.get_working_dir()).parent / "ran.log").open("a") as log:
                log.write(name + "\\n")


        @luisy.raw
        @luisy.csv_output
        class Raw(luisy.ExternalTask):
            def get_file_name(self):
                return "raw"


        @luisy.interim
        @luisy.requires(Raw)
        class Doubled(luisy.Task):
            def run(self):
                note("Doubled")
                df = self.read_input()
                self.write(df.assign(x=df["x"] * 2))


        @luisy.final
        @luisy.requires(Doubled)
        @luisy.json_output
        class Total(luisy.Task):
            offset = 0

            def run(self):
                note("Total")
                self.write({"total": int(self.read_input()["x"].sum()) + self.offset})
    ''',
    "team/frames.py": '''
        import luisy
        from team.tasks import note


        @luisy.raw
        @luisy.directory_input(pattern="*.json")
        class Frames(luisy.ExternalTask):
            def get_folder_name(self):
                return "frames"


        @luisy.interim
        @luisy.requires(Frames)
        @luisy.directory_output(format="json")
        class Lengths(luisy.DirectoryTask):
            def process(self, name, frame):
                return {"length": len(frame["text"])}


        @luisy.final
        @luisy.requires(Lengths)
        @luisy.json_output
        class Longest(luisy.Task):
            def run(self):
                note("Longest")
                self.write({"longest": max(value["length"] for _, value in self.input().items())})
    ''',
}

OUTPUTS = ["team/final/Total.json", "team/interim/Doubled.pkl", "team/raw/raw.csv"]


class Team:
    """A project whose working directories (``up``, ``down``...) share outputs through one remote."""

    def __init__(self, root: Path, remote: str, env: dict[str, str] | None = None) -> None:
        self.root, self.remote, self.env = root, remote, env or {}
        write_project(root, PROJECT)

    def run(self, data: str, *flags: str, task: str = "team.tasks:Total", raw: bool = False,
            env: dict[str, str] | None = None) -> dict:
        """``luisy run`` in working directory ``data``: its exit status, output, which run()s ran,
        and the outputs there."""
        folder = self.root / data
        if raw:
            (folder / "team" / "raw").mkdir(parents=True, exist_ok=True)
            (folder / "team" / "raw" / "raw.csv").write_text("x\n1\n2\n3\n")
            for name, text in (("a.json", "ab"), ("b.json", "abcd")):
                (folder / "team" / "raw" / "frames").mkdir(exist_ok=True)
                (folder / "team" / "raw" / "frames" / name).write_text(json.dumps({"text": text}))
        folder.mkdir(exist_ok=True)
        done = run_luisy(["run", task, "--working-dir", str(folder), *flags], cwd=self.root,
                         env={"LUISY_REMOTE": self.remote, **self.env, **(env or {})})
        log = self.root / "ran.log"
        ran = sorted(log.read_text().split()) if log.exists() else []
        log.unlink(missing_ok=True)
        return {"rc": done.returncode, "out": done.stdout, "err": done.stderr, "ran": ran,
                "outputs": outputs(folder)}


def outputs(folder: Path) -> list[str]:
    """The files below ``folder`` that are not luisy's own (no part of the path starts with a dot)."""
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in found if not any(part.startswith(".") for part in p.split("/")))


@pytest.fixture
def team(tmp_path) -> Team:
    (tmp_path / "remote").mkdir()
    return Team(tmp_path / "project", str(tmp_path / "remote"))


def test_upload_then_download_fetches_only_what_the_run_needs(team, tmp_path):
    up = team.run("up", "--upload", raw=True)
    assert (up["rc"], up["ran"]) == (0, ["Doubled", "Total"]), up["err"]
    assert "sent to the remote: 3 task(s)" in up["out"]
    remote = tmp_path / "remote"
    assert outputs(remote) == OUTPUTS  # every output of the graph, the raw input too
    for name in OUTPUTS:
        assert (remote / name).read_bytes() == (team.root / "up" / name).read_bytes()
    assert len(list((remote / "team" / SHARED_DIR).iterdir())) == 3

    down = team.run("down", "--download")
    assert (down["rc"], down["ran"], down["outputs"]) == (0, [], ["team/final/Total.json"]), down["err"]
    assert "fetched from the remote: 1 task(s)" in down["out"]
    assert json.loads((team.root / "down" / "team/final/Total.json").read_text()) == {"total": 12}
    again = team.run("down", "--download")
    assert (again["rc"], again["ran"]) == (0, []) and "fetched" not in again["out"]
    # Without --download the fetched output counts as made here: nothing runs.
    plain = team.run("down")
    assert (plain["rc"], plain["ran"]) == (0, [])


def test_changed_code_fetches_the_unchanged_input_and_computes_the_rest(team, tmp_path):
    assert team.run("up", "--upload", raw=True)["rc"] == 0
    tasks = team.root / "team" / "tasks.py"
    tasks.write_text(tasks.read_text().replace("offset = 0", "offset = 100"))
    changed = team.run("changed", "--download", "--upload")
    assert (changed["rc"], changed["ran"]) == (0, ["Total"]), changed["err"]
    assert changed["outputs"] == ["team/final/Total.json", "team/interim/Doubled.pkl"]
    assert "sent to the remote: 1 task(s)" in changed["out"]  # Total, under its new fingerprint
    assert json.loads((tmp_path / "remote" / "team/final/Total.json").read_text()) == {"total": 112}
    # Doubled's code changes too: it runs here, from the raw input fetched for it.
    tasks.write_text(tasks.read_text().replace('x=df["x"] * 2', 'x=df["x"] * 3'))
    fresh = team.run("fresh", "--download")
    assert (fresh["rc"], fresh["ran"]) == (0, ["Doubled", "Total"]), fresh["err"]
    assert fresh["outputs"] == OUTPUTS
    assert json.loads((team.root / "fresh" / "team/final/Total.json").read_text()) == {"total": 118}


def test_a_remote_copy_unlike_its_record_is_computed_here_and_upload_replaces_it(team, tmp_path):
    assert team.run("up", "--upload", raw=True)["rc"] == 0
    copy = tmp_path / "remote" / "team/final/Total.json"
    copy.write_text('{"total": -1}')  # another machine wrote it, or it was damaged

    down = team.run("down", "--download", "--upload")
    assert (down["rc"], down["ran"]) == (0, ["Total"]), down["err"]
    assert "not taken from the remote" in down["err"] and "team/final/Total.json" in down["err"]
    assert json.loads((team.root / "down" / "team/final/Total.json").read_text()) == {"total": 12}
    assert json.loads(copy.read_text()) == {"total": 12}  # sent again though its fingerprint was there
    assert team.run("again", "--download")["ran"] == []


def test_directory_outputs_stay_here_and_what_is_downstream_of_them_is_shared(team, tmp_path):
    up = team.run("up", "--upload", task="team.frames:Longest", raw=True)
    assert (up["rc"], up["ran"]) == (0, ["Longest"]), up["err"]
    remote = outputs(tmp_path / "remote")
    assert remote == ["team/final/Longest.json", "team/raw/frames/a.json", "team/raw/frames/b.json"]

    down = team.run("down", "--download", task="team.frames:Longest")
    assert (down["rc"], down["ran"], down["outputs"]) == (0, [], ["team/final/Longest.json"]), down["err"]
    # The input folder changes here: Longest is not what the remote holds, and is computed.
    (team.root / "down" / "team" / "raw" / "frames").mkdir(parents=True)
    for name, text in (("a.json", "ab"), ("b.json", "abcdefgh")):
        (team.root / "down" / "team" / "raw" / "frames" / name).write_text(json.dumps({"text": text}))
    changed = team.run("down", "--download", task="team.frames:Longest")
    assert (changed["rc"], changed["ran"]) == (0, ["Longest"]), changed["err"]
    assert json.loads((team.root / "down" / "team/final/Longest.json").read_text()) == {"longest": 8}


def test_the_same_input_bytes_at_another_time_share_the_outputs(team, tmp_path):
    """Fingerprints of shared outputs take inputs by content: a copy of the raw data made
    elsewhere (another modification time) finds the remote's outputs."""
    assert team.run("up", "--upload", raw=True)["rc"] == 0
    (team.root / "down" / "team" / "raw").mkdir(parents=True)
    raw = team.root / "down" / "team" / "raw" / "raw.csv"
    raw.write_text("x\n1\n2\n3\n")
    os.utime(raw, (1_000_000_000, 1_000_000_000))
    down = team.run("down", "--download")
    assert (down["rc"], down["ran"]) == (0, []), down["err"]
    raw.write_text("x\n1\n2\n4\n")  # other bytes: computed here
    other = team.run("down", "--download")
    assert (other["rc"], other["ran"]) == (0, ["Doubled", "Total"]), other["err"]


def test_bad_remotes_are_one_line_and_nothing_runs(team, tmp_path):
    missing = team.run("up", "--download", raw=True, env={"LUISY_REMOTE": str(tmp_path / "nowhere")})
    assert missing["rc"] == 2 and missing["ran"] == [], missing["err"]
    assert missing["err"].strip().count("\n") == 0 and "nowhere" in missing["err"] and "LUISY_REMOTE" in missing["err"]
    unset = team.run("up", "--upload", env={"LUISY_REMOTE": ""})
    assert unset["rc"] == 2 and "needs a remote" in unset["err"] and unset["ran"] == []
    half_1x = team.run("up", "--download", env={"LUISY_REMOTE": "", "LUISY_AZURE_CONTAINER_NAME": "c"})
    assert half_1x["rc"] == 2 and "LUISY_AZURE_ACCOUNT_NAME and LUISY_AZURE_STORAGE_KEY" in half_1x["err"]


def test_hash_update_mode_with_upload_sends_the_accepted_outputs(team, tmp_path):
    assert team.run("up", raw=True)["rc"] == 0
    accepted = team.run("up", "--hash-update-mode", "--upload")
    assert accepted["rc"] == 0 and "sent 3 task(s)' outputs to the remote" in accepted["out"], accepted["err"]
    assert outputs(tmp_path / "remote") == OUTPUTS


def test_python_api_uploads_and_downloads(team, tmp_path):
    assert team.run("up", raw=True)["rc"] == 0
    script = '''
import json, sys
import luisy
from team.tasks import Total

with luisy.working_dir(sys.argv[1]):
    sent = luisy.upload(Total(), remote=sys.argv[3])
with luisy.working_dir(sys.argv[2]):
    fetched = luisy.download(Total(), remote=sys.argv[3])
    again = luisy.download(Total(), remote=sys.argv[3])
    print(json.dumps({"sent": sorted(map(str, sent)), "fetched": list(map(str, fetched)),
                      "again": list(map(str, again)), "total": Total().read()}))
'''
    (team.root / "down").mkdir()
    (team.root / "api.py").write_text(script)
    done = subprocess.run([sys.executable, "api.py", str(team.root / "up"), str(team.root / "down"),
                           str(tmp_path / "remote")], cwd=team.root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(team.root)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"sent": ["Doubled()", "Raw()", "Total()"],
                                                        "fetched": ["Total()"], "again": [], "total": {"total": 12}}


@pytest.mark.slow
def test_round_trip_through_s3_and_a_no_op_download_sends_no_request(moto_s3, bucket_name, tmp_path):
    bucket = moto_s3.create_bucket(bucket_name)
    team = Team(tmp_path / "project", f"s3://{bucket}/cache", moto_s3.env)
    up = team.run("up", "--download", "--upload", raw=True)
    assert (up["rc"], up["ran"]) == (0, ["Doubled", "Total"]), up["err"]
    down = team.run("down", "--download")
    assert (down["rc"], down["ran"], down["outputs"]) == (0, [], ["team/final/Total.json"]), down["err"]
    moto_s3.mark()
    again = team.run("down", "--download", "--upload")
    assert (again["rc"], again["ran"]) == (0, []), again["err"]
    # Complete here: nothing is asked of the remote but the bucket check and the records of the
    # graph's three outputs (what --upload compares), and nothing is written.
    requests = moto_s3.requests()
    assert not [r for r in requests if r.method in ("PUT", "POST", "DELETE")], requests
    assert len(requests) <= 6, requests


def test_a_record_naming_a_file_outside_its_output_fetches_nothing(team, tmp_path):
    """A crafted record on the remote cannot make a download write outside the output's folder."""
    assert team.run("up", "--upload", task="team.frames:Longest", raw=True)["rc"] == 0
    record = next(p for p in (tmp_path / "remote" / "team" / SHARED_DIR).iterdir() if "frames" in p.name)
    data = json.loads(record.read_text())
    about = data["files"]["team/raw/frames/a.json"]
    data["files"]["team/raw/frames/../../../../escaped.json"] = about
    record.write_text(json.dumps(data))
    (tmp_path / "remote" / "escaped.json").write_bytes((tmp_path / "remote" / "team/raw/frames/a.json").read_bytes())
    script = '''
import json, sys
import luisy
from team.frames import Frames

with luisy.working_dir(sys.argv[1]):
    print(json.dumps([str(t) for t in luisy.download(Frames(), remote=sys.argv[2])]))
'''
    (team.root / "down").mkdir()
    (team.root / "api.py").write_text(script)
    done = subprocess.run([sys.executable, "api.py", str(team.root / "down"), str(tmp_path / "remote")],
                          cwd=team.root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(team.root)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert "names the file '../../../../escaped.json', outside team/raw/frames" in done.stderr
    assert outputs(team.root / "down") == [] and not (team.root / "escaped.json").exists()
