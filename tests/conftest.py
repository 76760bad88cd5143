from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# The object-store servers' fixtures (moto_s3, azurite).
pytest_plugins = ["object_stores"]


@pytest.fixture(autouse=True)
def _no_working_dir_from_environment(monkeypatch):
    """Tests must not depend on the developer's LUISY_WORKING_DIR / WORKING_DIR."""
    for name in ("LUISY_WORKING_DIR", "WORKING_DIR"):
        monkeypatch.delenv(name, raising=False)


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write a small importable project below ``root``; keys are relative paths."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def run_luisy(args: list[str], cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``luisy`` console script in a fresh process.

    One that has not ended after ``timeout`` seconds is killed with every process it started (an
    item process blocked on a FIFO too), and the test fails with ``subprocess.TimeoutExpired``.
    """
    script = Path(sys.executable).with_name("luisy")
    full_env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    full_env.update(env or {})
    with subprocess.Popen([str(script), *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def nested_pytest(args: list[str], cwd: Path, tmp_path: Path, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess:
    """Run pytest in a fresh process, with a temporary folder of its own: under the default one it
    would number its folders beside this session's and prune them as its own."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'nested-pytest'}", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def require_program(name: str, package: str) -> str:
    """The path of a system program a test needs.

    Missing: the test is skipped on a developer's machine (the README's test command needs only
    Python and pip), and fails in CI, where ``.ci/run`` installs it and sets
    ``LUISY_REQUIRE_SYSTEM_TOOLS=1``.
    """
    path = shutil.which(name)
    if path is None:
        message = f"needs `{name}` (Debian package {package}; .ci/run installs it)"
        if os.environ.get("LUISY_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def frames(luisy_working_dir):
    """Four .npy frames and a note in the input folder of ``directory_tasks.Frames``."""
    import directory_tasks
    import numpy as np

    directory_tasks.PROCESSED.clear()
    folder = luisy_working_dir / "dirs" / "raw" / "frames"
    folder.mkdir(parents=True)
    for i in range(4):
        np.save(folder / f"f{i}.npy", np.full((2, 2), i))
    (folder / "notes.txt").write_text("ignored by the pattern")
    return folder


def status_rows(stdout: str) -> dict[str, dict[str, str]]:
    """``luisy status``'s table as task → column → cell (cells cut at the header's column starts)."""
    header, *lines = stdout.splitlines()
    names = re.findall(r"\S+(?: \S+)*", header)
    starts = [header.index(name) for name in names] + [None]
    return {line[: starts[1]].strip(): {name: line[start:end].strip()
                                        for name, start, end in zip(names, starts[:-1], starts[1:], strict=True)}
            for line in lines}


@pytest.fixture(scope="session")
def luisy1_python():
    """The python of a virtualenv with luisy 1.4.7 (made on first use; see ``luisy1.py``)."""
    from luisy1 import ensure_venv

    return ensure_venv()


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def luigid_api(url: str, method: str, **data) -> dict:
    """The response of luigid's ``/api/<method>``."""
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"{url}/api/{method}?{query}", timeout=10) as response:
        return json.loads(response.read())["response"]


@contextmanager
def running_luigid(cwd: Path, working_dir: Path) -> Iterator[str]:
    """``luisy scheduler`` on a free loopback port, until the block ends; yields its URL."""
    port = free_port()
    luisy_cmd = Path(sys.executable).with_name("luisy")
    server = subprocess.Popen([str(luisy_cmd), "scheduler", "--port", str(port), "--working-dir", str(working_dir)],
                              cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            luigid_api(url, "task_list", status="DONE")
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"luigid did not start: {server.stderr.read()}")
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
