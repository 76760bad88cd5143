"""The object-store fixtures run real servers: moto's S3 and Azurite's Blob service.

Clients are the real fsspec file systems (s3fs, adlfs) and the servers' own logs are the witness of
what went over the wire.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
from object_stores import AzuriteBlob, MotoS3, ObjectStoreServer, Request

FILES = {"a.txt": b"alpha", "sub/b.txt": b"beta", "sub/deeper/c.txt": b"gamma"}


def _s3(server: MotoS3):
    import s3fs

    # A fresh instance: fsspec hands back a cached one for equal arguments, with its listings cache.
    return s3fs.S3FileSystem(**server.storage_options(), skip_instance_cache=True)


def _azure(server: AzuriteBlob):
    import adlfs

    return adlfs.AzureBlobFileSystem(**server.storage_options(), skip_instance_cache=True)


def _round_trip(fs, server: ObjectStoreServer, bucket: str, object_path: str) -> None:
    """Write, read, list and delete FILES below ``bucket``; the server logs one PUT per file."""
    server.mark()
    for name, data in FILES.items():
        fs.pipe_file(f"{bucket}/{name}", data)
    puts = [request for request in server.requests() if request.method == "PUT"]
    assert sorted(request.path for request in puts) == sorted(object_path.format(bucket=bucket, name=name)
                                                              for name in FILES)
    assert {request.status for request in puts} == {201 if isinstance(server, AzuriteBlob) else 200}

    assert {name: fs.cat_file(f"{bucket}/{name}") for name in FILES} == FILES
    assert sorted(fs.find(bucket)) == sorted(f"{bucket}/{name}" for name in FILES)
    assert fs.info(f"{bucket}/sub/b.txt")["size"] == 4

    fs.rm(f"{bucket}/sub", recursive=True)
    fs.invalidate_cache()
    assert fs.find(bucket) == [f"{bucket}/a.txt"]
    fs.rm_file(f"{bucket}/a.txt")
    assert not fs.exists(f"{bucket}/a.txt")


def test_s3_round_trip(moto_s3, bucket_name):
    fs = _s3(moto_s3)
    moto_s3.create_bucket(bucket_name)
    _round_trip(fs, moto_s3, bucket_name, "/{bucket}/{name}")


def test_azure_round_trip(azurite, bucket_name):
    fs = _azure(azurite)
    azurite.create_bucket(bucket_name)
    _round_trip(fs, azurite, bucket_name, "/devstoreaccount1/{bucket}/{name}")


def test_requests_since_mark_only(moto_s3, bucket_name):
    fs = _s3(moto_s3)
    moto_s3.create_bucket(bucket_name)
    fs.pipe_file(f"{bucket_name}/before", b"x")
    moto_s3.mark()
    assert moto_s3.requests() == []
    fs.cat_file(f"{bucket_name}/before")
    # s3fs reads with a HEAD (size, ETag) and then a GET.
    assert moto_s3.requests() == [Request("HEAD", f"/{bucket_name}/before", 200),
                                  Request("GET", f"/{bucket_name}/before", 200)]


@pytest.mark.parametrize("server_fixture", ["moto_s3", "azurite"])
def test_env_reaches_the_server(server_fixture, bucket_name, request, tmp_path):
    """A client configured by ``server.env`` alone (no storage options) talks to the server."""
    server = request.getfixturevalue(server_fixture)
    server.create_bucket(bucket_name)
    protocol = "s3" if server_fixture == "moto_s3" else "az"
    script = textwrap.dedent(f"""
        import fsspec
        fs = fsspec.filesystem({protocol!r})
        fs.pipe_file("{bucket_name}/from-env", b"env")
        print(fs.cat_file("{bucket_name}/from-env").decode())
    """)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **server.env}
    server.mark()
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "env"
    methods = [r.method for r in server.requests() if r.path.endswith(f"/{bucket_name}/from-env")]
    assert methods[0] == "PUT" and "GET" in methods


def test_azurite_keeps_its_data_across_a_restart(azurite, bucket_name):
    fs = _azure(azurite)
    azurite.create_bucket(bucket_name)
    fs.pipe_file(f"{bucket_name}/kept", b"still here")
    port = azurite.port
    azurite.stop()
    try:
        # Nothing listens any more (a client would retry for a minute before it gave up).
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        azurite.start()
    assert azurite.port == port
    assert _azure(azurite).cat_file(f"{bucket_name}/kept") == b"still here"


def test_moto_loses_its_data_on_a_restart(moto_s3, bucket_name):
    fs = _s3(moto_s3)
    moto_s3.create_bucket(bucket_name)
    fs.pipe_file(f"{bucket_name}/gone", b"in memory")
    moto_s3.stop()
    moto_s3.start()
    with pytest.raises(FileNotFoundError):
        _s3(moto_s3).cat_file(f"{bucket_name}/gone")


def test_a_server_that_does_not_start_is_one_clear_error(tmp_path):
    # The interpreter does not understand Azurite's options: it exits at once.
    server = AzuriteBlob(sys.executable, tmp_path)
    with pytest.raises(RuntimeError, match=r"azurite-blob .* did not start on port \d+ .*\n.*blobHost"):
        server.start()
    assert not server.running


def test_a_missing_program_is_one_clear_error(tmp_path):
    server = MotoS3(str(tmp_path / "no-such-moto_server"), tmp_path)
    with pytest.raises(RuntimeError, match=r"cannot start moto_server .*no-such-moto_server"):
        server.start()
