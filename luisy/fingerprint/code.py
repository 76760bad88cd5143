"""Fingerprint of a task class's code: the definitions it uses, followed across the project (see docs/reruns.rst).

A *definition* is a top-level name of a project module together with the statements that bind
or mutate it (``def``, ``class``, assignments — tuple and subscript ones included — and imports).
Starting from the task class, every name a definition reads is resolved:

* to another definition of the same module, or of a project module it imports (absolute or
  relative imports, star imports, ``module.attribute`` references): followed;
* to a third-party distribution: its installed version (``importlib.metadata``, no subprocess);
* to the standard library or a builtin: nothing (its version is Python's).

A definition's fingerprint is its AST without docstrings, so comments, docstrings and formatting
never matter. Code that cannot be analysed this way (no source, a class defined inside a
function, a name found nowhere) is covered by fingerprinting its whole module instead, and the
result says so in :attr:`CodeFingerprint.notes`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.metadata
import importlib.util
import inspect
import itertools
import os
import sys
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from luisy.bounded import BoundedCache
from luisy.digests import digest

__all__ = ["CodeFingerprint", "code_fingerprint"]

_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__class__", "__module__", "__qualname__"}


@dataclass(frozen=True)
class CodeFingerprint:
    """``digest`` summarises ``definitions`` (``module:name`` → hash) and ``versions``."""

    digest: str
    definitions: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_Tree = TypeVar("_Tree", bound=ast.AST)


def _strip_docstrings(tree: _Tree) -> _Tree:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _dump(nodes: list[ast.stmt]) -> str:
    return "\n".join(ast.dump(node, annotate_fields=False, include_attributes=False) for node in nodes)


@dataclass
class _Import:
    module: str  # absolute module name
    attr: str | None  # ``from module import attr``; None for ``import module``


class _ModuleIndex:
    """A project module's top-level bindings, imports and star imports, from its source."""

    def __init__(self, name: str, source: str):
        self.name = name
        self.tree = _strip_docstrings(ast.parse(source))
        self.bindings: dict[str, list[ast.stmt]] = {}
        self.imports: dict[str, _Import] = {}
        self.star_imports: list[str] = []
        self._analysed: dict[str, _Analysis] = {}
        self.package = name if _is_package(name) else name.rpartition(".")[0]
        for stmt in self.tree.body:
            self._index(stmt, self.package)

    def _index(self, stmt: ast.stmt, package: str) -> None:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                bound = alias.asname or alias.name.partition(".")[0]
                self.imports[bound] = _Import(alias.name if alias.asname else bound, None)
            return
        if isinstance(stmt, ast.ImportFrom):
            module = _absolute(stmt.module or "", stmt.level, package)
            for alias in stmt.names:
                if alias.name == "*":
                    self.star_imports.append(module)
                else:
                    self.imports[alias.asname or alias.name] = _Import(module, alias.name)
            return
        for name in _bound_names(stmt):
            self.bindings.setdefault(name, []).append(stmt)

    def analysed(self, name: str) -> _Analysis:
        """Hash and references of definition ``name`` (``"*"``: the whole module); computed once."""
        found = self._analysed.get(name)
        if found is None:
            statements = self.tree.body if name == "*" else self.bindings[name]
            names, attributes, local = _references(statements)
            found = self._analysed[name] = _Analysis(
                digest(_dump(statements)), names - local, attributes, _nested_imports(statements, self.package))
        return found


@dataclass(frozen=True)
class _Analysis:
    digest: str
    names: set[str]  # read and not bound locally
    attributes: set[tuple[str, str]]
    nested_imports: list[_Import]


def _is_package(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and hasattr(module, "__path__")


def _absolute(module: str, level: int, package: str) -> str:
    if not level:
        return module
    return importlib.util.resolve_name("." * level + module, package)


def _bound_names(stmt: ast.stmt) -> set[str]:
    """Top-level names a statement defines or changes (``X[k] = v`` and ``X.a = v`` change ``X``)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    names: set[str] = set()
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    elif isinstance(stmt, ast.Expr):  # CONFIG.update(...): a call on a module-level name changes it
        call = stmt.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            base = _base_name(call.func.value)
            return {base} if base else set()
        return set()
    else:  # if / for / with / try at module level: every name bound anywhere inside
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
        return names
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
        if isinstance(target, (ast.Subscript, ast.Attribute)):
            base = _base_name(target)
            if base:
                names.add(base)
    return names


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _nested_imports(nodes: list[ast.stmt], package: str) -> list[_Import]:
    """Imports inside functions and classes: what they bring in is used like a module-level import."""
    found: list[_Import] = []
    for stmt in nodes:
        for node in ast.walk(stmt):
            if node is stmt:
                continue
            if isinstance(node, ast.Import):
                found.extend(_Import(alias.name, None) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = _absolute(node.module or "", node.level, package)
                found.extend(_Import(module, alias.name) for alias in node.names if alias.name != "*")
    return found


def _references(nodes: list[ast.stmt]) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """Names read by ``nodes``, ``(name, attribute)`` pairs of ``name.attribute`` reads, and local names.

    Local names are those bound anywhere inside (arguments, assignments, loop and comprehension
    variables, nested definitions and imports); a read of one is not a reference to the module.
    """
    names: set[str] = set()
    attributes: set[tuple[str, str]] = set()
    local: set[str] = set()
    for stmt in nodes:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                (local if isinstance(node.ctx, ast.Store) else names).add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                attributes.add((node.value.id, node.attr))
            elif isinstance(node, ast.arg):
                local.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not stmt:
                local.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and node is not stmt:
                local.update(alias.asname or alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                local.add(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                local.add(node.name)
    return names, attributes, local


@functools.cache
def _version(top_level: str) -> tuple[str, str] | None:
    """(distribution, version) of the installed distribution that provides module ``top_level``."""
    # Most packages are named like their module (numpy, luigi, pandas): ask for that one first.
    try:
        named = [importlib.metadata.distribution(top_level)]
    except (importlib.metadata.PackageNotFoundError, ValueError):
        named = []
    for dist in itertools.chain(named, importlib.metadata.distributions()):
        if _provides(dist, top_level):
            return dist.metadata["Name"], dist.version
    return None


def _provides(dist: importlib.metadata.Distribution, top_level: str) -> bool:
    """Whether ``dist`` installs the top-level module ``top_level`` (not just shares its name).

    Reads ``top_level.txt``, else searches the raw ``RECORD`` text: building ``dist.files`` for
    every installed distribution (as ``packages_distributions()`` does) takes a tenth of a second.
    """
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return top_level in listed.split()
    record = dist.read_text("RECORD")
    if record is not None:
        record = "\n" + record
        return f"\n{top_level}/" in record or f"\n{top_level}.py," in record
    return any(file.parts[0] in (top_level, f"{top_level}.py") for file in dist.files or ())


@functools.cache
def _excluded_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(os.path.realpath(r) + os.sep for r in roots)


class _Project:
    """Which modules are the project's own: analysed, not just versioned."""

    def __init__(self, module: ModuleType):
        self.top = module.__name__.partition(".")[0]
        file = getattr(module, "__file__", None)
        depth = module.__name__.count(".") + (1 if hasattr(module, "__path__") else 0)
        root = Path(os.path.realpath(file)).parent if file else None
        if root is not None:
            for _ in range(depth):
                root = root.parent
        self.root = str(root) + os.sep if root else None

    def owns(self, module_name: str) -> bool:
        top = module_name.partition(".")[0]
        if top == self.top:
            return True
        if top in sys.stdlib_module_names or top in ("luisy", "luigi") or _version(top) is not None:
            return False
        module = sys.modules.get(module_name) or sys.modules.get(top)
        file = getattr(module, "__file__", None)
        if not file or not self.root:
            return False
        real = os.path.realpath(file)
        return real.startswith(self.root) and not real.startswith(_excluded_roots()) and "site-packages" not in real


@functools.lru_cache(maxsize=512)
def _index_for(name: str, path: str, mtime_ns: int, size: int) -> _ModuleIndex:
    return _ModuleIndex(name, Path(path).read_text(encoding="utf-8"))


def _module_index(name: str) -> _ModuleIndex | None:
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except Exception:
            return None
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    try:
        stat = os.stat(file)
        return _index_for(name, file, stat.st_mtime_ns, stat.st_size)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


class _Walker:
    """Follows definitions from a start set; collects their hashes, versions and notes."""

    def __init__(self, project: _Project, root: type | None = None):
        self.project = project
        # Other task classes a task names (in requires()) are upstream, fingerprinted as such.
        self.own_classes = set(root.__mro__) if root else set()
        self.definitions: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.notes: list[str] = []
        self._todo: list[tuple[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def run(self, module: str, name: str) -> None:
        self._todo.append((module, name))
        self.drain()

    def drain(self) -> None:
        """Visit every definition reached so far, and what they reach."""
        while self._todo:
            self._visit(*self._todo.pop())

    def whole_module(self, module: str, why: str) -> None:
        key = f"{module}:*"
        if key in self.definitions:
            return
        index = _module_index(module)
        if index is None:
            self.definitions[key] = digest(self._compiled_fallback(module))
            self.notes.append(f"{module}: {why}; no source, fingerprinting its compiled code")
            return
        analysis = index.analysed("*")
        self.definitions[key] = analysis.digest
        self.notes.append(f"{module}: {why}; fingerprinting the whole module")
        self._follow(index, analysis)

    def _compiled_fallback(self, module: str) -> str:
        mod = sys.modules.get(module)
        parts = []
        for name, value in sorted(vars(mod).items()) if mod else ():
            if getattr(value, "__module__", None) == module:
                parts.append(name + _code_repr(value))
        return "\n".join(parts)

    def _visit(self, module: str, name: str) -> None:
        key = f"{module}:{name}"
        if (module, name) in self._seen or f"{module}:*" in self.definitions:
            return
        self._seen.add((module, name))
        if self._is_other_task(module, name):
            return
        index = _module_index(module)
        if index is None:
            self.whole_module(module, "source unavailable")
            return
        if name in index.bindings:
            analysis = index.analysed(name)
            self.definitions[key] = analysis.digest
            self._follow(index, analysis)
        elif name in index.imports:
            self._import(index.imports[name], key)
        elif not self._star(index, name):
            self.whole_module(module, f"{name!r} is not defined at its top level")

    def _follow(self, index: _ModuleIndex, analysis: _Analysis) -> None:
        names, attributes = analysis.names, analysis.attributes
        for nested in analysis.nested_imports:
            if nested.attr is None and self.project.owns(nested.module):
                self.whole_module(nested.module, f"imported inside {index.name}")
            else:
                self._import(nested, index.name)
        modules = {}
        for base, attr in attributes:
            target = index.imports.get(base)
            module = self._bound_module(target) if target is not None and base not in index.bindings else None
            if module is not None:
                modules[base] = module
                self._module_attribute(module, attr)
        for name in names:
            if name in index.bindings:
                self._todo.append((index.name, name))
            elif name in index.imports:
                if name in modules:
                    continue  # a module used through its attributes, handled above
                self._import(index.imports[name], f"{index.name}:{name}")
            elif name in _BUILTINS:
                continue
            elif not self._star(index, name):
                self.whole_module(index.name, f"{name!r} is not defined at its top level")

    def _import(self, target: _Import, via: str) -> None:
        if target.attr is None:  # ``import pkg.mod`` used as a whole
            if self.project.owns(target.module):
                self.whole_module(target.module, f"used as a whole by {via}")
            else:
                self._external(target.module)
        else:
            self._module_attribute(target.module, target.attr)

    def _module_attribute(self, module: str, attr: str) -> None:
        if not self.project.owns(module):
            self._external(module)
            return
        submodule = f"{module}.{attr}"
        if submodule in sys.modules and not self._defines(module, attr):
            self.whole_module(submodule, f"imported as a module from {module}")
        else:
            self._todo.append((module, attr))

    def _bound_module(self, target: _Import) -> str | None:
        """The module an import binds (``import m``, or ``from pkg import submodule``), else ``None``."""
        if target.attr is None:
            return target.module
        submodule = f"{target.module}.{target.attr}"
        if submodule in sys.modules and not self._defines(target.module, target.attr):
            return submodule
        return None

    def _is_other_task(self, module: str, name: str) -> bool:
        import luigi

        value = getattr(sys.modules.get(module), name, None)
        return isinstance(value, type) and issubclass(value, luigi.Task) and value not in self.own_classes

    @staticmethod
    def _defines(module: str, attr: str) -> bool:
        index = _module_index(module)
        return index is not None and (attr in index.bindings or attr in index.imports)

    def _star(self, index: _ModuleIndex, name: str) -> bool:
        for module in index.star_imports:
            if not self.project.owns(module):
                mod = sys.modules.get(module)
                if mod is not None and hasattr(mod, name):
                    self._external(module)
                    return True
                continue
            star = _module_index(module)
            if star is not None and (name in star.bindings or name in star.imports or star.star_imports):
                self._todo.append((module, name))
                return True
        return False

    def _external(self, module: str) -> None:
        top = module.partition(".")[0]
        found = _version(top)
        if found:
            self.versions[found[0]] = found[1]


def _code_repr(obj: Any) -> str:
    """Bytecode and constants of functions (also inside classes), for code with no source."""
    if isinstance(obj, type):
        return "".join(name + _code_repr(value) for name, value in sorted(vars(obj).items()))
    code = getattr(inspect.unwrap(obj), "__code__", None) if callable(obj) else None
    if code is None:
        return repr(obj) if isinstance(obj, (int, float, str, bytes, bool, tuple, type(None))) else ""
    consts = "".join(_code_repr(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts)
    return code.co_code.hex() + consts + ",".join(code.co_names)


_cache: BoundedCache[type, CodeFingerprint] = BoundedCache(4096, weak_keys=True)


def code_fingerprint(cls: type) -> CodeFingerprint:
    """The fingerprint of ``cls``'s code; computed once per class per process."""
    return _cache.get_or_make(cls, _compute)


def _compute(cls: type) -> CodeFingerprint:
    module = sys.modules.get(cls.__module__)
    walker = _Walker(_Project(module) if module else _Project(ModuleType(cls.__module__)), cls)
    file = getattr(module, "__file__", None) or ""
    if file and os.path.realpath(file).startswith(_excluded_roots()):
        walker._external(cls.__module__)  # an installed library's task: its version is its code
    elif module is None:
        walker.definitions[f"{cls.__module__}:{cls.__qualname__}"] = digest(_code_repr(cls))
        walker.notes.append(f"{cls.__module__}: module not loaded; fingerprinting the compiled class")
    elif "<locals>" in cls.__qualname__:
        walker.whole_module(cls.__module__, f"{cls.__qualname__} is defined inside a function")
        walker.drain()
    elif cls.__module__ == "__main__" or _module_index(cls.__module__) is None:
        _main_or_notebook(walker, cls)
    else:
        walker.run(cls.__module__, cls.__qualname__.partition(".")[0])
    definitions = dict(sorted(walker.definitions.items()))
    versions = dict(sorted(walker.versions.items()))
    total = digest(*(f"{k}={v}" for k, v in definitions.items()), *(f"{k}=={v}" for k, v in versions.items()))
    return CodeFingerprint(total, definitions, versions, tuple(dict.fromkeys(walker.notes)))


def _main_or_notebook(walker: _Walker, cls: type) -> None:
    """A script run as ``__main__`` (its file is there) or a notebook cell (no file at all)."""
    if _module_index(cls.__module__) is not None:
        walker.whole_module(cls.__module__, "a script run as __main__")
        walker.drain()
        return
    key = f"{cls.__module__}:{cls.__qualname__}"
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        walker.definitions[key] = digest(_dump(_strip_docstrings(ast.parse(source)).body))
        walker.notes.append(f"{cls.__module__}: no module file (a notebook?); fingerprinting the class source")
    except (OSError, TypeError, SyntaxError):
        walker.definitions[key] = digest(_code_repr(cls))
        walker.notes.append(f"{cls.__module__}: no source for {cls.__qualname__}; fingerprinting its compiled code")
