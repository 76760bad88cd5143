"""What ``luisy serve --allow-actions`` may do: run a task of the pipeline with parameters edited
in a form, keep a ``luisy watch`` running, verify and repair.

Each action is a ``luisy`` command in a child process, as a person would type it: the server
imports the task module to draw the graph and build the forms, and runs no code of the tasks
itself. The form of a task is built from its luigi parameters (kind, default, description), and
what is sent is parsed by those parameters before anything starts.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import luigi

__all__ = ["Actions", "Field", "Job", "fields"]

#: What a job's page shows of its output: the last lines, from at most the last bytes.
OUTPUT_LINES, OUTPUT_TAIL_BYTES = 40, 1 << 16


@dataclass
class Field:
    """One input of a task's form, from one luigi parameter."""

    name: str
    #: ``text``, ``number``, ``checkbox``, ``date`` or ``select``.
    kind: str
    value: str
    description: str = ""
    choices: list[str] = field(default_factory=list)
    step: str = ""


def fields(task: luigi.Task) -> list[Field]:
    """The form of ``task``'s parameters, filled with its values."""
    values = task.to_str_params(only_significant=True)
    found = []
    for name, param in task.get_params():
        if not param.significant:
            continue
        kind, step, choices = "text", "", []
        if isinstance(param, luigi.BoolParameter):
            kind = "checkbox"
        elif isinstance(param, (luigi.IntParameter, luigi.FloatParameter)):
            kind, step = "number", "1" if isinstance(param, luigi.IntParameter) else "any"
        elif isinstance(param, luigi.DateParameter):
            kind = "date"
        elif isinstance(param, luigi.ChoiceParameter):
            kind, choices = "select", sorted(param.serialize(choice) for choice in param._choices)  # a set in luigi
        found.append(Field(name, kind, values.get(name, ""), param.description or "", choices, step))
    return found


def parsed(task: luigi.Task, sent: Mapping[str, str]) -> tuple[luigi.Task | None, dict[str, str]]:
    """The task of ``task``'s class with the parameters ``sent`` (text, as a form sends it), or
    ``None`` and what is wrong with each parameter that does not parse."""
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, param in task.get_params():
        if not param.significant:
            continue
        text = ("true" if sent.get(name) in ("on", "true") else "false") if isinstance(param, luigi.BoolParameter) \
            else sent.get(name, "")
        try:
            param.normalize(param.parse(text))
        except Exception as error:  # each kind of parameter says what it expects in its own way
            errors[name] = f"{name}: {text!r} is not a valid {type(param).__name__} ({type(error).__name__}: {error})"
            continue
        values[name] = text
    if errors:
        return None, errors
    try:
        return type(task).from_str_params(values), {}
    except Exception as error:
        return None, {"": f"{type(error).__name__}: {error}"}


@dataclass
class Job:
    """A ``luisy`` command the page started."""

    number: int
    what: str
    command: list[str]
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.time)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        """The last lines of its output (read from the end: a watch's log grows all week)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - OUTPUT_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-OUTPUT_LINES:])

    def to_dict(self) -> dict[str, Any]:
        code = self.returncode
        return {"number": self.number, "what": self.what, "command": self.command, "started": self.started,
                "state": "running" if code is None else "done" if code == 0 else f"exit status {code}",
                "output": self.output()}


class Actions:
    """Starts and stops the page's ``luisy`` commands for the graph of ``root`` in ``working_dir``."""

    def __init__(self, root: luigi.Task, working_dir: Path, cwd: Path | None = None) -> None:
        self.root, self.working_dir = root, working_dir
        self.cwd = Path.cwd() if cwd is None else cwd
        #: Every form carries it; a request that changes something without it is refused (CSRF).
        self.csrf = secrets.token_urlsafe(32)
        self.jobs: list[Job] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._logs = Path(tempfile.mkdtemp(prefix="luisy-serve-"))

    def command(self, what: str, task: luigi.Task) -> list[str]:
        """The ``luisy`` command line of an action on ``task``."""
        cls = type(task)
        args = [sys.executable, "-m", "luisy"]
        args += {"run": ["run"], "watch": ["watch"], "verify": ["verify"], "repair": ["verify", "--repair"]}[what]
        args += [f"{cls.__module__}:{cls.__name__}", "--working-dir", os.fspath(self.working_dir)]
        params = dict(task.get_params())
        for name, value in task.to_str_params(only_significant=True).items():
            flag = "--" + name.replace("_", "-")
            if isinstance(params[name], luigi.BoolParameter):
                args += [flag] if value == "True" else []
            else:
                args += [flag, value]
        return args

    def start(self, what: str, task: luigi.Task) -> Job:
        """Start ``what`` (``run``, ``watch``, ``verify``, ``repair``) on ``task``; one ``luisy
        watch`` at a time."""
        with self._lock:
            if what == "watch" and self.watching() is not None:
                raise ValueError("a luisy watch is running already: stop it first")
            number = next(self._numbers)
            command = self.command(what, task)
            log = self._logs / f"{number}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(command, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            job = Job(number, f"{what} {task}", command, process, log)
            self.jobs.append(job)
            return job

    def watching(self) -> Job | None:
        return next((job for job in self.jobs if job.what.startswith("watch ") and job.returncode is None), None)

    def stop(self, number: int) -> Job:
        """Stop job ``number`` as Ctrl-C would (what it was doing finishes, then it ends)."""
        job = next((job for job in self.jobs if job.number == number), None)
        if job is None:
            raise LookupError(f"no job {number}")
        if job.returncode is None:
            os.killpg(job.process.pid, signal.SIGINT)
        return job

    def close(self) -> None:
        """Stop every job still running (the server is stopping)."""
        for job in self.jobs:
            if job.returncode is None:
                os.killpg(job.process.pid, signal.SIGINT)
        for job in self.jobs:
            try:
                job.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                job.process.kill()
