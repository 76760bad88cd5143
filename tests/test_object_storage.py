"""A working directory in an object store: real S3 (moto) and Azure Blob (Azurite) servers.

Each test writes a project, puts its raw data into a fresh bucket (container) with fsspec, and
runs the ``luisy`` command with the server's environment, as a user would; what is in the store
is read back with fsspec, and what went over the wire is taken from the server's own log.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from conftest import run_luisy, write_project

pytestmark = pytest.mark.slow  # see pyproject.toml: each test starts several luisy processes

PROJECT = {
    "lake/__init__.py": "",
    "lake/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.csv_output
        class Table(luisy.ExternalTask):
            def get_file_name(self):
                return "table"


        @luisy.interim
        @luisy.requires(Table)
        class Doubled(luisy.Task):
            def run(self):
                df = self.read_input()
                self.write(df.assign(x=df["x"] * 2))


        @luisy.raw
        @luisy.directory_input(pattern="*.npy")
        class Frames(luisy.ExternalTask):
            def get_folder_name(self):
                return "frames"


        @luisy.interim
        @luisy.requires(Frames)
        @luisy.directory_output(format="npy")
        class Scaled(luisy.DirectoryTask):
            processes = 2
            checkpoint_seconds = 0

            def process(self, name, obj):
                if obj.size == 0:
                    raise ValueError("an empty frame")
                return obj * 10


        @luisy.final
        @luisy.requires(Doubled, Scaled)
        @luisy.json_output
        class Total(luisy.Task):
            def run(self):
                table, frames = self.input()
                self.write({"table": int(table.read()["x"].sum()),
                            "frames": float(sum(a.sum() for a in frames.read()))})
    ''',
}


@pytest.fixture(params=["s3", "az"])
def store(request, tmp_path):
    """A fresh bucket (container) on a running server: its URL prefix, the environment that
    reaches it, an fsspec file system on it, and the server."""
    return _store(request.param, request.getfixturevalue("moto_s3" if request.param == "s3" else "azurite"),
                  tmp_path)


@pytest.fixture
def azure_store(azurite, tmp_path):
    """:func:`store` on Azurite only: it keeps its objects when stopped and started again."""
    return _store("az", azurite, tmp_path)


def _store(scheme, server, tmp_path):
    bucket = server.create_bucket(f"lake-{uuid.uuid4().hex[:10]}")
    fs = fsspec.filesystem(scheme, skip_instance_cache=True, **server.storage_options())
    write_project(tmp_path, PROJECT)
    return Store(scheme, bucket, server, fs, tmp_path)


class Store:
    def __init__(self, scheme, bucket, server, fs, cwd):
        self.scheme, self.bucket, self.server, self.fs, self.cwd = scheme, bucket, server, fs, cwd
        self.root = f"{bucket}/data"
        self.url = f"{scheme}://{self.root}"

    def luisy(self, *args, env=None, timeout=300):
        return run_luisy([*args, "--working-dir", self.url], self.cwd,
                         env={**self.server.env, "PYTHONPATH": str(self.cwd), **(env or {})}, timeout=timeout)

    def put_frames(self, count, start=0):
        for i in range(start, start + count):
            data = io.BytesIO()
            np.save(data, np.full((4, 4), i, dtype=np.int64))
            self.fs.pipe_file(f"{self.root}/lake/raw/frames/f{i:03d}.npy", data.getvalue())

    def put_table(self, values):
        self.fs.pipe_file(f"{self.root}/lake/raw/table.csv", pd.DataFrame({"x": values}).to_csv(index=False).encode())

    def objects(self, below=""):
        self.fs.invalidate_cache()
        return sorted(p[len(self.root) + 1:] for p in self.fs.find(f"{self.root}/{below}".rstrip("/")))

    def read_json(self, rel):
        self.fs.invalidate_cache()
        return json.loads(self.fs.cat_file(f"{self.root}/{rel}"))


def expected_total(frames, table):
    return {"table": 2 * sum(table), "frames": float(10 * 16 * sum(frames))}


def test_a_pipeline_runs_in_a_store_and_a_rerun_writes_nothing(store):
    store.put_table([1, 2, 3])
    store.put_frames(12)
    first = store.luisy("run", "lake.tasks:Total")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"output: {store.url}/lake/final/Total.json" in first.stdout, "paths in a store are shown as URLs"
    assert store.read_json("lake/final/Total.json") == expected_total(range(12), [1, 2, 3])
    items = [o for o in store.objects("lake/interim/Scaled") if o.endswith(".npy")]
    assert len(items) == 12
    assert any(o.startswith("lake/.luisy-records/") for o in store.objects("lake")), "records are in the store"
    assert store.objects(".luisy-journal"), "the journal is in the store"

    store.server.mark()
    again = store.luisy("run", "lake.tasks:Total")
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr
    requests = store.server.requests()
    assert not [r for r in requests if r.method in ("PUT", "POST", "DELETE")], "a no-op rerun writes nothing"
    assert not [r for r in requests if r.method in ("GET", "HEAD") and "/interim/Scaled/f" in r.path], \
        "no item is read or looked at: the manifest knows"
    listings = [r for r in requests if "prefix=" in r.path and "Scaled" in r.path and "staging" not in r.path]
    assert not listings, f"the items are not listed: {listings}"
    # The input folder is listed once (one page here): its listing answers whether it exists, its
    # fingerprint and which items there are.
    inputs = [r for r in requests if "prefix=" in r.path and "frames" in r.path]
    assert len(inputs) == 1, inputs


def test_new_input_files_make_only_their_items(store):
    store.put_table([1])
    store.put_frames(10)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    store.put_frames(3, start=10)
    store.server.mark()
    result = store.luisy("run", "lake.tasks:Total")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 processed" in result.stdout
    item_puts = [r for r in store.server.requests() if r.method == "PUT" and "/interim/Scaled/f" in r.path]
    assert len({r.path.split("?")[0] for r in item_puts}) == 3, item_puts
    assert store.read_json("lake/final/Total.json") == expected_total(range(13), [1])


def test_plan_status_verify_items_history_and_show_work_in_a_store(store):
    store.put_table([5])
    store.put_frames(4)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    plan = store.luisy("plan", "lake.tasks:Total")
    assert plan.returncode == 0 and "nothing to run" in plan.stdout, plan.stdout + plan.stderr
    status = store.luisy("status", "lake.tasks:Total")
    assert status.returncode == 0 and status.stdout.count("current") == 3, status.stdout + status.stderr
    verify = store.luisy("verify", "lake.tasks:Total")
    assert verify.returncode == 0 and "4 items checked, 0 bad" in verify.stdout, verify.stdout + verify.stderr
    items = store.luisy("items", "lake.tasks:Scaled")
    assert items.returncode == 0 and f"{store.url}/lake/raw/frames/f003.npy" in items.stdout, items.stdout
    history = store.luisy("history")
    assert history.returncode == 0 and "Total()" in history.stdout and "SUCCESS" in history.stdout, history.stdout
    show = run_luisy(["show", f"{store.url}/lake/interim/Scaled/f002.npy", "--working-dir", store.url], store.cwd,
                     env={**store.server.env, "PYTHONPATH": str(store.cwd)})
    assert show.returncode == 0, show.stdout + show.stderr
    assert "item of a directory output" in show.stdout and f"{store.url}/lake/raw/frames/f002.npy" in show.stdout


def test_verify_finds_a_damaged_item_and_repair_makes_only_it_again(store):
    store.put_table([1])
    store.put_frames(5)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    store.fs.pipe_file(f"{store.root}/lake/interim/Scaled/f001.npy", b"not a frame")
    found = store.luisy("verify", "lake.tasks:Total")
    assert found.returncode == 1 and "f001.npy has 11 bytes" in found.stdout, found.stdout + found.stderr
    assert store.luisy("verify", "lake.tasks:Total", "--repair").returncode == 0
    rerun = store.luisy("run", "lake.tasks:Total")
    assert rerun.returncode == 0 and "1 processed" in rerun.stdout, rerun.stdout + rerun.stderr
    assert store.read_json("lake/final/Total.json") == expected_total(range(5), [1])


def test_a_missing_bucket_and_wrong_credentials_are_one_line(store):
    missing = run_luisy(["run", "lake.tasks:Total", "--working-dir", f"{store.scheme}://no-such-bucket-{uuid.uuid4().hex[:6]}/d"],
                        store.cwd, env={**store.server.env, "PYTHONPATH": str(store.cwd)})
    assert missing.returncode == 2
    assert "does not exist (create it first)" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1, \
        missing.stderr
    if store.scheme == "s3":
        wrong = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    else:
        wrong = {"AZURE_STORAGE_CONNECTION_STRING": store.server.env["AZURE_STORAGE_CONNECTION_STRING"].replace(
            str(store.server.port), "9")}
    unreachable = store.luisy("run", "lake.tasks:Total", env=wrong, timeout=120)
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    lines = unreachable.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luisy: error:") and store.url in lines[0], unreachable.stderr


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {cwd!r})
import luisy
from luisy.directory import remote
point = {point!r}
original = remote.RemoteFolder._replace
def replace(self, manifest, tag, current):
    if point == "before the manifest":
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, manifest, tag, current)
    if point == "after the manifest":
        os.kill(os.getpid(), signal.SIGKILL)
remote.RemoteFolder._replace = replace
from lake.tasks import Total
luisy.build([Total()], working_dir={url!r})
"""


@pytest.mark.parametrize("point", ["before the manifest", "after the manifest"])
def test_kill_9_during_a_publish_leaves_one_state_and_the_rerun_converges(store, point):
    store.put_table([2])
    store.put_frames(6)
    script = KILL_SCRIPT.format(cwd=str(store.cwd), point=point, url=store.url)
    killed = subprocess.run([sys.executable, "-c", script], cwd=store.cwd, capture_output=True, text=True,
                            env={**os.environ, **store.server.env}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    manifest = [o for o in store.objects("lake/interim/Scaled") if o.endswith("_luisy_manifest.json")]
    assert bool(manifest) == (point == "after the manifest")
    rerun = store.luisy("run", "lake.tasks:Total")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    if point == "before the manifest":
        assert "kept from the interrupted run" in rerun.stdout, "its checkpointed items are taken over"
    assert store.read_json("lake/final/Total.json") == expected_total(range(6), [2])
    assert store.luisy("verify", "lake.tasks:Total").returncode == 0


def _slow_run_until(store, items):
    """``luisy run`` in the background, with items that take 0.1 s each, once ``items`` of them
    are in the store."""
    slow = dict(PROJECT)
    slow["lake/tasks.py"] = PROJECT["lake/tasks.py"].replace(
        "return obj * 10", "import time; time.sleep(0.1); return obj * 10")
    write_project(store.cwd, slow)
    env = {**os.environ, **store.server.env, "PYTHONPATH": str(store.cwd)}
    script = Path(sys.executable).with_name("luisy")
    process = subprocess.Popen([str(script), "run", "lake.tasks:Total", "--working-dir", store.url], cwd=store.cwd,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len([o for o in store.objects("lake/interim/Scaled") if o.endswith(".npy")]) >= items:
            return process
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no {items} items were uploaded: {process.communicate()}")


def test_kill_9_while_items_upload_then_the_rerun_takes_them_over(store):
    store.put_table([1])
    store.put_frames(40)
    process = _slow_run_until(store, items=10)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert not [o for o in store.objects("lake/interim/Scaled") if o.endswith("_luisy_manifest.json")]
    rerun = store.luisy("run", "lake.tasks:Total")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "kept from the interrupted run" in rerun.stdout, rerun.stdout
    assert store.read_json("lake/final/Total.json") == expected_total(range(40), [1])


def test_two_runs_publishing_one_output_at_once_lose_nothing(store, monkeypatch):
    """The second publish finds another manifest than the one it started from: it fails with one
    line and publishes nothing; the first one's items are all there."""
    for name, value in store.server.env.items():
        monkeypatch.setenv(name, value)
    import luisy
    from luisy.directory.remote import PublishConflictError
    from luisy.directory.target import DirectoryTarget

    with luisy.working_dir(store.url) as root:
        target = DirectoryTarget(os.path.join(root, "shared", "out"), file_format=luisy.formats.PICKLE, owner="Shared")
        first, second = target.writer(), target.writer()
        for i in range(3):
            first.write(f"a{i}", {"by": "first", "i": i})
            second.write(f"a{i}", {"by": "second", "i": i})
        # An item made twice in one run is uploaded twice (objects are only created, never replaced).
        first.write("a0", {"by": "first", "i": 0, "again": True})
        second.write("a1", {"by": "second", "i": 1, "again": True})
        second.commit()
        assert len([n for n in store.objects("shared/out") if n.endswith(".pkl")]) == 3 + 4, \
            "an upload a later one of the same item replaced is removed at the publish (the first run's 4 wait)"
        with pytest.raises(PublishConflictError, match="another run published"):
            first.commit()
        assert dict(DirectoryTarget(target.path).items()) == {
            **{f"a{i}": {"by": "second", "i": i} for i in range(3)}, "a1": {"by": "second", "i": 1, "again": True}}
        names = store.objects("shared/out")
        assert len([n for n in names if n.endswith(".pkl")]) == 3, "the losing run's uploads are all removed"


def test_a_server_stopped_mid_run_fails_the_task_and_the_rerun_converges(azure_store):
    store = azure_store
    store.put_table([3])
    store.put_frames(30)
    process = _slow_run_until(store, items=5)
    store.server.stop()
    try:
        out, err = process.communicate(timeout=240)
    finally:
        store.server.start()
    assert process.returncode == 1, out + err
    assert "Scaled()" in out and store.url in out + err, out + err
    rerun = store.luisy("run", "lake.tasks:Total")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert store.read_json("lake/final/Total.json") == expected_total(range(30), [3])


FORMATS = {
    "lake/__init__.py": "",
    "lake/formats.py": '''
        import luisy
        import numpy as np
        import pandas as pd

        FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


        def task(decorator, obj):
            @luisy.interim
            @decorator
            class Made(luisy.Task):
                def get_folder_name(self):
                    return "made"

                def run(self):
                    self.write(obj)
            Made.__name__ = Made.__qualname__ = f"Made_{decorator.__name__}"
            return Made


        MADE = {
            "pickle": task(luisy.pickle_output, {"k": [1, 2]}),
            "csv": task(luisy.csv_output, FRAME),
            "parquet": task(luisy.parquet_output, FRAME),
            "feather": task(luisy.feather_output, FRAME),
            "json": task(luisy.json_output, {"k": [1, 2]}),
            "xlsx": task(luisy.xlsx_output, FRAME),
            "hdf": task(luisy.hdf_output, FRAME),
            "h5": task(luisy.h5_output, {"stack": np.arange(6).reshape(2, 3)}),
            "npy": task(luisy.npy_output, np.arange(5)),
            "text": task(luisy.text_output, "hello"),
            "parquetdir": task(luisy.parquetdir_output, FRAME),
        }


        class Everything(luisy.WrapperTask):
            def requires(self):
                return [cls() for cls in MADE.values()]
    ''',
}


def test_every_output_format_is_written_and_read_back_from_a_store(store, monkeypatch):
    write_project(store.cwd, FORMATS)
    result = store.luisy("run", "lake.formats:Everything")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, value in store.server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(store.cwd))
    from lake import formats

    import luisy

    with luisy.working_dir(store.url):
        for kind, cls in formats.MADE.items():
            got = cls().read()
            if kind in ("csv", "parquet", "feather", "xlsx", "hdf", "parquetdir"):
                pd.testing.assert_frame_equal(got.reset_index(drop=True), formats.FRAME, check_dtype=False)
            elif kind == "h5":
                assert np.array_equal(np.asarray(got["stack"]), np.arange(6).reshape(2, 3)), kind
            elif kind == "npy":
                assert np.array_equal(got, np.arange(5))
            elif kind == "text":
                assert got.strip() == "hello"
            else:
                assert got == {"k": [1, 2]}, kind


@pytest.fixture
def s3_store(moto_s3, tmp_path):
    """:func:`store` on moto's S3 only."""
    return _store("s3", moto_s3, tmp_path)


def test_items_made_on_a_dask_cluster_go_to_the_store(s3_store, tmp_path, monkeypatch):
    """Each Dask worker makes its own client from the same environment and uploads its items;
    the luigi worker alone publishes."""
    from test_dask import _start_cluster, _stop

    store = s3_store
    store.put_table([4])
    store.put_frames(8)
    for name, value in store.server.env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "cluster").mkdir()
    cluster, _ = _start_cluster(tmp_path / "cluster", store.cwd, workers=2)
    try:
        result = store.luisy("run", "lake.tasks:Total", "--dask-scheduler", cluster.address)
    finally:
        _stop(cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    assert store.read_json("lake/final/Total.json") == expected_total(range(8), [4])
    assert store.luisy("verify", "lake.tasks:Total").returncode == 0


def test_client_options_come_from_the_luisy_storage_section(s3_store):
    """Without any AWS_* variable, ``[luisy.storage]`` in luigi.cfg alone reaches the server."""
    store = s3_store
    store.put_table([7])
    store.put_frames(2)
    options = store.server.storage_options()
    (store.cwd / "luigi.cfg").write_text("[luisy.storage]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()))
    no_aws = {name: "" for name in store.server.env}
    result = run_luisy(["run", "lake.tasks:Total", "--working-dir", store.url], store.cwd,
                       env={**no_aws, "AWS_ACCESS_KEY_ID": "", "PYTHONPATH": str(store.cwd)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert store.read_json("lake/final/Total.json") == expected_total(range(2), [7])
    (store.cwd / "luigi.cfg").write_text("[luisy.storage]\nendpoint_url = http://127.0.0.1:9\n")
    refused = run_luisy(["run", "lake.tasks:Total", "--working-dir", store.url], store.cwd,
                        env={**no_aws, "PYTHONPATH": str(store.cwd)})
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_a_wrong_account_key_is_one_line_naming_the_credentials_to_check(azure_store):
    store = azure_store
    connection = store.server.env["AZURE_STORAGE_CONNECTION_STRING"]
    key = next(part for part in connection.split(";") if part.startswith("AccountKey="))
    wrong = connection.replace(key, "AccountKey=" + "A" * 86 + "==")
    refused = store.luisy("run", "lake.tasks:Total", env={"AZURE_STORAGE_CONNECTION_STRING": wrong}, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "permission denied" in lines[0] and "AZURE_STORAGE_CONNECTION_STRING" in lines[0], \
        refused.stderr


def test_a_credential_that_may_read_but_not_write_fails_the_task_with_one_line(azure_store):
    """A container SAS with read and list permissions only: the run reads its inputs, and the
    first write is refused; the task fails with one line naming the credentials, nothing is written."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    from object_stores import AZURITE_ACCOUNT, AZURITE_KEY

    store = azure_store
    store.put_table([1, 2])
    store.put_frames(2)
    before = store.objects()
    sas = generate_container_sas(AZURITE_ACCOUNT, store.bucket, account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    read_only = f"BlobEndpoint={store.server.blob_endpoint};SharedAccessSignature={sas}"
    refused = store.luisy("run", "lake.tasks:Total", env={"AZURE_STORAGE_CONNECTION_STRING": read_only}, timeout=180)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    failed = [line for line in refused.stdout.splitlines() if line.strip().startswith("failed:")]
    assert failed and all("permission denied" in line and "AZURE_STORAGE_CONNECTION_STRING" in line
                          for line in failed), refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    assert store.objects() == before


def test_what_another_client_writes_is_seen_at_once(s3_store, monkeypatch):
    """No listing is cached: a manifest or item another process wrote is seen by the next call."""
    from luisy import storage

    store = s3_store
    for name, value in store.server.env.items():
        monkeypatch.setenv(name, value)
    remote = storage.for_path(f"/s3:/{store.root}")
    folder = f"/s3:/{store.root}/out"
    store.fs.pipe_file(f"{store.root}/out/a.npy", b"1")
    assert [e.rel for e in remote.walk(folder)] == ["a.npy"]
    before = remote.token(f"{folder}/a.npy")
    store.fs.pipe_file(f"{store.root}/out/b.npy", b"2")
    store.fs.pipe_file(f"{store.root}/out/a.npy", b"another")
    assert remote.exists(f"{folder}/b.npy") and remote.token(f"{folder}/a.npy") != before


def test_verify_leaves_alone_what_a_writer_at_work_uploaded(s3_store):
    store = s3_store
    store.put_table([1])
    store.put_frames(3)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    # Another run at work: its checkpoint names an item it uploaded, not yet published.
    store.fs.pipe_file(f"{store.root}/lake/interim/Scaled/f099.npy", b"made by a run at work")
    store.fs.pipe_file(f"{store.root}/lake/interim/Scaled/.luisy-staging/9999999999999-abcd1234.json",
                       json.dumps({"state": {}, "written": time.time(),
                                   "items": {"f099": ["f099.npy", 21, "c", None]}}).encode())
    repaired = store.luisy("verify", "lake.tasks:Total", "--repair")
    assert repaired.returncode == 0 and "3 items checked, 0 bad" in repaired.stdout, repaired.stdout
    assert "lake/interim/Scaled/f099.npy" in store.objects("lake/interim/Scaled")


def test_a_corrupt_manifest_in_a_store_is_replaced_by_the_next_publish(s3_store):
    store = s3_store
    store.put_table([1])
    store.put_frames(3)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    store.fs.pipe_file(f"{store.root}/lake/interim/Scaled/_luisy_manifest.json", b"{not json")
    rerun = store.luisy("run", "lake.tasks:Total")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert store.luisy("verify", "lake.tasks:Total").returncode == 0


def test_luigid_state_is_not_put_in_a_store(s3_store):
    store = s3_store
    refused = run_luisy(["scheduler", "--working-dir", store.url, "--port", "1"], store.cwd,
                        env=store.server.env, timeout=60)
    assert refused.returncode == 2 and "luigid keeps its state in local files" in refused.stderr, refused.stderr


def test_the_page_of_a_pipeline_in_a_store_shows_its_outputs_and_items(s3_store):
    """``luisy serve`` reads a working directory in a store as it reads a local one: states, a
    directory task's items, and a small result's size and contents."""
    import urllib.request

    from conftest import free_port

    store = s3_store
    store.put_table([2, 3])
    store.put_frames(4)
    assert store.luisy("run", "lake.tasks:Total").returncode == 0
    port = free_port()
    env = {**os.environ, **store.server.env, "PYTHONPATH": str(store.cwd)}
    env.pop("LUISY_WORKING_DIR", None)
    server = subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "serve", "lake.tasks:Total",
                               "--working-dir", store.url, "--port", str(port)], cwd=store.cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.read().decode()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = json.loads(get("/api/status"))
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
        assert {row["family"]: row["state"] for row in status} == {
            "Table": "input", "Doubled": "complete", "Frames": "input", "Scaled": "complete", "Total": "complete"}
        items = json.loads(get("/api/items?task=Scaled"))
        assert [row["name"] for row in items["items"]] == ["f000", "f001", "f002", "f003"]
        total = next(row for row in status if row["family"] == "Total")
        page = get("/task/" + urllib.request.quote(total["task_id"], safe=""))
        size = len(store.fs.cat_file(f"{store.root}/lake/final/Total.json"))
        assert f"<th>size</th><td>{size}</td>" in page
        assert f"<td>table</td><td>{store.read_json('lake/final/Total.json')['table']}</td>" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
