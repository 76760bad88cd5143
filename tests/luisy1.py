"""The archived luisy 1.4.7 in a virtualenv of its own, to run the same task code against 1.x and this luisy.

The virtualenv is made once (about a minute, from PyPI) under ``~/.cache/luisy-tests`` or
``$LUISY1_VENV``, and reused. A differential test writes one project, runs one script with both
interpreters — each from its own copy of the project, with its own working directory — and
compares what the script printed as JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = "1.4.7"
# luisy 1.4.7 predates pandas 3 and pipdeptree 3; old grpcio wheels do not build on Python 3.11.
REQUIREMENTS = [f"luisy=={VERSION}", "pandas<3", "pipdeptree<3", "grpcio>=1.60"]


def venv_path() -> Path:
    default = Path.home() / ".cache" / "luisy-tests" / f"luisy-{VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    return Path(os.environ.get("LUISY1_VENV", default))


def ensure_venv() -> Path:
    """The 1.x virtualenv's python, made first if it is not there (under a lock: one maker at a time)."""
    path = venv_path()
    python = path / "bin" / "python"
    done = path / ".complete"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            venv.create(path, with_pip=True)
            installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS],
                                       capture_output=True, text=True)
            if installed.returncode != 0:
                raise RuntimeError(f"could not install luisy {VERSION} into {path}:\n{installed.stderr[-3000:]}")
            done.write_text(" ".join(REQUIREMENTS))
    return python


@dataclass
class Outcome:
    """What one run of the script did: its exit status, its JSON answer, and its output."""

    returncode: int
    answer: Any
    stdout: str
    stderr: str


def run_both(luisy1_python: Path, project: dict[str, str], script: str, root: Path,
             env: dict[str, str] | None = None) -> tuple[Outcome, Outcome]:
    """Run ``script`` (Python; it prints its answer as the last line, as JSON) in a fresh copy of
    ``project`` below ``root/"1.x"`` with luisy 1.x and below ``root/"now"`` with this luisy."""
    return tuple(run_in(luisy1_python, name, project, script, root / name, env)  # type: ignore[return-value]
                 for name in ("1.x", "now"))


def run_in(luisy1_python: Path, which: str, project: dict[str, str], script: str, where: Path,
           env: dict[str, str] | None = None) -> Outcome:
    """Run ``script`` with luisy 1.x (``which="1.x"``) or this luisy (``"now"``) in ``project``,
    written at ``where`` over what is there (so that one can work on what the other made)."""
    if which == "1.x":
        return _run(luisy1_python, project, script, where, env, [])
    # This checkout's luisy, ahead of any luisy installed in the interpreter (an editable install of
    # another checkout would win otherwise).
    return _run(Path(sys.executable), project, script, where, env, [str(Path(__file__).resolve().parents[1])])


def _run(python: Path, project: dict[str, str], script: str, where: Path, env: dict[str, str] | None,
         extra_path: list[str]) -> Outcome:
    # 1.x fingerprints a project's dependencies from the requirements.txt beside (or above) it.
    for rel, source in {"requirements.txt": "luisy\npandas\nnumpy\n", **project, "script.py": script}.items():
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    (where / "data").mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "LUISY_WORKING_DIR", "WORKING_DIR", "VIRTUAL_ENV")}
    pythonpath = os.pathsep.join([str(where), *extra_path])
    full_env.update({"WORKING_DIR": str(where / "data"), "PYTHONPATH": pythonpath, **(env or {})})
    result = subprocess.run([str(python), "script.py"], cwd=where, env=full_env, capture_output=True, text=True,
                            timeout=300)
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    return Outcome(result.returncode, answer, result.stdout, result.stderr)
