"""``luisy serve`` at many items: page and API times for a directory task's item table, and the
server's CPU and memory while idle and while a page polls it.

The server runs as ``luisy serve`` in a child process, asked over HTTP as a browser would. Cases:

* ``plain: list + sort + slice``: ``sorted(os.listdir(folder))[:50]`` of the output folder in a
  fresh process: what showing a page of a folder's files costs with nothing but Python, the floor
  the first page is compared with;
* ``first item page``: the task's page with its first 50 items, the first request after the
  server started (its manifest is read then);
* ``page 2``, ``middle page``, ``last page``, ``search``, ``failed only``, ``/api/items page 2``,
  ``/api/status``: later requests;
* ``idle``: the server's CPU time over ``--idle`` seconds with no request, as % of one core;
* ``polled``: the same while a page asks ``/api/status`` every second, as an open page does;
* the server's resident memory after all of it (``VmRSS``), and its peak (``VmHWM``).

Each timed request is made ``--repeat`` times and the fastest is reported (noise on shared
machines only adds time), except the first item page, which happens once.

Usage::

    python benchmarks/serve.py [--items 100000]          # makes the items first (a minute)
    python benchmarks/serve.py --working-dir WD --cwd benchmarks --task directory:Gray
                                                         # an output made before, e.g. by directory.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = '''
import luisy


@luisy.raw
@luisy.directory_input(pattern="*.txt")
class Numbers(luisy.ExternalTask):
    def get_folder_name(self):
        return "numbers"


@luisy.interim
@luisy.requires(Numbers)
@luisy.directory_output(format="json")
class Squares(luisy.DirectoryTask):
    on_error = "skip"

    def process(self, name, text):
        return {"square": int(text) ** 2}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make(root: Path, n: int) -> tuple[Path, Path, str]:
    """A project with ``n`` input numbers (one not a number: a failed item), built once."""
    (root / "servebench.py").write_text(textwrap.dedent(PROJECT))
    folder = root / "data" / "servebench" / "raw" / "numbers"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"n{i:07d}.txt").write_text(str(i))
    (folder / "broken.txt").write_text("not a number")
    made = subprocess.run([sys.executable, "-m", "luisy", "run", "servebench:Squares", "--working-dir",
                           str(root / "data")], cwd=root, capture_output=True, text=True)
    if "complete except 1 failed item" not in made.stdout:
        raise SystemExit(made.stdout + made.stderr)
    return root, root / "data", "servebench:Squares"


def _get(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
    return time.perf_counter() - start, body


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> dict[str, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items to make (without --working-dir)")
    parser.add_argument("--working-dir", type=Path, help="a working directory whose outputs are made already")
    parser.add_argument("--cwd", type=Path, help="where the task module is importable (with --working-dir)")
    parser.add_argument("--task", help="module:Class of the directory task (with --working-dir)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of each idle measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="luisy-serve-bench-") as tmp:
        if args.working_dir is None:
            cwd, working_dir, task = _make(Path(tmp), args.items)
        else:
            cwd, working_dir, task = args.cwd or Path.cwd(), args.working_dir, args.task
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "luisy", "serve", task, "--working-dir", str(working_dir),
                                   "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    _, body = _get(base + "/api/status")
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(server.stdout.read() if server.stdout else "no server") from None
                    time.sleep(0.2)
            views = json.loads(body)
            view = next(v for v in views if v["family"] == task.rsplit(":", 1)[1])
            task_id, items = view["task_id"], view["items"]
            folder = next(Path(working_dir).rglob(f"*/{view['family']}"))
            rows = _table(base, task_id, items, folder, args.repeat)
            rows += _idle(base, server.pid, args.idle)
            memory = _memory(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores; {items} items in {task}'s output")
    floor = rows[0][1]
    for name, value, unit in rows:
        ratio = f"   ({value / floor:.3f}x the plain listing)" if unit == "s" and name != rows[0][0] else ""
        print(f"  {name:<40} {value:9.3f} {unit}{ratio}")
    print(f"  {'server memory after all of it':<40} {memory['VmRSS']:9.0f} MiB (peak {memory['VmHWM']:.0f} MiB)")


def _table(base: str, task_id: str, items: int, folder: Path, repeat: int) -> list[tuple[str, float, str]]:
    plain = subprocess.run([sys.executable, "-c", "import os, sys, time; t = time.perf_counter(); "
                            f"sorted(os.listdir({str(folder)!r}))[:50]; print(time.perf_counter() - t)"],
                           capture_output=True, text=True, check=True)
    page = f"{base}/task/{urllib.parse.quote(task_id, safe='')}"
    rows = [("plain: list + sort + slice", float(plain.stdout), "s"),
            ("first item page (cold)", _get(page)[0], "s")]
    pages = -(-items // 50)
    for name, url in [("first item page (warm)", page), ("page 2", page + "?page=2"),
                      ("middle page", f"{page}?page={pages // 2}"), ("last page", f"{page}?page={pages}"),
                      ("search (a name fragment)", page + "?q=99999"), ("failed only", page + "?state=failed"),
                      ("/api/items page 2", f"{base}/api/items?task={urllib.parse.quote(task_id)}&page=2"),
                      ("/api/status", f"{base}/api/status")]:
        rows.append((name, min(_get(url)[0] for _ in range(repeat)), "s"))
    return rows


def _idle(base: str, pid: int, seconds: float) -> list[tuple[str, float, str]]:
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    idle = _cpu_seconds(pid) - before
    before, start = _cpu_seconds(pid), time.monotonic()
    while time.monotonic() - start < seconds:
        _get(base + "/api/status")
        time.sleep(1.0)
    polled = _cpu_seconds(pid) - before
    return [("idle: CPU, % of one core", 100 * idle / seconds, "%"),
            ("polled each second: CPU, % of one core", 100 * polled / (time.monotonic() - start), "%")]


if __name__ == "__main__":
    main()
