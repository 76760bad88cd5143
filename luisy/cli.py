"""The ``luisy`` command: parse the command line, call the Python API, print, exit.

Task parameters are parsed with luigi's own argparse rules, so ``--param value`` and
``--Task-param value`` work as with the ``luigi`` command.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from itertools import chain
from pathlib import Path
from typing import Any, NoReturn

import click
import luigi
from luigi.cmdline_parser import CmdlineParser
from luigi.task_register import Register, TaskClassException

from luisy import config, storage, urls
from luisy.accept import update_fingerprints
from luisy.errors import LuisyError, ParameterError, TaskLookupError
from luisy.execution import run as run_tasks
from luisy.graph import FORMATS, upstream_first
from luisy.graph import render as render_graph
from luisy.history.runs import failed_run_lines, last_failed, parse_since
from luisy.history.runs import history as task_history
from luisy.history.runs import table as history_table
from luisy.history.show import show as show_output
from luisy.items import TERMINAL_LIMIT, json_text, text_lines
from luisy.items import items as task_items
from luisy.legacy import build
from luisy.plan import as_json as plan_data
from luisy.plan import report as plan_report
from luisy.sharing import upload as upload_outputs
from luisy.status import as_json as status_data
from luisy.status import status as task_status
from luisy.status import table as status_table
from luisy.status import verify as verify_outputs
from luisy.task_help import parameter_rows, summary
from luisy.texttable import printable

__all__ = ["main", "build"]

# Options of luisy 1.x's single command that take a value, to find the task name among them.
_LEGACY_VALUE_OPTIONS = {"--module", "--working-dir", "--workers", "--processes", "--scheduler-url",
                         "--dask-scheduler", "--remote", "--azure-storage-key", "--azure-account-name",
                         "--azure-container-name"}


class _TaskCommand(click.Command):
    """A command; for one that takes a TASK, ``TASK --help`` also lists the task's own parameters."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(p.name == "task_args" for p in self.params) and any(a in ctx.help_option_names for a in args):
            ctx.meta["luisy_task"] = _task_spec(self, args)
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        spec = ctx.meta.get("luisy_task")
        if spec:
            task_cls = load_task_class(spec)
            with formatter.section(f"Parameters of {task_cls.get_task_family()} ({spec})"):
                if summary(task_cls):
                    formatter.write_text(summary(task_cls))
                rows = parameter_rows(task_cls)
                if rows:
                    formatter.write_dl(rows)
                else:
                    formatter.write_text("(none)")
        super().format_options(ctx, formatter)


def _task_spec(command: click.Command, args: Sequence[str]) -> str | None:
    """The TASK among a task command's arguments: the first one that is not an option or its value."""
    valued = {opt for p in command.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts}
    i = 0
    while i < len(args):
        if not args[i].startswith("-"):
            return args[i]
        i += 2 if args[i] in valued else 1
    return None


class _Seconds(click.FloatRange):
    """A number of seconds from ``min`` on that a timer can wait: finite (NaN compares as in range
    but never passes, so nothing would ever settle) and at most ``threading.TIMEOUT_MAX``."""

    def __init__(self, min: float) -> None:
        super().__init__(min=min, max=threading.TIMEOUT_MAX)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


class _LuisyGroup(click.Group):
    """Also accepts luisy 1.x's form ``luisy --module pkg.mod Task [options]``."""

    command_class = _TaskCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and any(
            a == "--module" or a.startswith("--module=") for a in args
        ):
            args = _translate_legacy(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LuisyError as error:
            _fail(error.format_message())


def _translate_legacy(args: list[str]) -> list[str]:
    """``--module m Task --no-ask ...`` → ``run m:Task ...``.

    As in 1.x, the run uses luigi's central scheduler unless ``--local-scheduler`` is given.
    """
    module, task, rest = None, None, []
    i = 0
    while i < len(args):
        arg = args[i]
        name, has_value, value = arg.partition("=")
        if name == "--module":
            module = value if has_value else (args[i + 1] if i + 1 < len(args) else None)
            i += 1 if has_value else 2
            continue
        if arg == "--no-ask":  # luisy 2 never asks
            i += 1
            continue
        if name == "--requirements-path":  # luisy 2 fingerprints code without a requirements file
            i += 1 if has_value else 2
            continue
        if task is None and not arg.startswith("-"):
            task = arg
        else:
            rest.append(arg)
            if name in _LEGACY_VALUE_OPTIONS and not has_value and i + 1 < len(args):
                rest.append(args[i + 1])
                i += 1
        i += 1
    if not module or not task:
        _fail("the 1.x form is: luisy --module package.module TaskName [--param value ...]")
    if "--local-scheduler" not in rest and not any(a.partition("=")[0] == "--scheduler-url" for a in rest):
        rest += ["--scheduler-url", config.luigi_default_scheduler_url()]
    return ["run", f"{module}:{task}", *rest]


class ExitCode(enum.IntEnum):
    """The exit status of every luisy command."""

    OK = 0  #: done: the task is complete, no item failed, nothing is wrong
    NOT_DONE = 1  #: the task is not complete, items failed, or ``verify`` found problems
    BAD_INPUT = 2  #: the command line or the working directory is wrong; nothing ran


def _echo(message: Any = None, err: bool = False, nl: bool = True) -> None:
    """``click.echo``, with paths in an object store shown as their URLs (see :mod:`luisy.urls`)."""
    click.echo(urls.shown(message) if isinstance(message, str) else message, err=err, nl=nl)


def _fail(message: str) -> NoReturn:
    _echo(f"luisy: error: {message}", err=True)
    sys.exit(ExitCode.BAD_INPUT)


@click.group(cls=_LuisyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="luisy")
def main() -> None:
    """luisy: typed outputs, data layers, directory tasks and reruns on top of luigi.

    TASK is module:Class or module.Class; its parameters follow it (luisy COMMAND TASK --help
    lists them). See luisy COMMAND --help.

    \b
    Example:
        luisy run mypkg.tasks:Report --min-units 3 --working-dir ./data
        luisy plan mypkg.tasks:Report --min-units 3
        luisy run mypkg.tasks:Report --help     # lists the task's parameters
    """


_TASK_COMMAND = {"ignore_unknown_options": True, "allow_extra_args": True}


def _json_option(function: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead.")(function)


def _echo_json(data: Any) -> None:
    _echo(json.dumps(data, indent=1, default=str))


class _PathOrUrl(click.Path):
    """A path, or an object store's URL (kept as given: a ``Path`` would lose its ``//``)."""

    def __init__(self, file_okay: bool = True) -> None:
        super().__init__(file_okay=file_okay, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and urls.alias(value) is not None:
            return value
        return super().convert(value, param, ctx)


class _WorkingDirPath(_PathOrUrl):
    """The value of ``--working-dir``: a folder's path or a URL. An empty one is an error: as a
    ``Path`` it would silently be the current directory."""

    def __init__(self) -> None:
        super().__init__(file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            raise LuisyError("--working-dir is empty: give a folder (--working-dir . for the current one)")
        return super().convert(value, param, ctx)


_WORKING_DIR = _WorkingDirPath()


def _task_command(function: Any) -> Any:
    """The arguments every task command takes: TASK, its parameters, and --working-dir."""
    function = click.argument("task_args", nargs=-1, type=click.UNPROCESSED)(function)
    function = click.option("--working-dir", type=_WORKING_DIR,
                            help="Root of the data-layer tree (default: $LUISY_WORKING_DIR or ./data).")(function)
    return click.argument("task")(function)


@contextmanager
def _in_working_dir(working_dir: Path | None) -> Iterator[Path]:
    """Inside the block, the working directory is ``working_dir`` (if given); it must exist."""
    with config.working_dir(working_dir) if working_dir is not None else nullcontext():
        root = config.get_working_dir()
        problem = storage.for_path(root).root_problem(os.fspath(root))
        if problem is not None:
            settings = "set it with --working-dir, LUISY_WORKING_DIR or [luisy] working_dir"
            advice = f"{settings}, or create it" if problem == "does not exist" else settings
            raise LuisyError(f"working directory {urls.shown(os.fspath(root))} {problem} ({advice})")
        yield root


@contextmanager
def _task(task: str, working_dir: Path | None, task_args: Sequence[str]) -> Iterator[luigi.Task]:
    """The task instance, with the working directory resolved and checked."""
    with _in_working_dir(working_dir):
        task_cls = load_task_class(task)
        with parsed_task(task_cls, list(task_args)) as task_obj:
            for line in unused_options(task_obj, task_cls, list(task_args)):
                _echo(f"luisy: warning: {line}", err=True)
            yield task_obj


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="luigi worker processes.")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Item processes inside each directory task (default: [luisy] processes, else 1).")
@click.option("--local-scheduler", is_flag=True, help="Use luigi's local scheduler (the default).")
@click.option("--scheduler-url", metavar="URL", help="Use luigi's central scheduler (luigid) at URL.")
@click.option("--dask-scheduler", metavar="ADDRESS",
              help="Run directory tasks' items on the Dask cluster of this scheduler (tcp://host:8786; "
                   "needs luisy[dask]; default: [luisy] dask_scheduler, else local processes).")
@click.option("--retry-failed/--no-retry-failed", default=None,
              help="Whether directory tasks retry items that failed before (default: retry; "
                   "[luisy] retry_failed).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="With --scheduler-url: wait while another worker runs a task this run needs, or luigid holds "
                   "one back after it was done; --no-wait ends at once and says why. (A directory task always "
                   "waits for another process writing its output.)")
@click.option("--dry-run", is_flag=True, help="Only show what would run and why (as `luisy plan`).")
@click.option("--hash-update-mode", is_flag=True,
              help="Run nothing; accept the existing outputs by recording their current fingerprints.")
@click.option("--verify", "verify_first", is_flag=True,
              help="First re-check the directory outputs and drop bad items (as `luisy verify --repair`).")
@click.option("--download", is_flag=True,
              help="Fetch an output from the remote instead of computing it where the remote holds it from the "
                   "same code and data.")
@click.option("--upload", is_flag=True,
              help="After the run, send the outputs the remote lacks to it.")
@click.option("--remote", metavar="URL",
              help="The remote of --download/--upload: a folder or a URL such as s3://bucket/prefix (default: "
                   "LUISY_REMOTE, [luisy] remote, else luisy 1.x's LUISY_AZURE_* settings).")
@click.option("--azure-account-name", hidden=True)  # luisy 1.x's; LUISY_AZURE_* or --remote are better
@click.option("--azure-storage-key", hidden=True)
@click.option("--azure-container-name", hidden=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Show luigi's log, and whole tracebacks (without: the frames of the task's code).")
def run(task: str, working_dir: Path | None, task_args: tuple[str, ...], workers: int, processes: int | None,
        local_scheduler: bool, scheduler_url: str | None, dask_scheduler: str | None, retry_failed: bool | None,
        wait: bool, dry_run: bool, hash_update_mode: bool, verify_first: bool, download: bool, upload: bool,
        remote: str | None, verbose: bool, **azure: str | None) -> None:
    """Run TASK (module:Class or module.Class) and everything it needs.

    Task parameters follow TASK as --name value (or --Task-name value for any task); TASK --help
    lists them. The exit status is 0 when TASK is complete at the end and no item failed, 1
    otherwise, 2 for bad input.

    \b
    Example:
        luisy run examples.images.tasks:Everything --sigma 2 --processes 2
    """
    legacy = {**config.context().legacy, **{f"azure_{k[6:]}": v for k, v in azure.items() if v}}
    with _task(task, working_dir, task_args) as task_obj, config.scope(legacy=legacy):
        if dry_run:
            _print_plan(task_obj)
            return
        if hash_update_mode:
            updated = update_fingerprints(task_obj)
            _echo(f"recorded the current fingerprints of {len(updated)} task(s); nothing was run")
            for accepted in updated:
                _echo(f"  {accepted}")
            if upload:
                sent = upload_outputs(task_obj, remote=remote)
                _echo(f"sent {len(sent)} task(s)' outputs to the remote")
            return
        if verify_first:
            _verify(task_obj, repair=True)
        with nullcontext() if verbose else _without_worker_tracebacks():
            summary = run_tasks(
                [task_obj], workers=workers, processes=processes, retry_failed=retry_failed,
                scheduler_url=scheduler_url, local_scheduler=local_scheduler, dask_scheduler=dask_scheduler,
                wait=wait, download=download, upload=upload, remote=remote,
                log_level="INFO" if verbose else "WARNING",
            )
        for line in summary.lines(verbose):  # output paths are resolved in the task's working directory
            _echo(printable(line))
    sys.exit(ExitCode.OK if summary.ok else ExitCode.NOT_DONE)


class _NoWorkerTraceback(logging.Filter):
    """Drops luigi's log of a task that failed, and of a task whose ``complete()`` raised, each
    with luigi's traceback: the summary says what failed, with the frames of the user's code."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        failed = record.exc_info and message.startswith("[pid %s] Worker %s failed")
        unsure = message.startswith("Will not run ") and "due to error in complete() method:" in message
        return not (failed or unsure)


@contextmanager
def _without_worker_tracebacks() -> Iterator[None]:
    """Inside the block, luigi does not log the traceback of a failed task, nor of a failed
    ``complete()`` (see ``-v``)."""
    logger, quiet = logging.getLogger("luigi-interface"), _NoWorkerTraceback()
    logger.addFilter(quiet)  # luigi's forked worker processes inherit it
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@_json_option
def plan(task: str, working_dir: Path | None, task_args: tuple[str, ...], as_json: bool) -> None:
    """Show which tasks a run of TASK would run, and why. Nothing is written.

    \b
    Example:
        luisy plan examples.images.tasks:Everything --sigma 2
        luisy plan examples.images.tasks:Everything --json
    """
    with _task(task, working_dir, task_args) as task_obj:
        if as_json:
            _echo_json(plan_data(task_obj))
        else:
            _print_plan(task_obj)


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text tree, Graphviz DOT, or SVG/PNG drawn by Graphviz's `dot`.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of standard output.")
def graph(task: str, working_dir: Path | None, task_args: tuple[str, ...], fmt: str, output: Path | None) -> None:
    """Show TASK's dependency graph, with each task's state and item counts.

    \b
    Example:
        luisy graph examples.images.tasks:Everything
        luisy graph examples.images.tasks:Everything --format svg -o pipeline.svg
    """
    with _task(task, working_dir, task_args) as task_obj:
        data = render_graph(task_obj, fmt)
    if output is not None:
        output.write_bytes(data)
        _echo(f"wrote {output}")
    elif fmt in ("svg", "png"):
        raise LuisyError(f"--format {fmt} writes a file: add -o FILE")
    else:
        _echo(data.decode(), nl=False)


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@_json_option
def status(task: str, working_dir: Path | None, task_args: tuple[str, ...], as_json: bool) -> None:
    """Show a table of TASK and everything upstream: complete, items, failed items, items the last
    verify found bad, items an interrupted run keeps for the next (resumable), last run, fingerprint.

    The last run and how it ended come from the run journal (`luisy history`). The exit status
    is 0 when TASK is complete, 1 otherwise.

    \b
    Example:
        luisy status examples.images.tasks:Everything
        luisy status examples.images.tasks:Everything --json
    """
    with _task(task, working_dir, task_args) as task_obj:
        rows = task_status(task_obj)
    if as_json:
        _echo_json(status_data(rows))
    else:
        _echo(status_table(rows), nl=False)
    sys.exit(ExitCode.OK if rows[-1].complete else ExitCode.NOT_DONE)


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--failed", is_flag=True, help="Items that failed (with their error).")
@click.option("--bad", is_flag=True, help="Items the last `luisy verify` found damaged or missing.")
@click.option("--kept", is_flag=True, help="Items an interrupted run made, which the next run publishes.")
@click.option("--limit", type=click.IntRange(min=0, max=sys.maxsize), default=None, metavar="N",
              help="List at most N items (0: all). Default: 100 on a terminal, all when piped or with --json.")
@click.option("-v", "--verbose", count=True,
              help="Show where each failed item's code failed (-vv: the whole traceback).")
@_json_option
def items(task: str, working_dir: Path | None, task_args: tuple[str, ...], failed: bool, bad: bool, kept: bool,
          limit: int | None, verbose: int, as_json: bool) -> None:
    """List the items of the directory task TASK, in name order, one line each: state (ok,
    skipped, failed, bad, kept), name, input file and, for a failed item, its error.

    --failed, --bad and --kept list only items in those states (together: in any of them). When
    the task's last run failed, --failed first says so, with the items that failed in it (under
    on_error="raise" the one that stopped it: that run published nothing). The exit status is 0,
    2 for bad input (not a directory task, a corrupt manifest).

    \b
    Example:
        luisy items examples.images.tasks:Segmented --failed -v
        luisy items examples.images.tasks:Segmented --json > items.json
    """
    states = [state for state, wanted in (("failed", failed), ("bad", bad), ("kept", kept)) if wanted]
    if limit is None and not as_json and sys.stdout.isatty():
        limit = TERMINAL_LIMIT
    with _task(task, working_dir, task_args) as task_obj:
        rows = task_items(task_obj, states)
        if as_json:
            lines = json_text(rows, limit or None)
        else:
            last_run = last_failed(config.get_working_dir(), task_obj) if failed or not states else None
            lines = chain(failed_run_lines(task_obj, last_run, verbose) if last_run is not None else [],
                          text_lines(rows, verbose, limit or None))
        empty = True
        for line in lines:
            empty = False
            _echo(line if as_json else printable(line))  # JSON escapes control characters itself
        if empty:
            _echo(f"{task_obj}: no items" + (f" that are {' or '.join(states)}" if states else ""))


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--repair", is_flag=True,
              help="Drop bad items from their manifests (and delete their files), delete stray files, remove "
                   "corrupt manifests: the next `luisy run` makes exactly those items again.")
def verify(task: str, working_dir: Path | None, task_args: tuple[str, ...], repair: bool) -> None:
    """Re-check the directory outputs of TASK's graph against their manifests' checksums.

    Prints each problem. The exit status is 1 if any was found, unless --repair dealt with them.

    \b
    Example:
        luisy verify examples.images.tasks:Everything
        luisy verify examples.images.tasks:Everything --repair && luisy run examples.images.tasks:Everything
    """
    with _task(task, working_dir, task_args) as task_obj:
        problems = _verify(task_obj, repair)
    sys.exit(ExitCode.NOT_DONE if problems and not repair else ExitCode.OK)


def _verify(task: luigi.Task, repair: bool) -> list[str]:
    checked, problems = verify_outputs(task, repair=repair)
    for problem in problems:
        _echo(problem)
    _echo(f"{checked} items checked, {len(problems)} bad" + (", repaired: the next run makes them again"
                                                                    if repair and problems else ""))
    return problems


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; another than loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--token", help="Every request must carry it (?token=T once, or Authorization: Bearer T); made "
                              "and printed once when --host is not loopback or with --allow-actions.")
@click.option("--allow-actions", is_flag=True,
              help="Let the page run TASK with edited parameters, keep a luisy watch running, verify and repair "
                   "(each a luisy command in a process of its own; needs the token).")
def serve(task: str, working_dir: Path | None, task_args: tuple[str, ...], host: str, port: int,
          token: str | None, allow_actions: bool) -> None:
    """Serve a page of TASK's pipeline: its graph and states, each task's runs, output,
    provenance and items (failed ones with their tracebacks), updated live while a build runs;
    and the same as JSON under /api/ (status, plan, history, items, show, and jobs with
    --allow-actions). Read-only unless --allow-actions. Needs the web extra.

    \b
    Example:
        luisy serve examples.images.tasks:Everything --port 8000
    """
    from luisy.serve import serve as serve_page

    with _task(task, working_dir, task_args) as task_obj:
        serve_page(task_obj, config.get_working_dir(), host, port, token, say=_echo, allow_actions=allow_actions)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--working-dir", type=_WORKING_DIR,
              help="Its state and logs go to WORKING_DIR/.luigid (default: the luisy working directory).")
@click.option("--port", type=int, default=8082, show_default=True, help="Port of the scheduler and its web view.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.argument("luigid_args", nargs=-1, type=click.UNPROCESSED)
def scheduler(working_dir: Path | None, port: int, address: str, luigid_args: tuple[str, ...]) -> None:
    """Start luigi's central scheduler (luigid), keeping its state under the working directory.

    Other arguments go to luigid. Open http://ADDRESS:PORT to watch runs started with
    luisy run --scheduler-url http://ADDRESS:PORT.

    \b
    Example:
        luisy scheduler --port 8082 &
        luisy run examples.images.tasks:Everything --scheduler-url http://127.0.0.1:8082
    """
    from luigi.cmdline import luigid

    with config.working_dir(working_dir) if working_dir is not None else nullcontext():
        root = config.get_working_dir()
    if urls.scheme(root) is not None:
        raise LuisyError(f"luigid keeps its state in local files, not in {urls.shown(os.fspath(root))}: give "
                         "--working-dir a local folder for it (the runs may still use the store)")
    state = root / ".luigid"
    state.mkdir(parents=True, exist_ok=True)
    _echo(f"luigid on http://{address}:{port} (state and logs in {state})", err=True)
    luigid(["--port", str(port), "--address", address, "--state-path", str(state / "state.pickle"),
            "--logdir", str(state), *luigid_args])


@main.command()
@click.argument("task", required=False)
@click.option("--working-dir", type=_WORKING_DIR,
              help="Whose journal to read (default: $LUISY_WORKING_DIR or ./data).")
@click.option("--since", metavar="SPAN|DATE", help="Only runs started since: 30m, 12h, 2d, 1w, or 2026-12-01.")
@click.option("--failed", is_flag=True, help="Only runs that failed or were interrupted.")
@_json_option
def history(task: str | None, working_dir: Path | None, since: str | None, failed: bool, as_json: bool) -> None:
    """Show the task runs in the run journal, newest first: when, how long, how they ended
    (SUCCESS, FAIL with the first error line, or "interrupted?" for a run that started and never
    ended), host, user, pid and, for directory tasks, items processed, failed and kept.

    TASK (optional) is a task family, module:Class, or a pattern such as 'Segmented(sigma=2*'.
    No task code is imported.

    \b
    Example:
        luisy history
        luisy history Segmented --since 2d --failed
        luisy history --json
    """
    with _in_working_dir(working_dir) as root:
        runs = task_history(root, task, None if since is None else parse_since(since), failed)
    if as_json:
        _echo_json([run.to_dict() for run in runs])
    elif runs:
        _echo(history_table(runs), nl=False)
    else:
        _echo(f"no runs in the journal of {root}" + (" that match" if task or since or failed else ""))


@main.command()
@click.argument("path", type=_PathOrUrl(), metavar="PATH")
@click.option("--working-dir", type=_WORKING_DIR,
              help="The working directory PATH is in (default: $LUISY_WORKING_DIR or ./data).")
@_json_option
def show(path: Path, working_dir: Path | None, as_json: bool) -> None:
    """Show where an output came from: its task and parameters, code fingerprint, the upstream
    outputs and their fingerprints, the run that wrote it, and the library versions.

    PATH is an output file, a directory output, or an item file inside one. Parquet and HDF5
    outputs also carry their task, parameters and fingerprint inside, so a file copied out of the
    working directory can still be shown (HDF5: with h5py installed). No task code is imported
    and nothing is unpickled; control characters from the files are printed escaped.

    \b
    Example:
        luisy show data/images/final/FeatureTable_min_area=4_sigma=1.0.parquet
        luisy show data/images/interim/Segmented_min_area=4_sigma=1.0/img_0001.pkl
    """
    with config.working_dir(working_dir) if working_dir is not None else nullcontext():
        found = show_output(path)
        if as_json:
            _echo_json(found.to_dict())
        else:
            for line in found.lines():
                _echo(line)


@main.command(context_settings=_TASK_COMMAND)
@_task_command
@click.option("--settle", type=_Seconds(min=0), default=2.0, show_default=True, metavar="SECONDS",
              help="An input item is processed once its size and modification time stayed the same this long.")
@click.option("--interval", type=_Seconds(min=0.01), default=1.0, show_default=True, metavar="SECONDS",
              help="How often the folders are rescanned (sooner on a file event; when idle, never more than "
                   "1/30 of one core).")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Item processes inside each directory task (default: [luisy] processes, else 1).")
@click.option("--scheduler-url", metavar="URL", help="Use luigi's central scheduler (luigid) at URL.")
@click.option("--max-runs", type=click.IntRange(min=1), default=None, metavar="N", help="Stop after N runs.")
@click.option("--once", is_flag=True, help="Wait until every input item has settled, run once, and stop.")
@click.option("-v", "--verbose", is_flag=True, help="Show luigi's log.")
def watch(task: str, working_dir: Path | None, task_args: tuple[str, ...], settle: float, interval: float,
          processes: int | None, scheduler_url: str | None, max_runs: int | None, once: bool, verbose: bool) -> None:
    """Watch TASK's input folders and run TASK whenever new or changed input files have settled.

    Prints one line per run. Stops on Ctrl-C or SIGTERM (the run in progress finishes or keeps its
    finished items for the next start) with exit status 0; with --once or --max-runs the exit
    status is that of the last run, as for `luisy run`.

    \b
    Example:
        luisy watch examples.images.tasks:Everything --settle 1
    """
    from luisy.interrupts import hold_signals_until_handled
    from luisy.watch.watcher import watch as watch_folders

    hold_signals_until_handled()  # a signal while the task loads stops the watch cleanly too
    with _task(task, working_dir, task_args) as task_obj, \
            nullcontext() if verbose else _without_worker_tracebacks():
        result = watch_folders(task_obj, settle=settle, interval=interval, processes=processes,
                               scheduler_url=scheduler_url, max_runs=max_runs, once=once,
                               report=_echo,
                               log_level="INFO" if verbose else "WARNING")
    sys.exit(ExitCode.OK if result.ok else ExitCode.NOT_DONE)


def _print_plan(task: luigi.Task) -> None:
    for line in plan_report(task):  # names parameters, versions and definitions read from records
        _echo(printable(line))


def load_task_class(spec: str) -> type[luigi.Task]:
    """Import ``module:Class`` or ``module.Class``; the current directory is importable."""
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        module_name, _, class_name = spec.rpartition(".")
    if not module_name or not class_name:
        raise TaskLookupError(f"task {spec!r} is not of the form module:Class or module.Class")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = ""
        if isinstance(error, ModuleNotFoundError) and error.name and module_name.startswith(error.name):
            hint = (f" (looked in {os.getcwd()} and the installed packages: run luisy from the project's root "
                    "folder, add that folder to PYTHONPATH, or install the package)")
        raise TaskLookupError(f"cannot import module {module_name!r} for task {spec!r}: {error}{hint}") from error
    task_cls = getattr(module, class_name, None)
    if not (isinstance(task_cls, type) and issubclass(task_cls, luigi.Task)):
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, luigi.Task) and v.__module__ == module.__name__)
        raise TaskLookupError(
            f"module {module_name!r} has no task {class_name!r}"
            + (f"; tasks defined there: {', '.join(found)}" if found else "")
        )
    return task_cls


def _task_arguments(task_cls: type[luigi.Task], args: Sequence[str]) -> argparse.Namespace:
    """Check ``args`` against TASK's parameters and every task's ``--Family-param``; whole names only."""
    family = task_cls.get_task_family()
    parser = argparse.ArgumentParser(prog=f"luisy run {family}", add_help=False, allow_abbrev=False,
                                     conflict_handler="resolve")

    def error(message: str) -> NoReturn:
        known = ", ".join("--" + n.replace("_", "-") for n, _ in task_cls.get_params())
        raise ParameterError(f"{family}: {message} (parameters of {family}: {known or 'none'})")

    parser.error = error  # type: ignore[method-assign]
    for task_name, is_without_section, param_name, param in Register.get_all_params():
        flag = param_name if is_without_section else f"{task_name}_{param_name}"
        parser.add_argument("--" + flag.replace("_", "-"), dest=f"{task_name}_{param_name}", **_takes(param))
    for param_name, param in task_cls.get_params():
        parser.add_argument("--" + param_name.replace("_", "-"), dest=param_name, **_takes(param))
    return parser.parse_args(list(args))


def unused_options(task_obj: luigi.Task, task_cls: type[luigi.Task], args: Sequence[str]) -> list[str]:
    """The ``--Family-param`` values no task of ``task_obj``'s graph takes (call it inside
    :func:`parsed_task`): a task that requires another passes its own values down, so a value
    given for the required task on the command line is then not used."""
    known = _task_arguments(task_cls, args)
    graph = list(upstream_first(task_obj))
    unused = []
    for family, without_section, name, param in Register.get_all_params():
        raw_value = None if without_section else getattr(known, f"{family}_{name}", None)
        if raw_value is None:
            continue
        instances = [t for t in graph if t.get_task_family() == family]
        try:
            value = param.normalize(param.parse(raw_value))
        except Exception:
            continue  # luigi reports a bad value itself
        if not any(getattr(t, name) == value for t in instances):
            flag = f"--{family}-{name.replace('_', '-')} {raw_value}"
            why = (f"{family} in {task_obj}'s graph gets its {name} from the task that requires it" if instances
                   else f"no {family} is in {task_obj}'s graph")
            unused.append(f"{flag} is not used: {why}")
    return unused


def _takes(param: luigi.Parameter) -> dict[str, Any]:
    """How a parameter reads its value on the command line: a flag for luigi's implicit booleans."""
    if isinstance(param, luigi.BoolParameter):
        if param.parsing == luigi.BoolParameter.IMPLICIT_PARSING:
            return {"action": "store_const", "const": "true"}
        return {"nargs": "?", "const": "true"}
    return {}


@contextmanager
def parsed_task(task_cls: type[luigi.Task], args: Sequence[str]) -> Iterator[luigi.Task]:
    """The task built from ``args``; ``--Task-param`` values apply to every task while the block runs."""
    family = task_cls.get_task_family()
    known = _task_arguments(task_cls, args)
    kwargs = {}
    for name, param in task_cls.get_params():
        raw_value = getattr(known, name, None)
        if raw_value:
            try:
                kwargs[name] = param.parse(raw_value)
            except Exception as error:
                raise ParameterError(f"{family}: bad value {raw_value!r} for --{name.replace('_', '-')}: "
                                     f"{error}") from None
    with ExitStack() as stack:
        try:  # luigi's own parser, so that --Family-param values reach the tasks that read them
            stack.enter_context(CmdlineParser.global_instance([family, *args], allow_override=True))
        except TaskClassException as error:
            raise TaskLookupError(f"{family}: {' '.join(str(error).split())}") from None
        try:
            task_obj = task_cls(**kwargs)
        except luigi.parameter.MissingParameterException as error:
            # luigi's message starts with the task and its arguments, which may contain ": " too.
            raise ParameterError(f"{family}: {str(error).rsplit(']: ', 1)[-1]}") from None
        except ValueError as error:
            raise ParameterError(f"{family}: {error}") from None
        yield task_obj
