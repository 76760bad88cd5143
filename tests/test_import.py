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


def _imports_between_units() -> dict[str, set[str]]:
    """Which parts of the package (a top-level module, or a sub-package with everything in it)
    import which others, counting every import statement: deferred ones inside functions and
    those only for type checking included."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "luisy"
    modules = {".".join(("luisy", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                if target in modules and target.startswith("luisy.") and unit(target) != unit(name) != "luisy":
                    edges.setdefault(unit(name), set()).add(unit(target))
    return edges


def test_no_two_parts_of_the_package_import_each_other():
    edges = _imports_between_units()
    cycles = []

    def visit(unit: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(unit, ())):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles[:5])
    assert "luisy.directory" in edges.get("luisy.fingerprint", set()), "the walk sees imports at all"
