"""Draw the table printed by ``benchmarks/directory.py`` as an SVG bar chart (no plotting library needed).

Usage: ``python benchmarks/directory.py | tee table.txt; python benchmarks/plot_directory.py table.txt out.svg``.
One group of bars per N, log-scaled seconds, for the plain loop, luisy p=1 / p=2 and luigi.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

CASES = {"plain loop (floor)": "#6c757d", "luisy p=1": "#1f77b4", "luisy p=2": "#17becf",
         "luigi 1 task/file": "#d62728"}
ROW = re.compile(r"^\s*(\d+)\s+(.+?)\s+(\d+\.\d+)\s")


def parse(text: str) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match[2].strip() in CASES:
            table.setdefault(int(match[1]), {})[match[2].strip()] = float(match[3])
    return table


def svg(table: dict[int, dict[str, float]]) -> str:
    bar, gap, left, width = 14, 18, 90, 520
    lo = math.log10(min(v for row in table.values() for v in row.values()) / 2)
    hi = math.log10(max(v for row in table.values() for v in row.values()) * 2)
    scale = width / (hi - lo)
    rows = []
    y = 40
    for n, cases in sorted(table.items()):
        rows.append(f'<text x="{left - 10}" y="{y + bar * len(cases) / 2 + 4}" text-anchor="end">N = {n:,}</text>')
        for case, seconds in ((c, cases[c]) for c in CASES if c in cases):
            w = (math.log10(seconds) - lo) * scale
            rows.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{CASES[case]}"/>')
            rows.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}" font-size="11">{seconds:.2f} s</text>')
            y += bar
        y += gap
    ticks = []
    for exp in range(math.ceil(lo), math.floor(hi) + 1):
        x = left + (exp - lo) * scale
        ticks.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{y + 14}" text-anchor="middle" font-size="11">{10.0 ** exp:g} s</text>')
    legend = "".join(
        f'<rect x="{left + i * 150}" y="8" width="12" height="12" fill="{color}"/>'
        f'<text x="{left + i * 150 + 16}" y="18" font-size="12">{case}</text>'
        for i, (case, color) in enumerate(CASES.items()))
    height = y + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="12">'
            f'<rect width="100%" height="100%" fill="white"/>{legend}{"".join(ticks)}{"".join(rows)}</svg>\n')


def main() -> None:
    source, target = sys.argv[1:3]
    Path(target).write_text(svg(parse(Path(source).read_text())))


if __name__ == "__main__":
    main()
