"""Real object-store servers for tests: moto's S3 server and Azurite's Blob service.

Each fixture starts its server on a free loopback port (once per session), with a folder of its
own, and stops it at the end. The object it yields tells a client how to reach the server
(``url``, ``env``, ``storage_options()``), makes buckets or containers, and reports the requests
the *server* logged since the last ``mark()`` — parsed from moto's access log (werkzeug, on
stderr) and from Azurite's ``--debug`` log, so a test counts what really went over the wire.
``stop()`` and ``start()`` restart the server on the same port: Azurite keeps its data in its
folder; moto keeps everything in memory, so its buckets and objects are gone after a restart.

``moto_server`` comes with ``pip install -e ".[test]"``; ``azurite-blob`` is a Node program
(``npm install --global azurite@3.35.0``; ``.ci/run`` installs Node and Azurite). Without it the
Azure tests are skipped on a developer's machine and fail in CI, like the other system programs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import free_port, require_program

START_TIMEOUT = 30.0
LOG_TIMEOUT = 10.0
# The fixtures' own requests (readiness, log marks) start with this path; requests() leaves them out.
PROBE = "/__luisy-probe-"

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Request:
    """One request as the server logged it: ``path`` is the URL path with its query string."""

    method: str
    path: str
    status: int


class ObjectStoreServer(ABC):
    """A server process on a fixed loopback port that can be stopped and started again."""

    name = "server"

    def __init__(self, program: str, folder: Path) -> None:
        self.program = program
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._mark = 0

    # -- given by each server
    @abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the server."""

    @abstractmethod
    def parse_log(self, text: str) -> list[Request]:
        """The requests in (a part of) the server's log, in order."""

    @property
    @abstractmethod
    def env(self) -> dict[str, str]:
        """The environment variables a client reads to use this server."""

    @abstractmethod
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for the fsspec file system of this server."""

    @abstractmethod
    def create_bucket(self, name: str) -> str:
        """Make the bucket or container ``name`` outside any fsspec cache; returns its name."""

    # -- process
    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers HTTP."""
        if self.running:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Appended to, across restarts, so that a mark survives one.
        self._output = open(self.folder / "output.log", "ab")
        try:
            self._process = subprocess.Popen(self.command(), stdout=self._output, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            self.stop()
            raise RuntimeError(f"cannot start {self.name} ({self.program}): {error}") from error
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = (self.folder / "output.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} ({' '.join(self.command())}) did not start on port {self.port} "
                                   f"within {START_TIMEOUT:.0f} s; its output:\n{output}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (gracefully: Azurite writes its database on the way out)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _answers(self) -> bool:
        return self._get(f"{PROBE}ping-{uuid.uuid4().hex}") is not None

    def _get(self, path: str) -> int | None:
        """The HTTP status of a GET of ``path``; None when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    # -- request log
    def mark(self) -> None:
        """From now on, ``requests()`` reports only later requests."""
        self._mark = self._sync_log()

    def requests(self) -> list[Request]:
        """The requests the server logged since the last ``mark()`` (its own probes left out)."""
        end = self._sync_log()
        with open(self.log_path, "rb") as log:
            log.seek(self._mark)
            text = log.read(end - self._mark).decode(errors="replace")
        return [request for request in self.parse_log(text) if not request.path.startswith(PROBE)]

    def _sync_log(self) -> int:
        """The log's length once everything before now is in it.

        A running server is sent a probe request of a unique path; since the server logs requests
        in the order it receives them, the probe's line in the log means all earlier ones are there.
        """
        if not self.running:
            return self.log_path.stat().st_size if self.log_path.exists() else 0
        probe = f"{PROBE}mark-{uuid.uuid4().hex}"
        self._get(probe)
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            text = self.log_path.read_bytes() if self.log_path.exists() else b""
            if probe.encode() in text:
                return len(text)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log the request {probe} within {LOG_TIMEOUT:.0f} s "
                                   f"(log: {self.log_path})")
            time.sleep(0.02)


class MotoS3(ObjectStoreServer):
    """moto's S3 server. Its state lives in memory: a restart starts with no buckets."""

    name = "moto_server"
    region = "us-east-1"

    def __init__(self, program: str, folder: Path) -> None:
        super().__init__(program, folder)
        # werkzeug's access log goes to stderr, which start() sends to output.log.
        self.log_path = folder / "output.log"

    def command(self) -> list[str]:
        return [self.program, "-H", "127.0.0.1", "-p", str(self.port)]

    # "127.0.0.1 - - [05/Dec/2026 20:10:20] "PUT /bucket/key?uploads HTTP/1.1" 200 -"
    _LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')

    def parse_log(self, text: str) -> list[Request]:
        return [Request(method, path, int(status)) for method, path, status in self._LINE.findall(text)]

    @property
    def env(self) -> dict[str, str]:
        """What boto3 / s3fs read from the environment to use this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": self.region}

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` / ``fsspec.filesystem("s3", ...)``."""
        # No region in client_kwargs: s3fs would send it as a LocationConstraint when it makes a
        # bucket, and S3 rejects "us-east-1" there.
        return {"endpoint_url": self.url, "key": "testing", "secret": "testing"}

    def create_bucket(self, name: str) -> str:
        """Make the bucket ``name`` (with boto3, outside any fsspec cache); returns its name."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name=self.region)
        client.create_bucket(Bucket=name)
        return name


class AzuriteBlob(ObjectStoreServer):
    """Azurite's Blob service; its data lives in its folder and survives a restart."""

    name = "azurite-blob"

    def __init__(self, program: str, folder: Path) -> None:
        super().__init__(program, folder)
        self.log_path = folder / "debug.log"
        self.blob_endpoint = f"{self.url}/{AZURITE_ACCOUNT}"
        self.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                                  f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};")

    def command(self) -> list[str]:
        # --skipApiVersionCheck: the Azure SDK may be newer than this Azurite. --disableTelemetry:
        # Azurite would otherwise send usage data to Microsoft.
        return [self.program, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.folder / "data"), "--debug", str(self.log_path),
                "--skipApiVersionCheck", "--disableTelemetry"]

    # Each request's first debug line, then its last one, share the request id:
    # "<time> <id> info: BlobStorageContextMiddleware: RequestMethod=PUT RequestURL=http://127.0.0.1/acc/c/b ..."
    # "<time> <id> info: EndMiddleware: End response. TotalTimeInMS=1 StatusCode=201 ..."
    _BEGIN = re.compile(r"^\S+ (\S+) info: BlobStorageContextMiddleware: RequestMethod=(\S+) RequestURL=(\S+)", re.M)
    _END = re.compile(r"^\S+ (\S+) info: EndMiddleware: End response\. TotalTimeInMS=\d+ StatusCode=(\d+)", re.M)

    def parse_log(self, text: str) -> list[Request]:
        statuses = dict(self._END.findall(text))
        requests = []
        for request_id, method, url in self._BEGIN.findall(text):
            parts = urllib.parse.urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            requests.append(Request(method, path, int(statuses.get(request_id, 0))))
        return requests

    @property
    def env(self) -> dict[str, str]:
        """What the Azure SDK and adlfs read from the environment to use this server."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``adlfs.AzureBlobFileSystem`` / ``fsspec.filesystem("az", ...)``."""
        return {"connection_string": self.connection_string}

    def create_bucket(self, name: str) -> str:
        """Make the container ``name`` (with the Azure SDK, outside any fsspec cache); returns its name."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.create_container(name)
        return name

    def blobs(self, container: str) -> dict[str, bytes]:
        """Every blob of ``container``: name → content (read with the Azure SDK)."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            client = service.get_container_client(container)
            return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}

    def put(self, container: str, name: str, data: bytes) -> None:
        """Write one blob (overwriting), as another machine or an earlier code version would have."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.get_container_client(container).upload_blob(name, data, overwrite=True)


def _moto_program() -> str:
    # Beside the interpreter: the venv's bin folder need not be on PATH.
    program = Path(sys.executable).with_name("moto_server")
    if not program.exists():
        raise RuntimeError(f"moto_server is not installed beside {sys.executable}: pip install -e \".[test]\"")
    return str(program)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[MotoS3]:
    """A running moto S3 server on a free loopback port, for the whole session."""
    server = MotoS3(_moto_program(), tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[AzuriteBlob]:
    """A running Azurite Blob service on a free loopback port, for the whole session."""
    program = require_program("azurite-blob", "npm; then `npm install --global azurite@3.35.0`")
    server = AzuriteBlob(program, tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket_name() -> str:
    """A fresh bucket / container name (lower case, 3-63 characters, valid for S3 and Azure)."""
    return f"luisy-{uuid.uuid4().hex[:12]}"

