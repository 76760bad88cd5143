"""luisy's task classes: luigi tasks whose ``output()`` follows from their decorators."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import luigi
from luigi.task import flatten

from luisy import sharing, storage, targets
from luisy.config import get_working_dir
from luisy.directory.target import DirectoryTarget
from luisy.errors import NoOutputError, OutputMissingError
from luisy.fingerprint import records
from luisy.fingerprint import task as fingerprint
from luisy.history import provenance
from luisy.paths import output_dir, output_path, project_name_of, with_extension
from luisy.reasons import Kind, Reason
from luisy.spec import NamingRule, OutputSpec
from luisy.tasks.related import related_instances
from luisy.tasks.running import no_run, recording_run
from luisy.tracebacks import explanation
from luisy.visualize import draw

__all__ = ["Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "read_output"]


class _ProjectName:
    """``Task.project_name``: what ``@luisy.project_name`` set, else the top-level package of the task's module."""

    def __get__(self, instance: Any, owner: type) -> str:
        return project_name_of(owner)


class _ClassLogger:
    """``Task.logger``: the logger named after the task's class (assignable per instance, as in 1.x)."""

    def __get__(self, instance: Any, owner: type) -> logging.Logger:
        return logging.getLogger(owner.__name__)


if TYPE_CHECKING:  # the mixin is always combined with a luigi task class
    _LuigiTask = luigi.Task
else:
    _LuigiTask = object


class _OutputMixin(_LuigiTask):
    """Path, target, read and write for a task; configured by decorators through class attributes."""

    project_name = _ProjectName()
    logger = _ClassLogger()
    _luisy_layer: str | None = None
    _luisy_output: OutputSpec = OutputSpec(targets.PickleTarget)
    _luisy_naming: NamingRule = NamingRule()
    #: The class's parameter list and the class shape it was made for (see :meth:`get_params`).
    _luisy_params: ClassVar[tuple[Any, list[tuple[str, luigi.Parameter]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Writes made by run() become visible only when run() returns (a failed run leaves no
        # output); then the task's fingerprint is recorded.
        run = cls.__dict__.get("run")
        if run is None and _runs_luigis_nothing(cls):
            run = no_run
        if run is not None and not getattr(run, "__luisy_staged__", False):
            cls.run = recording_run(run)  # type: ignore[method-assign]

    def _no_output_hint(self) -> str:
        """Why ``run()`` may have written no output, where luisy can tell (``": ..."``), else ``""``."""
        if not getattr(type(self).run, "__luisy_default__", False):
            return ""
        name = type(self).__name__
        if type(self)._luisy_output.target_cls is DirectoryTarget:
            return f": {name} defines no run(); a luisy.DirectoryTask makes a directory output from process()"
        return f": {name} defines no run()"

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """luigi's list of the class's parameters, made once per class (luigi calls ``dir()`` for
        it about ten times per task; a class that gains an attribute gets a new list)."""
        cached = cls.__dict__.get("_luisy_params")
        if cached is not None and cached[0] == _shape(cls):
            return list(cached[1])
        params = super().get_params()
        cls._luisy_params = (None, params)  # set first: the shape counts this attribute too
        cls._luisy_params = (_shape(cls), params)
        return list(params)

    def get_sub_dir(self) -> str:
        """Folder below the layer folder; ``""`` by default."""
        return ""

    def get_file_name(self) -> str:
        """File name without extension; by default the ``auto_filename`` rendering."""
        return type(self)._luisy_naming.render(self)

    def get_outdir(self) -> str:
        """The folder the output is placed in: ``<working_dir>/<project>/<layer>/<sub_dir>``.

        luisy 1.x's way to place a plain luigi task's file next to luisy's outputs.
        """
        return os.fspath(output_dir(self, type(self)._luisy_layer))

    def get_output_path(self) -> Path:
        """Where the output lives (computed only, nothing is created).

        A parameter value that luisy 1.x could have confused with another gets a short hash in
        the automatic file name; an output that 1.x made under the name without it is used there.
        """
        spec = type(self)._luisy_output
        if spec.folder:
            folder_name = getattr(self, "get_folder_name", self.get_file_name)
            name = spec.folder_name or folder_name()
        else:
            name = with_extension(self.get_file_name(), spec.ext)
        path = output_path(self, name, type(self)._luisy_layer)
        if (("~" in name or any(isinstance(v, Mapping) for v in self.param_kwargs.values()))
                and _names_automatically(type(self), spec)):
            as_1x = type(self)._luisy_naming.render(self, as_1x=True)
            old = output_path(self, as_1x if spec.folder else with_extension(as_1x, spec.ext), type(self)._luisy_layer)
            exists = functools.partial(storage.active().exists, folder=spec.folder)
            # Only an output luisy 1.x made (and hash update mode may have accepted for this
            # task): one luisy 2 made there belongs to another task.
            if (old != path and not exists(os.fspath(path)) and exists(os.fspath(old))
                    and not records.recorded_for_another_task(self, old)):
                return old
        return path

    def output(self) -> Any:  # the spec's target: a LuisyTarget, DirectoryTarget...
        # luigi and luisy ask for it many times per task: it is made once per working directory
        # and storage (luigi keeps one instance per task, also across builds in a notebook).
        return storage.active().remembered(self, get_working_dir(), self._make_output)

    def _make_output(self) -> Any:
        spec = type(self)._luisy_output
        target = spec.target_cls.for_task(self, self.get_output_path(), **spec.options)
        if isinstance(target, targets.LuisyTarget):
            target.provenance = functools.partial(provenance.embedded, self)
        return target

    output.__luisy_output__ = True  # type: ignore[attr-defined]  # the spec alone says what it makes

    def write(self, obj: Any) -> None:
        """Write ``obj`` as the output, atomically; the type is checked first."""
        self.output().write(obj)

    def read(self) -> Any:
        """The output object; a ``ValueError`` if the task has not run yet."""
        target = self.output()
        if not target.exists():
            raise OutputMissingError(f"{self!r} has no output yet ({target.path}): run the task first")
        return target.read()

    def read_input(self) -> Any:
        """``self.input().read()`` for a task with exactly one input."""
        inputs = flatten(self.input())
        if len(inputs) != 1:
            raise ValueError(
                f"{self!r}.read_input() needs exactly one input, it has {len(inputs)}: "
                "read them with self.input()[...].read()"
            )
        return inputs[0].read()

    @classmethod
    def get_related_instances(cls, regex_placeholder: str | None = None) -> list[Any]:
        """Instances whose outputs exist, with parameters read back from the output paths.

        Finds ``auto_filename`` outputs and outputs named by a ``get_file_name()`` or
        ``get_sub_dir()`` that puts parameter values into the path; parameters that are not in
        the path take their defaults. ``regex_placeholder`` restricts the values (a regular
        expression). See :func:`luisy.helpers.get_related_instances`.
        """
        return related_instances(cls, regex_placeholder)

    def visualize(self, ax: Any = None, unique_children: bool = True,
                  parameters_to_exclude: Iterable[str] = ()) -> Any:
        """Draw the dependency graph into the matplotlib axis ``ax`` (a new figure if ``None``); returns the axis.

        ``unique_children`` draws one requirement per class for each task; the parameters named in
        ``parameters_to_exclude`` are left out of the labels. Needs the extra ``plot``.
        """
        return draw(self, ax, unique_children, parameters_to_exclude)


def _runs_luigis_nothing(cls: type) -> bool:
    """Whether a user's task class would run luigi's ``Task.run``, which does nothing (luisy's own
    classes keep it, so that a second base class of a user's task can still provide ``run()``)."""
    return (getattr(cls, "run", None) is luigi.Task.run and not cls.__module__.startswith("luisy.")
            and not issubclass(cls, luigi.WrapperTask))


def _shape(cls: type) -> tuple[int, ...]:
    """How many attributes each class of ``cls``'s MRO has. luigi's decorators add parameters; a
    parameter replaced in place on an existing class (not by redefining the class, as a notebook
    cell does) is not noticed."""
    return tuple(len(vars(klass)) for klass in cls.__mro__)


def _names_automatically(cls: type, spec: OutputSpec) -> bool:
    """Whether the output's name is ``auto_filename``'s (no ``get_file_name``/``get_folder_name`` of
    the class's own, no fixed folder name)."""
    if spec.folder and (spec.folder_name or "get_folder_name" in _defined_by_user(cls)):
        return False
    return "get_file_name" not in _defined_by_user(cls)


def _defined_by_user(cls: type) -> set[str]:
    """The naming methods of the class that are the user's code: luisy's own (the defaults, and
    what ``@auto_filename`` puts on a user's class) leave the name to luisy."""
    return {name for klass in cls.__mro__ for name in ("get_file_name", "get_folder_name")
            if name in vars(klass) and not _is_luisys(vars(klass)[name])}


def _is_luisys(method: Any) -> bool:
    module = getattr(getattr(method, "__func__", method), "__module__", None) or ""
    return module == "luisy" or module.startswith("luisy.")


class Task(_OutputMixin, luigi.Task):
    """A luigi task with a typed output (pickle by default) placed by its decorators.

    Complete when its output exists and its recorded fingerprint (code, parameters, upstream;
    see docs/reruns.rst) equals the current one.
    """

    def why(self, detail: bool = False) -> list[Reason]:
        """Why the task would run (empty: it is complete): the first reason found, or with
        ``detail`` every one (what ``luisy plan`` shows)."""
        if not all(o.exists() for o in flatten(self.output())):
            reasons = [Reason(Kind.NO_OUTPUT)]
        else:
            reasons = fingerprint.compare(self, detail)
        # With --download, a remote copy made from the same code and data does instead of a run.
        return [] if reasons and sharing.fetched(self) else reasons

    def complete(self) -> bool:
        return not self.why()

    def on_failure(self, exception: BaseException) -> str:
        """What luigi's scheduler records of a failed run: a luisy error's one line (with a
        failed item's traceback after it), else luigi's text with the traceback."""
        return explanation(exception)


class ExternalTask(_OutputMixin, luigi.ExternalTask):
    """Data that already exists (raw input); luisy never runs it."""

    #: How its files are fingerprinted: ``"mtime"`` (size and modification time), ``"content"``
    #: (a checksum, cached by size, mtime and inode) or ``"write-once"`` (as ``"mtime"``; a folder
    #: is listed again only when files were added, removed or renamed in it); ``None``:
    #: ``[luisy] input_fingerprint``.
    input_fingerprint: str | None = None

    def complete(self) -> bool:
        """Whether its files are here (with ``--download``: or were fetched from the remote)."""
        return bool(super().complete()) or sharing.fetched(self)


def read_output(task: luigi.Task) -> Any:
    """``task.read()`` for luisy tasks, ``task.output().read()`` for other luigi tasks."""
    reader = getattr(task, "read", None)
    return reader() if callable(reader) else task.output().read()


class WrapperTask(Task, luigi.WrapperTask):
    """A task that only groups requirements: complete when they are, it writes nothing.

    ``read()`` returns the requirements' outputs. Layer decorators are accepted (as in 1.x), and
    place only what :meth:`get_outdir` returns.
    """

    complete = luigi.WrapperTask.complete

    def output(self) -> list[luigi.Target]:
        """No output of its own."""
        return []

    def write(self, obj: Any) -> None:
        """Refused: a wrapper has no output to write to."""
        raise NoOutputError(f"{self!r} is a WrapperTask: it has no output to write; return its data from a Task")

    def read(self) -> list[Any] | dict[Any, Any]:
        """The requirements' outputs: a dict if ``requires()`` returns one, else a list."""
        required = self.requires()
        if isinstance(required, dict):
            return {key: read_output(task) for key, task in required.items()}
        return [read_output(task) for task in flatten(required)]


class ConcatenationTask(Task):
    """Concatenate the DataFrames of all inputs, pass them through :meth:`preprocess`, write them."""

    def preprocess(self, df: Any) -> Any:
        """Transform the concatenated DataFrame before it is written; identity by default."""
        return df

    def run(self) -> None:
        """Concatenate, preprocess, write."""
        import pandas as pd

        frames = [target.read() for target in flatten(self.input())]
        self.write(self.preprocess(pd.concat(frames)))  # the frames' own index is kept, as in 1.x


def __getattr__(name: str) -> Any:
    # luisy 1.x's SparkTask lived here: it fails with one line that says what to do instead.
    from luisy.unavailable import missing

    raise missing(__name__, name)
