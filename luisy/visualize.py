"""A task's dependency graph drawn into a matplotlib axis (``Task.visualize``).

Each distinct label is one node, so tasks that differ only in excluded parameters share a node.
Requirements are drawn below the tasks that need them, with arrows in the direction data flows.
matplotlib (the extra ``plot``) is imported only when something is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import luigi
from luigi.task import flatten

from luisy.formats import require
from luisy.graph import walk

__all__ = ["draw", "label", "layers"]


def label(task: luigi.Task, parameters_to_exclude: Iterable[str] = ()) -> str:
    """The task family, then one ``name=value`` line per parameter not excluded."""
    excluded = set(parameters_to_exclude)
    return "\n".join([task.get_task_family(),
                      *(f"{name}={value}" for name, value in task.param_kwargs.items() if name not in excluded)])


def layers(root: luigi.Task, unique_children: bool = True,
           parameters_to_exclude: Iterable[str] = ()) -> tuple[list[list[str]], set[tuple[str, str]]]:
    """The node labels row by row (the root's row first) and the edges ``(requirement, task)``.

    A node's row is its longest distance from the root, so every arrow points upwards.
    ``unique_children`` keeps the first requirement of each class per task.
    """
    excluded = tuple(parameters_to_exclude)
    children = _one_per_class if unique_children else lambda task: flatten(task.requires())
    order: list[str] = []
    edges: set[tuple[str, str]] = set()
    for task, required in walk(root, children):
        order.append(label(task, excluded))
        edges.update((label(child, excluded), order[-1]) for child in required)
    nodes = list(dict.fromkeys(order))
    row = dict.fromkeys(nodes, 0)
    for _ in nodes:  # longest path in a DAG: at most one relaxation round per node
        changed = False
        for child, parent in edges:
            if row[child] <= row[parent]:
                row[child], changed = row[parent] + 1, True
        if not changed:
            break
    rows: list[list[str]] = [[] for _ in range(max(row.values()) + 1)]
    for node in nodes:
        rows[row[node]].append(node)
    return rows, edges


def _one_per_class(task: luigi.Task) -> list[luigi.Task]:
    first: dict[type, luigi.Task] = {}
    for child in flatten(task.requires()):
        first.setdefault(type(child), child)
    return list(first.values())


def draw(task: luigi.Task, ax: Any = None, unique_children: bool = True,
         parameters_to_exclude: Iterable[str] = ()) -> Any:
    """Draw ``task``'s dependency graph into ``ax`` (a new 15×10 inch figure if ``None``) and return the axis.

    Raises :class:`~luisy.errors.MissingExtraError` if matplotlib is not installed.
    """
    require("matplotlib", "plot", "Task.visualize()")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(15, 10))
    rows, edges = layers(task, unique_children, parameters_to_exclude)
    position = {node: ((i + 1) / (len(nodes) + 1), 1 - (depth + 0.5) / len(rows))
                for depth, nodes in enumerate(rows) for i, node in enumerate(nodes)}
    for child, parent in sorted(edges):
        ax.annotate("", xy=position[parent], xytext=position[child],
                    arrowprops={"arrowstyle": "->", "color": "0.4", "shrinkA": 18, "shrinkB": 18})
    for node, (x, y) in position.items():
        ax.text(x, y, node, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "#e8f0fe", "edgecolor": "#4a6fa5"})
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    return ax
