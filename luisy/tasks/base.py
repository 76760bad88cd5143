"""luisy's task classes: luigi tasks whose ``output()`` follows from their decorators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import targets
from luisy.atomic import TMP_MARKER
from luisy.config import get_working_dir
from luisy.errors import OutputMissingError
from luisy.fingerprint import task as fingerprint
from luisy.paths import output_path, parse_file_name, project_name_of, with_extension
from luisy.spec import NamingRule, OutputSpec
from luisy.tasks.running import recording_run

__all__ = ["Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "read_output"]


class _OutputMixin:
    """Path, target, read and write for a task; configured by decorators through class attributes."""

    #: Set by ``@luisy.project_name``; ``None`` means the task's top-level package.
    project_name: str | None = None
    _luisy_layer: str | None = None
    _luisy_output: OutputSpec = OutputSpec(targets.PickleTarget)
    _luisy_naming: NamingRule = NamingRule()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Writes made by run() become visible only when run() returns (a failed run leaves no
        # output); then the task's fingerprint is recorded.
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "__luisy_staged__", False):
            cls.run = recording_run(run)

    def get_sub_dir(self) -> str:
        """Folder below the layer folder; ``""`` by default."""
        return ""

    def get_file_name(self) -> str:
        """File name without extension; by default the ``auto_filename`` rendering."""
        return type(self)._luisy_naming.render(self)

    def get_output_path(self) -> Path:
        """Where the output lives (computed only, nothing is created)."""
        spec = type(self)._luisy_output
        if spec.folder:
            folder_name = getattr(self, "get_folder_name", self.get_file_name)
            name = spec.folder_name or folder_name()
        else:
            name = with_extension(self.get_file_name(), spec.ext)
        return output_path(self, name, type(self)._luisy_layer)

    def output(self) -> luigi.Target:
        spec = type(self)._luisy_output
        return spec.target_cls.for_task(self, self.get_output_path(), **spec.options)

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
    def get_related_instances(cls) -> list[Any]:
        """Instances whose outputs exist, with parameters parsed back from ``auto_filename`` names.

        Only outputs named by ``auto_filename`` can be parsed; parameters left out of the name
        take their defaults. A file is kept only if the parsed instance names exactly that file.
        """
        spec = cls._luisy_output
        if spec.folder:
            return []
        layer_dir = get_working_dir()
        if cls._luisy_layer:
            layer_dir = layer_dir / project_name_of(cls) / cls._luisy_layer
        family = cls.get_task_family()
        found = []
        for path in sorted(layer_dir.rglob(f"{family}*.{spec.ext}")) if layer_dir.is_dir() else []:
            if TMP_MARKER in path.name:
                continue
            kwargs = parse_file_name(cls, path.name[: -len(spec.ext) - 1], cls._luisy_naming.excl_params)
            try:
                instance = cls(**kwargs) if kwargs is not None else None
            except Exception:  # a file that merely looks like ours: not an instance
                continue
            if instance is not None and Path(instance.output().path) == path:
                found.append(instance)
        return found


class Task(_OutputMixin, luigi.Task):
    """A luigi task with a typed output (pickle by default) placed by its decorators.

    Complete when its output exists and its recorded fingerprint (code, parameters, upstream;
    see docs/reruns.rst) equals the current one.
    """

    def complete(self) -> bool:
        outputs = flatten(self.output())
        return all(o.exists() for o in outputs) and fingerprint.is_current(self)


class ExternalTask(_OutputMixin, luigi.ExternalTask):
    """Data that already exists (raw input); luisy never runs it."""


def read_output(task: luigi.Task) -> Any:
    """``task.read()`` for luisy tasks, ``task.output().read()`` for other luigi tasks."""
    reader = getattr(task, "read", None)
    return reader() if callable(reader) else task.output().read()


class WrapperTask(luigi.WrapperTask):
    """A task that only groups requirements; ``read()`` returns their outputs."""

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
        self.write(self.preprocess(pd.concat(frames, ignore_index=True)))
