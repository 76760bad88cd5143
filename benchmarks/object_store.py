"""A working directory in an object store: luisy against a plain fsspec loop, on real S3 (moto)
and Azure Blob (Azurite) servers started on this machine.

The workload: N small input arrays (``.npy``, 32×32) in ``raw/frames``; a three-stage pipeline
reads each, doubles it (a directory task), sums it (a second directory task, JSON items) and
adds the sums up (a single-file task). Measured, per store:

* ``first run``: the whole pipeline, against a plain loop that does the same three stages with
  fsspec (``cat_file``, ``np.load``, ``np.save``, ``pipe_file`` per item) in one process, as
  luisy's run does by default: the ratio is what luisy's staging, checksums, manifests and records
  cost;
* ``no-op rerun``: the requests the *server* logged for a rerun that finds everything current
  (a constant: it must not grow with N);
* ``+10 inputs``: the requests and time of the run after ten new input files;
* peak RSS of the luisy process (children included).

Usage: ``python benchmarks/object_store.py [--items 10000] [--stores s3 az]``. Needs the
``test`` extra (moto) and ``azurite-blob`` on the PATH (``npm install --global azurite@3.35.0``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fsspec  # noqa: E402
import numpy as np  # noqa: E402
from object_stores import AzuriteBlob, MotoS3  # noqa: E402

PROJECT = '''
import json
import luisy
import numpy as np


@luisy.raw
@luisy.directory_input(pattern="*.npy")
class Frames(luisy.ExternalTask):
    def get_folder_name(self):
        return "frames"


@luisy.interim
@luisy.requires(Frames)
@luisy.directory_output(format="npy")
class Doubled(luisy.DirectoryTask):
    def process(self, name, obj):
        return obj * 2


@luisy.interim
@luisy.requires(Doubled)
@luisy.directory_output(format="json")
class Sums(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"sum": int(obj.sum())}


@luisy.final
@luisy.requires(Sums)
@luisy.json_output
class Total(luisy.Task):
    def run(self):
        self.write({"total": sum(item["sum"] for item in self.input().read())})
'''


def _frame(i: int) -> bytes:
    data = io.BytesIO()
    np.save(data, np.full((32, 32), i % 251, dtype=np.uint8))
    return data.getvalue()


def _put_inputs(fs, root: str, start: int, count: int) -> None:
    fs.pipe({f"{root}/bench/raw/frames/f{i:06d}.npy": _frame(i) for i in range(start, start + count)})


def _plain_loop(fs, root: str, count: int) -> float:
    """The same three stages by hand: read, double, write each item; read it back, sum, write the
    sum; read every sum and write the total."""
    begin = time.perf_counter()
    for i in range(count):
        obj = np.load(io.BytesIO(fs.cat_file(f"{root}/bench/raw/frames/f{i:06d}.npy")))
        out = io.BytesIO()
        np.save(out, obj * 2)
        fs.pipe_file(f"{root}/plain/doubled/f{i:06d}.npy", out.getvalue())
    for i in range(count):
        obj = np.load(io.BytesIO(fs.cat_file(f"{root}/plain/doubled/f{i:06d}.npy")))
        fs.pipe_file(f"{root}/plain/sums/f{i:06d}.json", json.dumps({"sum": int(obj.sum())}).encode())
    total = sum(json.loads(fs.cat_file(f"{root}/plain/sums/f{i:06d}.json"))["sum"] for i in range(count))
    fs.pipe_file(f"{root}/plain/total.json", json.dumps({"total": total}).encode())
    return time.perf_counter() - begin


def _luisy(url: str, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    begin = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "luisy", "run", "bench.tasks:Total", "--working-dir", url],
                            cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    if result.returncode != 0:
        raise SystemExit(f"luisy failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def _counted(server) -> str:
    counts = Counter(r.method for r in server.requests())
    return " ".join(f"{method} {n}" for method, n in sorted(counts.items())) or "none"


def measure(scheme: str, server, count: int, cwd: Path) -> list[str]:
    bucket = server.create_bucket(f"bench-{uuid.uuid4().hex[:8]}")
    fs = fsspec.filesystem(scheme, skip_instance_cache=True, **server.storage_options())
    root, url = f"{bucket}/data", f"{scheme}://{bucket}/data"
    env = {**os.environ, **server.env, "PYTHONPATH": str(cwd)}
    _put_inputs(fs, root, 0, count)
    plain = _plain_loop(fs, root, count)
    # luisy should start from a store holding the inputs only (a store may slow down as it fills).
    # S3 deletes the loop's objects in bulk; Azurite deletes a few a second, so there luisy runs
    # with them present, which favours the loop.
    if scheme == "s3":
        fs.rm(f"{root}/plain", recursive=True)
    server.mark()
    first, _ = _luisy(url, cwd, env)
    first_requests = _counted(server)
    server.mark()
    noop, out = _luisy(url, cwd, env)
    assert "nothing to run" in out, out
    noop_requests = server.requests()
    _put_inputs(fs, root, count, 10)
    server.mark()
    more, _ = _luisy(url, cwd, env)
    more_requests = _counted(server)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return [
        f"{scheme} ({server.name}), {count} items:",
        f"  plain fsspec loop, three stages  {plain:8.1f} s   {1e3 * plain / count:6.2f} ms/item",
        f"  luisy, first run                 {first:8.1f} s   {1e3 * first / count:6.2f} ms/item"
        f"   ({first / plain:.2f}x the plain loop; {first_requests})",
        f"  luisy no-op rerun                {noop:8.1f} s   {len(noop_requests)} requests "
        f"({_counted_list(noop_requests)})",
        f"  luisy after +10 inputs           {more:8.1f} s   {more_requests}",
        f"  peak RSS of a luisy run          {rss:8.0f} MiB",
    ]


def _counted_list(requests) -> str:
    counts = Counter(r.method for r in requests)
    return " ".join(f"{method} {n}" for method, n in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--stores", nargs="+", default=["s3", "az"], choices=["s3", "az"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="luisy-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "bench").mkdir()
        (cwd / "bench" / "__init__.py").write_text("")
        (cwd / "bench" / "tasks.py").write_text(textwrap.dedent(PROJECT))
        lines = [f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; times are one run each"]
        for scheme in args.stores:
            program = "moto_server" if scheme == "s3" else "azurite-blob"
            path = Path(sys.executable).with_name(program) if scheme == "s3" else None
            server = (MotoS3 if scheme == "s3" else AzuriteBlob)(
                str(path) if path is not None and path.exists() else program, cwd / f"{scheme}-server")
            server.start()
            try:
                lines += measure(scheme, server, args.items, cwd)
            finally:
                server.stop()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
