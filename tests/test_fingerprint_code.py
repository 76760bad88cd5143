"""Code fingerprints: what counts as a change, and code that cannot be analysed (issue 4, item 6)."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import types
import uuid

import pytest
from conftest import write_project

from luisy.fingerprint.code import code_fingerprint

HELPERS = '''
    """Helpers."""
    import collections
    import os.path

    SCALE = 2
    A, B = 1, 2
    TABLE = {}
    TABLE["k"] = 3
    reader = lambda path: path.upper()  # noqa: E731


    def scale(x):
        """Docstring."""
        return x * SCALE


    def unused():
        return collections.OrderedDict()
'''

CONSTS = '''
    from .helpers import *  # noqa: F403
'''

TASKS = '''
    import _frozen_importlib  # frozen modules broke luisy 1.x on Python 3.11
    import os
    import zipimport
    import numpy as np
    import luisy
    from . import helpers
    from .helpers import scale
    from .consts import *  # noqa: F403


    class Scaled(luisy.Task):
        """A task."""

        def run(self):
            # a comment
            self.write(scale(os.getpid()))


    class UsesModuleAttribute(luisy.Task):
        def run(self):
            self.write(helpers.A)


    class UsesStar(luisy.Task):
        def run(self):
            self.write(TABLE["k"] + np.int64(B))  # noqa: F405


    class UsesLambda(luisy.Task):
        def run(self):
            self.write(helpers.reader("x"))


    class Plain(luisy.Task):
        def run(self):
            self.write(1)


    class UsesStdlib(luisy.Task):
        def run(self):
            self.write((_frozen_importlib.__name__, zipimport.__name__, os.sep))


    def make_closure():
        class Inner(luisy.Task):
            def run(self):
                self.write(2)
        return Inner
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh importable package; ``load()`` (re)imports it and returns its tasks module."""
    name = f"fp_{uuid.uuid4().hex[:8]}"
    files = {f"{name}/__init__.py": "", f"{name}/helpers.py": HELPERS, f"{name}/consts.py": CONSTS,
             f"{name}/tasks.py": TASKS}
    write_project(tmp_path, files)
    monkeypatch.syspath_prepend(str(tmp_path))

    class Project:
        package = name
        root = tmp_path / name

        def edit(self, module, old, new):
            path = self.root / f"{module}.py"
            text = path.read_text()
            assert old in text, old
            path.write_text(text.replace(old, new))
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

        def load(self):
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[mod]
            importlib.invalidate_caches()
            return importlib.import_module(f"{name}.tasks")

    yield Project()
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def _definitions(cls):
    return {k.split(".", 1)[1] for k in code_fingerprint(cls).definitions}


def test_follows_imports_and_records_versions(project):
    tasks = project.load()
    assert _definitions(tasks.Scaled) == {"tasks:Scaled", "helpers:scale", "helpers:SCALE"}
    assert _definitions(tasks.UsesModuleAttribute) == {"tasks:UsesModuleAttribute", "helpers:A"}
    assert _definitions(tasks.UsesLambda) == {"tasks:UsesLambda", "helpers:reader"}
    fp = code_fingerprint(tasks.UsesStar)
    assert {"consts:TABLE", "consts:B"} <= {k.split(".", 1)[1] for k in fp.definitions} or \
        {"helpers:TABLE", "helpers:B"} <= {k.split(".", 1)[1] for k in fp.definitions}
    assert "numpy" in fp.versions and "luisy" in fp.versions
    assert not any(v in fp.versions for v in ("os", "collections")), "the standard library has no version"
    assert fp.notes == ()


def test_comments_docstrings_and_formatting_do_not_count(project):
    before = code_fingerprint(project.load().Scaled).digest
    project.edit("tasks", '    """A task."""\n', '    """Another docstring."""\n\n')
    project.edit("tasks", "# a comment", "# another comment")
    project.edit("helpers", "return x * SCALE", "return (x *\n            SCALE)  # formatted")
    assert code_fingerprint(project.load().Scaled).digest == before


@pytest.mark.parametrize("module,old,new,changed,unchanged", [
    ("tasks", "scale(os.getpid())", "scale(os.getppid())", "Scaled", "Plain"),
    ("helpers", "SCALE = 2", "SCALE = 3", "Scaled", "UsesModuleAttribute"),
    ("helpers", "A, B = 1, 2", "A, B = 1, 5", "UsesStar", "Scaled"),  # a tuple assignment
    ("helpers", 'TABLE["k"] = 3', 'TABLE["k"] = 4', "UsesStar", "UsesLambda"),  # a subscript assignment
    ("helpers", "path.upper()", "path.lower()", "UsesLambda", "UsesModuleAttribute"),
])
def test_a_change_reaches_exactly_its_users(project, module, old, new, changed, unchanged):
    tasks = project.load()
    before = {n: code_fingerprint(getattr(tasks, n)).digest for n in (changed, unchanged)}
    project.edit(module, old, new)
    tasks = project.load()
    assert code_fingerprint(getattr(tasks, changed)).digest != before[changed]
    assert code_fingerprint(getattr(tasks, unchanged)).digest == before[unchanged]


def test_closure_falls_back_to_the_whole_module(project):
    tasks = project.load()
    fp = code_fingerprint(tasks.make_closure())
    assert any("defined inside a function" in note and "whole module" in note for note in fp.notes)
    project.edit("tasks", "self.write(1)", "self.write(11)")  # elsewhere in the module
    second = code_fingerprint(project.load().make_closure())
    assert second.digest != fp.digest
    project.edit("helpers", "SCALE = 2", "SCALE = 5")  # a helper the module imports
    assert code_fingerprint(project.load().make_closure()).digest != second.digest


def test_notebook_class_without_source_file():
    import luisy

    def define(body: str) -> type:
        module = types.ModuleType("notebook_cells")  # a notebook's classes all live in one module
        module.luisy = luisy
        sys.modules[module.__name__] = module
        code = textwrap.dedent(f"""
            class Cell(luisy.Task):
                def run(self):
                    self.write({body})
        """)
        exec(compile(code, "<ipython-input-1>", "exec"), module.__dict__)
        return module.Cell

    first, same, other = define("1"), define("1"), define("2")
    assert any("compiled code" in note for note in code_fingerprint(first).notes)
    assert code_fingerprint(first).digest == code_fingerprint(same).digest
    assert code_fingerprint(first).digest != code_fingerprint(other).digest


def test_script_run_as_main_is_fingerprinted_whole(tmp_path):
    import subprocess

    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent("""
        import luisy
        from luisy.fingerprint.code import code_fingerprint

        class Job(luisy.Task):
            def run(self):
                self.write(1)

        if __name__ == "__main__":
            fp = code_fingerprint(Job)
            print(fp.digest)
            print(fp.notes[0])
    """))
    first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert "a script run as __main__; fingerprinting the whole module" in first
    script.write_text(script.read_text().replace("self.write(1)", "self.write(2)"))
    second = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert first.split()[0] != second.split()[0]


def test_frozen_and_stdlib_modules_are_neither_analysed_nor_versioned(project):
    import luigi

    fp = code_fingerprint(project.load().UsesStdlib)
    assert _definitions(project.load().UsesStdlib) == {"tasks:UsesStdlib"}
    assert set(fp.versions) == {"luisy"} and fp.notes == ()
    library = code_fingerprint(luigi.Task)  # a library's own task: its version stands for its code
    assert library.versions == {"luigi": luigi.__version__} and not library.definitions


def test_library_versions_by_distribution_whatever_its_name(tmp_path, monkeypatch):
    import importlib.metadata

    import numpy as np
    import PIL
    import skimage

    # named like its module (numpy); named otherwise (scikit-image, pillow)
    (tmp_path / "imaging.py").write_text(textwrap.dedent("""
        import numpy, PIL.Image, skimage
        import luisy


        class Segment(luisy.Task):
            def run(self):
                self.write((numpy.zeros(1), PIL.Image.new, skimage.filters))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import imaging

    versions = code_fingerprint(imaging.Segment).versions
    pillow = importlib.metadata.distribution("pillow").metadata["Name"]
    assert {k: versions.get(k) for k in ("numpy", "scikit-image", pillow)} == {
        "numpy": np.__version__, "scikit-image": skimage.__version__, pillow: PIL.__version__}
