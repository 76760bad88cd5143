"""luisy: typed outputs, data layers, directory tasks and change detection on top of luigi."""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    # luigi warns when it is imported unless its own configuration sets [core] autoload_range,
    # which cannot be set before luigi is imported. This import is luisy's, not the user's.
    warnings.filterwarnings("ignore", message=r"\s*Autoloading range tasks", category=DeprecationWarning)
    from luisy import config  # noqa: F401 - imports luigi first (see luisy.config.unreadable_luigi_config)

from luisy.config import Config, get_working_dir, set_working_dir, working_dir
from luisy.decorators import (
    auto_filename,
    csv_output,
    directory_input,
    directory_output,
    feather_output,
    final,
    h5_output,
    hdf_output,
    inherits,
    interim,
    json_output,
    make_directory_output,
    npy_output,
    parquet_output,
    parquetdir_output,
    pickle_output,
    project_name,
    raw,
    requires,
    text_output,
    xlsx_output,
)
from luisy.errors import LuisyError
from luisy.execution import RunSummary, build
from luisy.parameters import *  # noqa: F403 - luigi's parameter classes
from luisy.parameters import __all__ as _parameter_names
from luisy.sharing import download, upload
from luisy.tasks import ConcatenationTask, DirectoryTask, ExternalTask, ReduceTask, Task, WrapperTask

__version__ = "2.0.0.dev0"

__all__ = [
    "Config", "get_working_dir", "set_working_dir", "working_dir",
    "Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "DirectoryTask", "ReduceTask",
    "raw", "interim", "final", "project_name", "auto_filename", "requires", "inherits",
    "pickle_output", "csv_output", "parquet_output", "feather_output", "json_output",
    "xlsx_output", "hdf_output", "h5_output", "npy_output", "text_output",
    "parquetdir_output", "make_directory_output", "directory_input", "directory_output",
    "build", "RunSummary", "LuisyError", "download", "upload",
    *_parameter_names,
]


def __getattr__(name: str) -> Any:
    # luisy 1.x's Spark names fail with one line that says what to do instead.
    from luisy.unavailable import missing

    raise missing(__name__, name)
