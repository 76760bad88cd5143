"""The dependency graph of a task as a text tree, Graphviz DOT, or an SVG/PNG drawn by Graphviz."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import luigi
from luigi.task import flatten

from luisy.directory.target import DirectoryTarget
from luisy.errors import LuisyError
from luisy.fingerprint.task import is_external

__all__ = ["FORMATS", "upstream_first", "walk", "describe", "render", "text_tree", "dot"]

FORMATS = ("text", "dot", "svg", "png")


def describe(task: luigi.Task) -> str:
    """A task's state in a few words: complete or not, and a directory output's item counts."""
    parts = []
    outputs = flatten(task.output())
    manifests = [o for o in outputs if isinstance(o, DirectoryTarget)]
    for output in manifests:
        try:
            header = output.header
        except FileNotFoundError:
            continue
        parts.append(f"{header.item_count} items" + (f", {header.failed_count} failed" if header.failed_count else ""))
    if is_external(task):
        parts.insert(0, "input" if task.complete() else "MISSING input")
    else:
        parts.insert(0, "complete" if task.complete() else "to run")
    return ", ".join(parts)


def upstream_first(root: luigi.Task) -> list[luigi.Task]:
    """``root`` and every task upstream of it (static requirements), each once, requirements first."""
    ordered: list[luigi.Task] = []
    seen: set[str] = set()

    def visit(task: luigi.Task) -> None:
        if task.task_id in seen:
            return
        seen.add(task.task_id)
        for required in flatten(task.requires()):
            visit(required)
        ordered.append(task)

    visit(root)
    return ordered


def _requirements(task: luigi.Task) -> list[luigi.Task]:
    """The task's static requirements, flattened."""
    return flatten(task.requires())


def walk(root: luigi.Task, children: Callable[[luigi.Task], list[luigi.Task]] = _requirements,
         ) -> Iterator[tuple[luigi.Task, list[luigi.Task]]]:
    """Each task reachable from ``root`` once, depth first, with its ``children`` (by default its requirements)."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        required = children(task)
        yield task, required
        stack.extend(reversed(required))


def text_tree(root: luigi.Task) -> str:
    """An indented tree; a task reached a second time is shown once more without its subtree."""
    lines: list[str] = []
    shown: set[str] = set()

    def add(task: luigi.Task, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        again = task.task_id in shown
        lines.append(f"{prefix}{branch}{task}  [{describe(task)}]" + ("  (see above)" if again else ""))
        if again:
            return
        shown.add(task.task_id)
        children = flatten(task.requires())
        child_prefix = prefix + ("" if top else ("    " if last else "│   "))
        for i, child in enumerate(children):
            add(child, child_prefix, i == len(children) - 1, False)

    add(root, "", True, True)
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(root: luigi.Task) -> str:
    """Graphviz DOT: one node per task (state and item counts in the label), edges requirement → task."""
    lines = ["digraph luisy {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for task, required in walk(root):
        state = describe(task)
        color = "#d4edda" if state.startswith(("complete", "input")) else "#f8d7da" if "MISSING" in state \
            else "#fff3cd"
        label = _quote(f"{task}\n{state}").replace("\n", "\\n")
        lines.append(f"  {_quote(task.task_id)} [label={label}, fillcolor={_quote(color)}];")
        lines.extend(f"  {_quote(r.task_id)} -> {_quote(task.task_id)};" for r in required)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(root: luigi.Task, fmt: str) -> bytes:
    """The graph in ``fmt`` (one of :data:`FORMATS`); SVG and PNG need Graphviz's ``dot`` program."""
    if fmt == "text":
        return text_tree(root).encode()
    source = dot(root)
    if fmt == "dot":
        return source.encode()
    if fmt not in FORMATS:
        raise LuisyError(f"unknown graph format {fmt!r}; choose one of {', '.join(FORMATS)}")
    program = shutil.which("dot")
    if program is None:
        raise LuisyError(f"--format {fmt} needs Graphviz's `dot` program, which is not installed "
                         "(Debian/Ubuntu: apt-get install graphviz; conda: conda install graphviz); "
                         "--format dot writes the DOT source instead")
    done = subprocess.run([program, f"-T{fmt}"], input=source.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise LuisyError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
