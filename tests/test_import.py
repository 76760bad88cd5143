from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_import_luisy_does_not_import_heavy_libraries():
    loaded = _modules_after("import luisy")
    assert "luisy" in loaded
    assert not loaded & {"pandas", "numpy", "pyarrow", "h5py", "skimage", "tables", "openpyxl", "dask", "distributed"}


def test_cli_help_does_not_import_heavy_libraries():
    loaded = _modules_after("from luisy.cli import main")
    assert not loaded & {"pandas", "numpy", "pyarrow"}


def test_import_has_no_logging_side_effects():
    code = ("import logging; before = (logging.getLogger().handlers[:], logging.getLogger().level); "
            "import luisy, luisy.cli, luisy.testing; "
            "print(before == (logging.getLogger().handlers[:], logging.getLogger().level))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def test_1x_module_paths():
    code = ("import luisy.decorators, luisy.targets, luisy.tasks.base, luisy.helpers, luisy.config, luisy.cli;"
            "from luisy.targets import PickleTarget, CSVTarget, JSONTarget, ParquetTarget;"
            "from luisy.tasks.base import Task, ExternalTask, WrapperTask, ConcatenationTask;"
            "from luisy.helpers import get_string_repr; from luisy.config import Config; from luisy.cli import build;"
            "from luisy.decorators import raw, interim, final, requires, auto_filename, make_directory_output;"
            "from luisy.config import activate_download, change_working_dir, set_working_dir;"
            "from luisy.targets import LocalTarget, LuisyTarget;"
            "import luisy; assert luisy.cli.build is not luisy.build  # 1.x's signature and result")
    subprocess.run([sys.executable, "-c", code], check=True)
