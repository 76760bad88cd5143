"""Class decorators. Each one only attaches configuration to the class it decorates.

Every decorator without a required argument works with and without parentheses
(``@luisy.raw`` and ``@luisy.raw()``; ``@luisy.csv_output`` and ``@luisy.csv_output(sep=";")``).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import luigi
import luigi.util

from luisy import formats, targets
from luisy.directory.inputs import TEMP_NAMES
from luisy.errors import DecorationError, MissingExtraError, UnknownOptionError
from luisy.spec import NamingRule, OutputSpec

T = TypeVar("T", bound="type[Any]")

__all__ = [
    "raw", "interim", "final", "project_name", "auto_filename", "requires", "inherits",
    "pickle_output", "csv_output", "parquet_output", "feather_output", "json_output",
    "xlsx_output", "hdf_output", "h5_output", "npy_output", "text_output",
    "parquetdir_output", "make_directory_output", "directory_input", "directory_output",
]

inherits = luigi.util.inherits


def _class_decorator(apply: Callable[..., T]) -> Callable[..., Any]:
    """Make ``apply(cls, **options)`` usable as ``@dec``, ``@dec()`` and ``@dec(**options)``."""

    own, takes_any = _signature_options(apply)

    @functools.wraps(apply)
    def decorator(cls: T | None = None, /, **options: Any) -> Any:
        if cls is None:
            return lambda c: decorator(c, **options)
        if not takes_any:
            _check_options(cls, apply.__name__, options, own)
        return apply(cls, **options)

    return decorator


def _signature_options(func: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """The keywords ``func`` names after the class, and whether it takes any other (``**options``)."""
    params = list(inspect.signature(func).parameters.values())[1:]
    return (frozenset(p.name for p in params if p.kind is not p.VAR_KEYWORD),
            any(p.kind is p.VAR_KEYWORD for p in params))


def _check_options(cls: Any, decorator: str, options: Mapping[str, Any], accepted: Iterable[str],
                   takes_any: bool = False, takers: str | None = None) -> None:
    """Raise :class:`UnknownOptionError` for the first option not in ``accepted``, saying where it
    belongs if it is another decorator's option or a ``DirectoryTask`` attribute. ``takes_any``:
    other options are passed on (to a reader or writer taking ``**kwargs``) unless they belong elsewhere;
    ``takers`` names who takes the options (default: the decorator)."""
    accepted = frozenset(accepted)
    for key, value in options.items():
        if key in accepted:
            continue
        where = _belongs_elsewhere(key, decorator)
        if where is None and takes_any:
            continue
        owner = f"@{decorator} on {getattr(cls, '__qualname__', cls)}"
        if where is not None:
            raise UnknownOptionError(f"{owner}: {key} is not an option of @{decorator}; it is "
                                     + where.format(key=key, value=value, cls=getattr(cls, "__qualname__", cls)))
        close = difflib.get_close_matches(key, sorted(accepted), n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif accepted and len(accepted) <= 12:
            hint = f"; it takes {', '.join(sorted(accepted))}"
        else:
            hint = "" if accepted else "; it takes none"
        raise UnknownOptionError(f"{owner}: unknown option {key!r} (not a keyword of {takers or '@' + decorator})"
                                 + hint)


def _belongs_elsewhere(key: str, decorator: str) -> str | None:
    """Where the option ``key`` belongs if not to ``decorator``: a ``DirectoryTask`` class attribute,
    or the option of another decorator."""
    from luisy.tasks.directory import DirectoryTask

    if key in _directory_task_attributes(DirectoryTask):
        return "a class attribute of the DirectoryTask: write {key} = {value!r} in the class body of {cls}"
    for other in (directory_input, directory_output, auto_filename, parquetdir_output):
        if other.__name__ != decorator and key in _signature_options(inspect.unwrap(other))[0]:
            return f"an option of @luisy.{other.__name__}"
    return None


@functools.cache
def _directory_task_attributes(directory_task: type) -> frozenset[str]:
    """The settings of a ``DirectoryTask`` that are class attributes (``on_error``, ``processes``...)."""
    return frozenset(name for name, value in vars(directory_task).items()
                     if not name.startswith("_") and not callable(value))


def _check_format_options(cls: Any, decorator: str, file_format: formats.Format, options: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownOptionError` for an option neither the format's reader nor its writer takes."""
    if not options:
        return
    try:
        named, takes_any = file_format.option_names()
    except MissingExtraError:  # its library is not installed: reading or writing says so
        return
    _check_options(cls, decorator, options, named, takes_any, f"the {file_format.name} format's reader or writer")


def _require_luisy_task(cls: Any, decorator: str) -> None:
    if not (isinstance(cls, type) and hasattr(cls, "_luisy_output")):
        raise DecorationError(
            f"@{decorator} decorates luisy tasks (luisy.Task, luisy.ExternalTask...), "
            f"not {getattr(cls, '__qualname__', cls)!r}"
        )


def _layer(name: str) -> Callable[..., Any]:
    def apply(cls: T) -> T:
        _require_luisy_task(cls, name)
        cls._luisy_layer = name
        return cls

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"Place the task's output in the ``{name}`` layer: ``<working_dir>/<project>/{name}/``."
    return _class_decorator(apply)


raw = _layer("raw")
interim = _layer("interim")
final = _layer("final")


def project_name(name: str) -> Callable[[T], T]:
    """Set the project folder of the task's output (default: the task's top-level package)."""

    def apply(cls: T) -> T:
        cls.project_name = name
        return cls

    return apply


def _auto_get_file_name(self: Any) -> str:
    return type(self)._luisy_naming.render(self)


@_class_decorator
def auto_filename(cls: T, excl_params: list[str] | tuple[str, ...] | None = None,
                  excl_none: bool = False) -> T:
    """Name the output after the task family and its parameters (on by default for ``luisy.Task``).

    ``excl_params`` leaves parameters out of the name; ``excl_none=True`` leaves out those whose
    value is ``None``.
    """
    _require_luisy_task(cls, "auto_filename")
    cls._luisy_naming = NamingRule(tuple(excl_params or ()), excl_none)
    cls.get_file_name = _auto_get_file_name
    return cls


class SoleRequirement(dict):
    """The dict of ``requires(OneTask, as_dict=True)``: one entry, whose attributes it also lends
    (luigi keeps the class when it maps the requirements to their outputs, so ``self.input()``
    is one too). Where a dict has the attribute itself (``items``, ``get``...), the dict's wins."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or len(self) != 1:
            raise AttributeError(name)
        return getattr(next(iter(self.values())), name)


def requires(*tasks: type[Any], as_dict: bool = False) -> Callable[[T], T]:
    """Inherit the parameters of ``tasks`` and require them.

    One task: ``requires()`` returns it; several: a list in the given order;
    ``as_dict=True``: a dict keyed by task family. With one task that dict also stands for its
    only entry, as luisy 1.x returned the task itself: ``self.input()["Raw"].read()`` and
    ``self.input().read()`` both work (see :class:`SoleRequirement`).
    """
    if not tasks:
        raise TypeError("requires() needs at least one task class")

    def apply(cls: T) -> T:
        cls = luigi.util.inherits(*tasks)(cls)
        mapping = (SoleRequirement if len(tasks) == 1 else dict) if as_dict else None

        def _requires(self: Any) -> Any:
            # Made once per instance: a task's parameters do not change, and luigi and the
            # fingerprints ask for the requirements of every task many times.
            required = self.__dict__.get("_luisy_required")
            if required is None:
                required = self.__dict__["_luisy_required"] = [self.clone(t) for t in tasks]
            if mapping is not None:
                return mapping((t.get_task_family(), r) for t, r in zip(tasks, required, strict=True))
            return required[0] if len(tasks) == 1 else list(required)

        cls.requires = _requires
        return cls

    return apply


def _output(target_cls: type[Any], name: str, doc: str) -> Callable[..., Any]:
    def apply(cls: T, **options: Any) -> T:
        _require_luisy_task(cls, name)
        _check_format_options(cls, name, target_cls.file_format, options)
        cls._luisy_output = OutputSpec(target_cls, options)
        return cls

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = doc
    return _class_decorator(apply)


pickle_output = _output(targets.PickleTarget, "pickle_output", "Store the output as a pickle (the default).")
csv_output = _output(targets.CSVTarget, "csv_output", "Store a DataFrame as csv (written with ``index=False``).")
parquet_output = _output(targets.ParquetTarget, "parquet_output", "Store a DataFrame as parquet (pyarrow).")
feather_output = _output(targets.FeatherTarget, "feather_output", "Store a DataFrame as feather (pyarrow).")
json_output = _output(targets.JSONTarget, "json_output", "Store a dict or list as json.")
xlsx_output = _output(targets.XLSXTarget, "xlsx_output", "Store a DataFrame as xlsx (extra ``excel``).")
hdf_output = _output(targets.HDFTarget, "hdf_output", "Store a DataFrame in an HDFStore, key ``data`` (extra ``hdf``).")
h5_output = _output(
    targets.H5Target, "h5_output",
    "Store an ndarray or a nested dict of arrays and scalars with h5py; parameters become attributes.",
)
npy_output = _output(targets.NpyTarget, "npy_output", "Store an ndarray as .npy (no pickles).")
text_output = _output(targets.TextTarget, "text_output", "Store a str as utf-8 text.")


def _require_folder_name(cls: Any, decorator: str) -> None:
    if not callable(getattr(cls, "get_folder_name", None)):
        raise DecorationError(f"@{decorator}: {cls.__qualname__} must define get_folder_name()")


@_class_decorator
def parquetdir_output(cls: T, outdir: str | None = None) -> T:
    """The output is a folder of parquet files, read as one DataFrame.

    The folder is ``get_folder_name()`` (or ``outdir``) inside the task's output directory.
    """
    _require_luisy_task(cls, "parquetdir_output")
    if outdir is None:
        _require_folder_name(cls, "parquetdir_output")
    cls._luisy_output = OutputSpec(targets.ParquetDirTarget, folder=True, folder_name=outdir)
    return cls


def make_directory_output(read_file_func: Callable[[str], Any],
                          regex_pattern: str | None = None) -> Callable[[T], T]:
    """For an ``ExternalTask`` with ``get_folder_name()``: read each matching file of the folder.

    ``read()`` yields ``read_file_func(path)`` for each file whose name matches ``regex_pattern``
    (searched, not anchored), sorted by name, skipping ``None`` results.
    """
    from luisy.tasks.base import ExternalTask

    def apply(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, ExternalTask)):
            raise DecorationError(
                f"make_directory_output decorates a luisy.ExternalTask, not {getattr(cls, '__qualname__', cls)!r}"
            )
        _require_folder_name(cls, "make_directory_output")
        options = {"read_file_func": read_file_func, "regex_pattern": regex_pattern}
        cls._luisy_output = OutputSpec(targets.DirectoryInputTarget, options, folder=True)
        return cls

    return apply


@_class_decorator
def directory_input(cls: T, pattern: str = "*", read: Callable[[str], Any] | None = None,
                    recursive: bool = False, items: str = "files", marker: str | None = None,
                    ignore: Iterable[str] = TEMP_NAMES) -> T:
    """The output is an existing folder (``get_folder_name()``) read file by file.

    Files match the glob ``pattern`` (searched in sub-folders with ``recursive=True``) and are
    read by ``read(path)``, by default by extension. Files and folders whose name matches a glob
    in ``ignore`` are never input items (default: names writers use for files still being written,
    ``*.part``, ``*.tmp``, ``*.crdownload``, and hidden files).

    ``items="folders"``: each sub-folder matching ``pattern`` is one item (a dataset of files),
    ``read(path)`` gets the folder's path (default: ``process`` gets the path itself), and its
    fingerprint changes whenever a file in it does. Empty folders, and with ``marker`` (a file
    name such as ``"done.txt"``) folders without that file, are not items yet.
    """
    _require_luisy_task(cls, "directory_input")
    _require_folder_name(cls, "directory_input")
    if items not in ("files", "folders"):
        raise DecorationError(f"@directory_input on {cls.__qualname__}: items must be 'files' or 'folders', "
                              f"not {items!r}")
    if items == "folders" and recursive:
        raise DecorationError(f"@directory_input on {cls.__qualname__}: items='folders' takes every file in "
                              "each folder already; recursive=True does not apply")
    if marker is not None and items != "folders":
        raise DecorationError(f"@directory_input on {cls.__qualname__}: marker={marker!r} needs items='folders'")
    if isinstance(ignore, str):
        raise DecorationError(f"@directory_input on {cls.__qualname__}: ignore is a list of glob patterns, "
                              f"not the string {ignore!r}")
    options = {"read_file_func": read, "pattern": pattern, "recursive": recursive, "ignore": tuple(ignore),
               "folders": items == "folders", "marker": marker}
    cls._luisy_output = OutputSpec(targets.DirectoryInputTarget, options, folder=True)
    return cls


_FORMAT_NAMES = {f.name: f for f in formats.BY_EXTENSION.values()} | formats.BY_EXTENSION


@_class_decorator
def directory_output(cls: T, format: str = "pkl", **options: Any) -> T:  # noqa: A002 - the 1.x-style keyword
    """The output is a managed directory: one file per item plus a manifest (see docs/directory.rst).

    ``format`` is an extension or format name (``pkl``, ``npy``, ``parquet``, ``csv``, ``json``,
    ``txt``, ``h5``, ``png``...); ``options`` go to its reader and writer. The folder is
    ``get_folder_name()`` if the class defines it, else the task's file name.
    """
    from luisy.directory.target import DirectoryTarget

    _require_luisy_task(cls, "directory_output")
    try:
        file_format = _FORMAT_NAMES[format.lower().lstrip(".")]
    except KeyError:
        raise DecorationError(f"@directory_output on {cls.__qualname__}: unknown format {format!r}; "
                              f"known: {', '.join(sorted(formats.BY_EXTENSION))}") from None
    _check_format_options(cls, "directory_output", file_format, options)
    cls._luisy_output = OutputSpec(DirectoryTarget, {"file_format": file_format, **options}, folder=True)
    return cls


def __getattr__(name: str) -> Any:
    # luisy 1.x's cloud and Spark names fail with one line that says what to do instead.
    from luisy.unavailable import missing

    raise missing(__name__, name)
