"""Checkpoints of directory tasks: what they cost, and how much work a ``kill -9`` loses.

Cases (each run in a fresh process):

* ``cost``: the time one checkpoint of N items takes (100 000 by default), and what that is as a
  share of a run at the default interval (30 s) and at one second — an upper bound, since every
  checkpoint is taken as large as the last; then one directory task over N small text files,
  with checkpoints off, at the default interval and every second (end to end, so file-system
  noise shows: here item writes vary by more than the checkpoints cost).
* ``loss``: a run over K files (3 000 by default) with a checkpoint every second is killed with
  SIGKILL at M random moments (20 by default); after each kill the task is run again, and the
  table shows how many items finished before the kill were made again: the work the kill lost,
  against what one checkpoint interval holds.

Usage: ``python benchmarks/resume.py [--items 100000] [--kill-items 3000] [--kills 20]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import luigi

import luisy

HERE = Path(__file__).resolve().parent


@luisy.project_name("bench")
@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Texts(luisy.ExternalTask):
    def get_folder_name(self):
        return "texts"


@luisy.project_name("bench")
@luisy.interim
@luisy.requires(Texts)
@luisy.directory_output(format="txt")
class Hashed(luisy.DirectoryTask):
    def process(self, name, obj):
        marks = os.environ.get("MARKS")
        if marks:
            open(os.path.join(marks, name), "w").close()  # noqa: SIM115 - an empty marker file
        return hashlib.sha256(obj.encode() * 400).hexdigest()


def run_case(working_dir: str, checkpoint_seconds: float) -> None:
    """Build ``Hashed`` with checkpoints every ``checkpoint_seconds``; print the time as JSON."""
    parser = luigi.configuration.get_config()
    if not parser.has_section("luisy"):
        parser.add_section("luisy")
    parser.set("luisy", "checkpoint_seconds", str(checkpoint_seconds))
    start = time.perf_counter()
    assert luisy.build([Hashed()], working_dir=working_dir, log_level="ERROR")
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _child(working_dir: Path, checkpoint_seconds: float, marks: Path | None = None) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import resume; " \
           f"resume.run_case({str(working_dir)!r}, {checkpoint_seconds})"
    env = {**os.environ, "MARKS": str(marks) if marks else ""}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def _timed(working_dir: Path, checkpoint_seconds: float) -> float:
    child = _child(working_dir, checkpoint_seconds)
    out, _ = child.communicate()
    assert child.returncode == 0
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def _texts(working_dir: Path, count: int) -> None:
    folder = working_dir / "bench" / "raw" / "texts"
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"t{i:06d}.txt").write_text(f"text {i} " * 20)


def _clear(working_dir: Path) -> None:
    shutil.rmtree(working_dir / "bench" / "interim", ignore_errors=True)
    shutil.rmtree(working_dir / "bench" / ".luisy-records", ignore_errors=True)


def checkpoint_time(root: Path, items: int) -> float:
    """Seconds one checkpoint of ``items`` items takes."""
    from luisy.directory.local import LocalStaging
    from luisy.directory.table import Item

    staging = LocalStaging(root / "checkpoint-only")
    rows = {f"t{i:06d}": Item(f"t{i:06d}.txt", 64, "0" * 32, f"160-{1_700_000_000_000_000_000 + i}")
            for i in range(items)}
    state = {"code_fingerprint": "0" * 32, "params": {}}
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        staging.checkpoint(state, rows)
        best = min(best, time.perf_counter() - start)
    staging.discard()
    return best


def cost(root: Path, items: int) -> None:
    one = checkpoint_time(root, items)
    print(f"one checkpoint of {items} items: {one:.3f} s, at most {100 * one / 30:.2f} % of a run at the default "
          f"30 s interval, {100 * one:.1f} % at one second\n")
    working_dir = root / "cost"
    _texts(working_dir, items)
    cases = {"checkpoints off": 1e9, "checkpoint every 30 s (default)": 30.0, "checkpoint every second": 1.0}
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(3):  # interleaved, fastest of three: noise on a shared machine only adds time
        for label, interval in cases.items():
            _clear(working_dir)
            os.sync()
            times[label].append(_timed(working_dir, interval))
    off = min(times["checkpoints off"])
    print(f"{'case (' + str(items) + ' items, fastest of 3)':<44} {'seconds':>9} {'× off':>7}")
    for label in cases:
        print(f"{label:<44} {min(times[label]):>9.2f} {min(times[label]) / off:>7.3f}")


def loss(root: Path, items: int, kills: int, seed: int = 1) -> None:
    working_dir = root / "loss"
    _texts(working_dir, items)
    _clear(working_dir)
    full = _timed(working_dir, 1e9)
    rate = items / full
    print(f"\n{items} items in {full:.2f} s, start-up included ({rate:.0f} items/s); a checkpoint every second "
          f"holds at least {rate:.0f} items")
    print(f"{'kill':>4} {'at s':>6} {'finished':>9} {'made again':>11} {'lost':>6}")
    rng = random.Random(seed)
    lost = []
    for k in range(kills):
        _clear(working_dir)
        first, second = root / f"first{k}", root / f"second{k}"
        first.mkdir()
        second.mkdir()
        child = _child(working_dir, 1.0, first)
        while not os.listdir(first):  # items are being processed from here on
            time.sleep(0.005)
        at = rng.uniform(0.05, 0.95) * full
        time.sleep(at)
        child.send_signal(signal.SIGKILL)
        child.wait()
        finished = max(len(os.listdir(first)) - 1, 0)  # the last marker may be an item in progress
        rerun = _child(working_dir, 1.0, second)
        rerun.communicate()
        made_again = len(os.listdir(second))
        lost.append(max(made_again - (items - finished), 0))
        print(f"{k + 1:>4} {at:>6.2f} {finished:>9} {made_again:>11} {lost[-1]:>6}", flush=True)
    if not lost:
        return
    print(f"lost per kill: mean {sum(lost) / len(lost):.0f}, max {max(lost)} items "
          f"(one checkpoint interval holds about {rate:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="items for the cost case")
    parser.add_argument("--kill-items", type=int, default=3000, help="items for the loss case")
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cost(Path(tmp), args.items)
        loss(Path(tmp), args.kill_items, args.kills)


if __name__ == "__main__":
    main()
