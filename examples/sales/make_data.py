"""Write sample raw data: one semicolon-separated sales export per region.

Usage: ``python -m examples.sales.make_data [--working-dir DIR]`` (default: the luisy working
directory, ``./data``).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import luisy
from examples.sales.tasks import REGIONS, RawExport


def make_data(n_rows: int = 500, seed: int = 0) -> list[str]:
    """Write one export per region; return the paths written."""
    rng = np.random.default_rng(seed)
    written = []
    for region in REGIONS:
        df = pd.DataFrame({
            "date": pd.date_range("2024-01-01", periods=n_rows, freq="17h").strftime("%Y-%m-%d"),
            "product": rng.choice(["anvil", "rocket", "magnet", "spring"], size=n_rows),
            "units": rng.integers(-2, 20, size=n_rows),  # negative units: returns, dropped later
            "unit_price": rng.choice([9.5, 19.0, 120.0, 4.25], size=n_rows),
        })
        task = RawExport(region=region)
        task.output().write(df)
        written.append(task.output().path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--working-dir", help="luisy working directory (default ./data)")
    args = parser.parse_args()
    if args.working_dir:
        luisy.set_working_dir(args.working_dir)
    paths = make_data()
    print(f"sample data: {len(paths)} exports in {luisy.get_working_dir() / 'sales' / 'raw'}")


if __name__ == "__main__":
    main()
