"""How much ``import luisy`` and ``luisy --help`` cost on top of ``import luigi`` (heavy libraries load lazily).

Each statement runs in a fresh interpreter, several times; the table shows the median wall time
and the ratio to the luigi baseline measured in the same run. Usage:
``python benchmarks/import_time.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python (nothing)": "pass",
    "import luigi (baseline)": "import luigi",
    "import luisy": "import luisy",
    "luisy --help": (
        "import sys; sys.argv = ['luisy', '--help']\nfrom luisy.cli import main\ntry: main()\nexcept SystemExit: pass"
    ),
    "import pandas (for scale)": "import pandas",
}


def measure(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = {name: measure(code, args.repeat) for name, code in CASES.items()}
    base = results["import luigi (baseline)"]
    print(f"{'case':<28} {'median s':>9} {'× luigi':>8}")
    for name, seconds in results.items():
        print(f"{name:<28} {seconds:>9.3f} {seconds / base:>8.2f}")


if __name__ == "__main__":
    main()
