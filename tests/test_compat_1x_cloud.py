"""luisy 1.x's Azure cloud sync (``luisy ... --download --upload``), observed against a local Azurite.

luisy 1.4.7 runs in its own virtualenv (``luisy1.py``) and is pointed at Azurite by the test-only
hook of ``azurite_1x.py`` (1.x has no endpoint setting). The ``test_1x_*`` functions assert what
1.x does; the ``test_luisy2_*`` functions run the same scripts with both luisys (``run_both``),
each in a container of its own, and check that luisy 2 does the same where it matters.

What 1.x does:

* a blob is named by the output's path below the working dir, without the leading slash
  (``oldapi/final/Total.json``); ``<project>/.luisy.hash`` holds the hashes of what was uploaded;
* ``--download`` fetches an output only when luigi asks whether it is complete and the remote hash
  equals this code's hash: only what the run needs (the final output, not its inputs);
* ``--upload`` (which works only together with ``--download``) pushes, after the run, every output
  of the graph whose remote hash is missing or differs -- the external raw input too -- and
  rewrites the hash blob after each file;
* a missing container, a wrong key or a missing setting is a traceback and exit status 1, before
  any task runs.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse

import pytest
from azurite_1x import HOOK, settings_1x
from luisy1 import run_both, run_in

pytestmark = pytest.mark.slow  # see pyproject.toml

PROJECT = {
    "sitecustomize.py": HOOK,
    "oldapi/__init__.py": "",
    "oldapi/tasks.py": '''
        import pathlib  # not os: luisy 1.x cannot fingerprint code that uses a frozen module (Python 3.11)

        import luisy


        def note(name):
            """Which run() ran: a line in ran.log beside the working dir."""
            with (pathlib.Path(luisy.Config().get_param("working_dir")).parent / "ran.log").open("a") as log:
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
}

# Each step runs the 1.x command line (which luisy 2 accepts too) in a working dir of its own below
# the project, and answers what ran, which outputs are there and what Total holds. The container
# is chosen per luisy, so that both can run against one Azurite.
SCRIPT = '''
import json, os, pathlib, re, subprocess, sys
import luisy

ONE_X = not hasattr(luisy, "build")
CONTAINER = os.environ["CONTAINER_1X" if ONE_X else "CONTAINER_NOW"]
HERE = pathlib.Path.cwd()
LUISY = os.path.join(os.path.dirname(sys.executable), "luisy")


def outputs(data):
    """The files below the working dir, luisy's own (a name starting with a dot) left out."""
    found = (p.relative_to(data) for p in data.rglob("*") if p.is_file())
    return sorted(str(p) for p in found if not any(part.startswith(".") for part in p.parts))


def step(data, *flags, raw=False, settings=None):
    """One run in working dir ``data``; ``settings`` replace environment variables (None: unset)."""
    data = HERE / data
    if raw:
        (data / "oldapi" / "raw").mkdir(parents=True, exist_ok=True)
        (data / "oldapi" / "raw" / "raw.csv").write_text("x\\n1\\n2\\n3\\n")
    data.mkdir(exist_ok=True)
    env = {**os.environ, "WORKING_DIR": str(data), "LUISY_AZURE_CONTAINER_NAME": CONTAINER, **(settings or {})}
    env = {name: value for name, value in env.items() if value is not None}
    done = subprocess.run([LUISY, "--module", "oldapi.tasks", "Total", "--no-ask", "--local-scheduler", *flags],
                          cwd=HERE, env=env, capture_output=True, text=True)
    sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
    ran_log = HERE / "ran.log"
    ran = sorted(ran_log.read_text().split()) if ran_log.exists() else []
    ran_log.unlink(missing_ok=True)
    total = data / "oldapi" / "final" / "Total.json"
    return {"rc": done.returncode, "ran": ran, "outputs": outputs(data),
            "total": json.loads(total.read_text()) if total.exists() else None,
            "error": error(done.stdout + done.stderr)}


def error(output):
    """The exception a traceback in ``output`` ends with (its class), or None."""
    if "Traceback" not in output:
        return None
    raised = re.findall(r"^([A-Za-z_][\\w.]*(?:Error|Exception)):", output, re.MULTILINE)
    return raised[-1] if raised else "?"


STEPS
print(json.dumps(answer))
'''

ROUND_TRIP = SCRIPT.replace("STEPS", '''
answer = {"up": step("up", "--download", "--upload", raw=True)}
answer["down"] = step("down", "--download")
answer["down again"] = step("down", "--download")
# Total's code changes: its remote copy is stale, its input's is not.
tasks = HERE / "oldapi" / "tasks.py"
tasks.write_text(tasks.read_text().replace("offset = 0", "offset = 100"))
answer["changed"] = step("changed", "--download")
answer["changed again"] = step("changed", "--download")
''')

UPLOADED = ["oldapi/final/Total.json", "oldapi/interim/Doubled.pkl", "oldapi/raw/raw.csv"]


@pytest.fixture
def containers(azurite, bucket_name) -> dict[str, str]:
    """A container for each luisy: luisy 1.x's (``"1.x"``) and this one's (``"now"``)."""
    return {"1.x": azurite.create_bucket(bucket_name + "-1x"), "now": azurite.create_bucket(bucket_name + "-now")}


def _env(azurite, containers) -> dict[str, str]:
    return {**settings_1x(azurite, "unused"), "CONTAINER_1X": containers["1.x"], "CONTAINER_NOW": containers["now"]}


def _split(request) -> tuple[str, str]:
    """``(container/blob, query)`` of a request Azurite logged (its path starts with the account)."""
    path, _, query = request.path.partition("?")
    return urllib.parse.unquote(path.split("/", 2)[2]), query


def _fetched(requests, container: str) -> set[str]:
    """Names of the blobs read (GET without a query: a blob, not a listing) from ``container``."""
    found = set()
    for r in requests:
        name, query = _split(r)
        if r.method == "GET" and not query and name.startswith(container + "/"):
            found.add(name.split("/", 1)[1])
    return found


def _written(requests, container: str) -> set[str]:
    return {_split(r)[0].split("/", 1)[1] for r in requests
            if r.method == "PUT" and _split(r)[0].startswith(container + "/")}


def test_1x_round_trip_fetches_only_what_the_run_needs_and_uploads_every_output(luisy1_python, azurite, containers,
                                                                                 tmp_path):
    """``--download --upload`` with the raw data, then ``--download`` in fresh working dirs without it."""
    c1 = containers["1.x"]
    azurite.mark()
    old = run_in(luisy1_python, "1.x", PROJECT, ROUND_TRIP, tmp_path / "1.x", _env(azurite, containers))
    assert old.returncode == 0 and old.answer, old.stderr[-5000:]
    a = old.answer
    requests = azurite.requests()

    # The upload run computes both tasks, then pushes every output of the graph, the raw input too,
    # each followed by the whole hash blob.
    assert a["up"] == {"rc": 0, "ran": ["Doubled", "Total"], "outputs": UPLOADED, "total": {"total": 12},
                       "error": None}
    blobs = azurite.blobs(c1)
    assert sorted(blobs) == ["oldapi/.luisy.hash", *UPLOADED]
    for name in UPLOADED:
        assert blobs[name] == (tmp_path / "1.x" / "up" / name).read_bytes(), name
    hashes = json.loads(blobs["oldapi/.luisy.hash"])
    assert sorted(hashes) == ["/" + name for name in UPLOADED]
    assert (json.loads((tmp_path / "1.x" / "up" / "oldapi" / ".luisy.hash").read_text()) == hashes)
    puts = [_split(r)[0] for r in requests if r.method == "PUT"]
    assert len(puts) == 6 and puts[1::2] == [f"{c1}/oldapi/.luisy.hash"] * 3
    assert sorted(puts[0::2]) == [f"{c1}/{name}" for name in UPLOADED]

    # A fresh working dir: Total is fetched, not computed, and nothing else is fetched.
    assert a["down"] == {"rc": 0, "ran": [], "outputs": ["oldapi/final/Total.json"], "total": {"total": 12},
                         "error": None}
    # Run again: nothing to do. Total's code changed: Total is computed from a fetched Doubled.
    assert a["down again"] == a["down"]
    assert a["changed"] == {"rc": 0, "ran": ["Total"], "total": {"total": 112}, "error": None,
                            "outputs": ["oldapi/final/Total.json", "oldapi/interim/Doubled.pkl"]}
    assert a["changed again"] == {**a["changed"], "ran": []}
    # What each download run read: the hash blob always, an output only when needed.
    runs = _split_runs(requests, c1)
    assert [_fetched(r, c1) for r in runs] == [
        set(), {"oldapi/.luisy.hash", "oldapi/final/Total.json"}, {"oldapi/.luisy.hash"},
        {"oldapi/.luisy.hash", "oldapi/interim/Doubled.pkl"}, {"oldapi/.luisy.hash"}]
    assert [_written(r, c1) for r in runs[1:]] == [set()] * 4
    assert sorted(azurite.blobs(c1)) == sorted(blobs)


def _split_runs(requests, container: str) -> list[list]:
    """The requests of each run: each starts by listing the container for the hash blob."""
    runs: list[list] = []
    for r in requests:
        name, query = _split(r)
        if not name.startswith(container):
            continue
        if r.method == "GET" and query.endswith("prefix=oldapi%2F.luisy.hash"):
            runs.append([])
        runs[-1].append(r)
    return runs


def test_1x_a_stale_remote_hash_is_not_fetched_and_upload_replaces_it(luisy1_python, azurite, containers, tmp_path):
    """The remote hash of Total no longer equals this code's: Total is computed (from a fetched
    Doubled), and ``--upload`` pushes Total and its hash only."""
    c1 = containers["1.x"]
    env = _env(azurite, containers)
    first = run_in(luisy1_python, "1.x", PROJECT, SCRIPT.replace(
        "STEPS", 'answer = {"up": step("up", "--download", "--upload", raw=True)}'), tmp_path / "1.x", env)
    assert first.answer["up"]["rc"] == 0, first.stderr[-3000:]
    hashes = json.loads(azurite.blobs(c1)["oldapi/.luisy.hash"])
    azurite.put(c1, "oldapi/.luisy.hash", json.dumps({**hashes, "/oldapi/final/Total.json": "0" * 32}).encode())
    azurite.mark()
    again = run_in(luisy1_python, "1.x", PROJECT, SCRIPT.replace(
        "STEPS", 'answer = {"stale": step("stale", "--download", "--upload")}'), tmp_path / "1.x", env)
    assert again.answer["stale"] == {"rc": 0, "ran": ["Total"], "total": {"total": 12}, "error": None,
                                     "outputs": ["oldapi/final/Total.json", "oldapi/interim/Doubled.pkl"]}
    requests = azurite.requests()
    assert _fetched(requests, c1) == {"oldapi/.luisy.hash", "oldapi/interim/Doubled.pkl"}
    assert [_split(r)[0] for r in requests if r.method == "PUT"] == [f"{c1}/oldapi/final/Total.json",
                                                              f"{c1}/oldapi/.luisy.hash"]
    assert json.loads(azurite.blobs(c1)["oldapi/.luisy.hash"]) == hashes


ERRORS = SCRIPT.replace("STEPS", '''
answer = {}
for name, flags, settings in (
        ("no container", ["--download"], {"LUISY_AZURE_CONTAINER_NAME": "no-such-container"}),
        ("wrong key", ["--download"], {"LUISY_AZURE_STORAGE_KEY": os.environ["WRONG_KEY"]}),
        ("no key", ["--download"], {"LUISY_AZURE_STORAGE_KEY": None}),
        ("upload alone", ["--upload"], {})):
    answer[name] = step(name.replace(" ", "-"), *flags, raw=True, settings=settings)
''')


def _errors_env(azurite, containers) -> dict[str, str]:
    return {**_env(azurite, containers), "WRONG_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}


def test_1x_cloud_errors_are_tracebacks_before_any_task_runs(luisy1_python, azurite, containers, tmp_path):
    c1 = containers["1.x"]
    azurite.mark()
    old = run_in(luisy1_python, "1.x", PROJECT, ERRORS, tmp_path / "1.x", _errors_env(azurite, containers))
    assert old.answer, old.stderr[-5000:]
    failed = {"rc": 1, "ran": [], "outputs": ["oldapi/raw/raw.csv"], "total": None}
    assert old.answer == {  # the SDK's exceptions, and 1.x's own for a missing setting
        "no container": {**failed, "error": "azure.core.exceptions.ResourceNotFoundError"},
        "wrong key": {**failed, "error": "azure.core.exceptions.HttpResponseError"},
        "no key": {**failed, "error": "ValueError"},
        # --upload without --download: 1.x makes its Azure client only when download is on.
        "upload alone": {**failed, "error": "AttributeError"}}
    assert [(_split(r)[0], r.status) for r in azurite.requests() if r.method == "GET"] == [
        ("no-such-container", 404), (c1, 403)]
    assert azurite.blobs(c1) == {}


PARQUET = {
    **PROJECT,
    "oldapi/frames.py": '''
        import luisy


        @luisy.raw
        @luisy.parquetdir_output(outdir="frames")
        class Frames(luisy.ExternalTask):
            pass


        @luisy.final
        @luisy.requires(Frames)
        @luisy.json_output
        class Count(luisy.Task):
            def run(self):
                self.write({"n": len(self.read_input())})
    ''',
}


def test_1x_parquet_folders_are_neither_uploaded_nor_fetched_by_a_run(luisy1_python, azurite, containers, tmp_path):
    """A parquet folder's hash goes to the hash blob as null; the folder is not uploaded, and a run
    does not fetch it even when it is in the container. ``Task.download()`` fetches it by name."""
    c1 = containers["1.x"]
    script = '''
import json, os, pandas as pd, luisy, luisy.cli
from oldapi.frames import Count, Frames

def attempt(call):
    try:
        call()
        return "ok"
    except Exception as error:
        return type(error).__name__

if os.environ["STAGE"] == "up":
    folder = Frames().output().path
    os.makedirs(folder)
    pd.DataFrame({"a": [1, 2]}).to_parquet(os.path.join(folder, "part-0.parquet"))
    pd.DataFrame({"a": [3]}).to_parquet(os.path.join(folder, "part-1.parquet"))
    luisy.cli.build(Count(), download=True, upload=True)
    print(json.dumps({"upload": attempt(lambda: Frames().upload())}))
else:
    summary = luisy.cli.build(Count(), download=True).tasks_set
    pending = sorted(map(str, summary["still_pending_ext"]))
    fetched = attempt(lambda: Frames().download())
    print(json.dumps({"pending": pending, "download": fetched, "read": len(Frames().read()),
                      "again": attempt(lambda: Frames().download())}))
'''
    env = {**settings_1x(azurite, c1), "STAGE": "up"}
    up = run_in(luisy1_python, "1.x", PARQUET, script, tmp_path / "up", env)
    assert up.answer == {"upload": "NotImplementedError"}, up.stderr[-3000:]
    blobs = azurite.blobs(c1)
    assert sorted(blobs) == ["oldapi/.luisy.hash", "oldapi/final/Count.json"]
    hashes = json.loads(blobs["oldapi/.luisy.hash"])
    assert hashes["/oldapi/raw/frames"] is None and hashes["/oldapi/final/Count.json"]
    made = tmp_path / "up" / "data" / "oldapi" / "raw" / "frames"
    for part in ("part-0.parquet", "part-1.parquet"):  # as if written there by another system
        azurite.put(c1, f"oldapi/raw/frames/{part}", (made / part).read_bytes())
    azurite.put(c1, "oldapi/.luisy.hash", json.dumps({**hashes, "/oldapi/final/Count.json": "0" * 32}).encode())
    down = run_in(luisy1_python, "1.x", PARQUET, script, tmp_path / "down", {**env, "STAGE": "down"})
    # Fetched again onto the folder it made: refused.
    assert down.answer == {"pending": ["Frames()"], "download": "ok", "read": 3, "again": "ValueError"}, \
        down.stderr[-3000:]


def test_luisy2_round_trip_matches_1x(luisy1_python, azurite, containers, tmp_path):
    """The round trip with both luisys, each in a container of its own.

    luisy 2 gives the same answers (what ran, which outputs each
    working dir has, Total's value, no traceback) at every step; the same output blobs under the
    same names, each equal to the uploaded local file; and per download run the same output blobs
    fetched (Total only, then none, then Doubled only, then none) and nothing written. Each
    luisy's own files (1.x's ``.luisy.hash``, luisy 2's ``.luisy-shared`` records) differ, as do
    the listing requests and the order of the uploads.
    """
    c1 = containers["1.x"]
    azurite.mark()
    old, new = run_both(luisy1_python, PROJECT, ROUND_TRIP, tmp_path, _env(azurite, containers))
    assert old.returncode == 0 and old.answer, old.stderr[-3000:]
    assert new.returncode == 0 and new.answer, new.stderr[-3000:]
    assert new.answer == old.answer, (old.answer, new.answer)
    requests = azurite.requests()

    def own(name):  # a file of luisy's own: a part of its path starts with a dot
        return any(part.startswith(".") for part in name.split("/"))

    def outputs(container):
        return {name: data for name, data in azurite.blobs(container).items() if not own(name)}

    assert sorted(outputs(containers["now"])) == sorted(outputs(c1)) == UPLOADED
    for name, data in outputs(containers["now"]).items():
        assert data == (tmp_path / "now" / "up" / name).read_bytes(), name

    def fetched_outputs(container):
        blobs = [_split(r) for r in requests if r.method == "GET"]
        names = [name.split("/", 1)[1] for name, query in blobs if name.startswith(container + "/") and not query]
        return [name for name in names if not own(name)]

    assert fetched_outputs(containers["now"]) == fetched_outputs(c1) == ["oldapi/final/Total.json",
                                                                 "oldapi/interim/Doubled.pkl"]


def test_luisy2_cloud_errors_are_one_line(luisy1_python, azurite, containers, tmp_path):
    """The error cases with luisy 2: like 1.x, a missing container, a wrong key or a missing setting stops the
    run before any task runs (nothing computed, nothing written to the container); unlike 1.x, each
    is one line naming the container, the account or the setting, without a traceback; and
    ``--upload`` alone works (1.x fails on it), so only the first three fail.
    """
    c1 = containers["1.x"]
    new = run_in(luisy1_python, "now", PROJECT, ERRORS, tmp_path / "now", _errors_env(azurite, containers))
    assert new.answer, new.stderr[-3000:]
    for name in ("no container", "wrong key", "no key"):
        assert new.answer[name]["rc"] != 0 and new.answer[name]["ran"] == [], (name, new.answer[name])
        assert new.answer[name]["error"] is None, name
    assert new.answer["upload alone"] == {"rc": 0, "ran": ["Doubled", "Total"], "total": {"total": 12},
                                          "outputs": UPLOADED, "error": None}
    assert "no-such-container" in new.stderr and "LUISY_AZURE_STORAGE_KEY" in new.stderr
    assert sorted(azurite.blobs(containers["now"])) and not azurite.blobs(c1)
