"""``luisy watch`` against a plain-Python hot-folder loop: latency, idle cost, a sustained stream.

Both watchers run as child processes on the same folders, with the same settle time (2 s) and
rescan interval (1 s), and do the same work per file: read it, write ``{"sha": ...}`` as json
(atomically) and log the file's name and the checksum of what it read. The plain loop
(``PLAIN`` below) lists the folder every second and processes a file once its size and
modification time stayed the same for the settle time: what one writes without luisy, with no
manifest, no incremental state on disk and no file events.

Cases:

* ``latency``: a folder of ``--latency-files`` processed files; one file at a time is dropped
  in (written under a ``.part`` name, then renamed), and the time until its result exists in the
  final output is measured; the median of ``--drops`` drops (goal: settle + 1 s),
* ``reduce-latency``: the same, until the drop is counted in the output of a ``ReduceTask``
  downstream (``Tally``, which ``luisy watch`` watches; the plain loop keeps a running count in a
  file, rewritten after each file it processes),
* ``idle``: ``--idle-files`` processed files and nothing changing; CPU time of the watcher
  process over ``--idle-seconds`` (goal: < 5 % of one core) and its resident memory at the
  start and end of that time (goal: flat), measured from 30 s after the watcher's first run,
* ``sustained``: ``--stream`` files written over ``--stream-seconds`` at a steady rate, each in
  two chunks with a pause between them; every one must be processed once, from its whole content
  (checksums compared), and the time from the last drop until all are processed is reported.

Usage: ``python benchmarks/watch.py [--latency-files 10000] [--idle-files 100000] [--stream 1000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SETTLE, INTERVAL = 2.0, 1.0

TASKS = '''
import hashlib, os

import luisy


def raw_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@luisy.raw
@luisy.directory_input(pattern="*.bin", read=raw_bytes)
class Drops(luisy.ExternalTask):
    def get_folder_name(self):
        return "drops"


@luisy.final
@luisy.requires(Drops)
@luisy.directory_output(format="json")
class Digests(luisy.DirectoryTask):
    on_error = "skip"

    def process(self, name, data):
        sha = hashlib.sha256(data).hexdigest()
        with open(os.environ["WATCH_LOG"], "a") as log:
            log.write(f"{name} {sha}\\n")
        return {"sha": sha}


@luisy.final
@luisy.requires(Digests)
@luisy.json_output
class Tally(luisy.ReduceTask):
    def initial(self):
        return {"files": 0}

    def fold(self, state, name, item):
        return {"files": state["files"] + 1}

    def unfold(self, state, name, item):
        return {"files": state["files"] - 1}
'''

PLAIN = '''
import hashlib, json, os, sys, time

folder, out, log_path, settle, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
tally = sys.argv[6] if len(sys.argv) > 6 else None  # where to keep the running count of files processed
os.makedirs(out, exist_ok=True)
seen, done = {}, {}
with os.scandir(folder) as entries:  # the files there were processed by an earlier run
    for entry in entries:
        stat = entry.stat()
        done[entry.name] = (stat.st_size, stat.st_mtime_ns)
print("ready", flush=True)
while True:
    now = time.monotonic()
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".bin"):
                continue
            stat = entry.stat()
            sig = (stat.st_size, stat.st_mtime_ns)
            if done.get(name) == sig:
                continue
            first = seen.get(name)
            if first is None or first[0] != sig:
                seen[name] = (sig, now)
                continue
            if now - first[1] < settle:
                continue
            with open(entry.path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            stem = name[:-4]
            tmp = os.path.join(out, f".{stem}.json.tmp")
            with open(tmp, "w") as f:
                json.dump({"sha": sha}, f)
            os.replace(tmp, os.path.join(out, stem + ".json"))
            with open(log_path, "a") as log:
                log.write(f"{stem} {sha}\\n")
            done[name] = sig
            del seen[name]
            if tally:
                with open(tally + ".tmp", "w") as f:
                    json.dump({"files": len(done)}, f)
                os.replace(tally + ".tmp", tally)
    time.sleep(interval)
'''


class Case:
    """A project folder with ``n`` processed files and a watcher (``luisy`` or ``plain``) running on it."""

    def __init__(self, kind: str, n: int, target: str = "Digests") -> None:
        self.kind = kind
        self.root = Path(tempfile.mkdtemp(prefix=f"luisy-watch-{kind}-"))
        (self.root / "bench_watch").mkdir()
        (self.root / "bench_watch" / "__init__.py").write_text("")
        (self.root / "bench_watch" / "tasks.py").write_text(TASKS)
        self.drops = self.root / "data" / "bench_watch" / "raw" / "drops"
        self.drops.mkdir(parents=True)
        self.out = self.root / "data" / "bench_watch" / "final" / "Digests"
        self.log = self.root / "process.log"
        #: The reduce's output (luisy) or the plain loop's running count, with ``target="Tally"``.
        self.tally = self.root / "data" / "bench_watch" / "final" / "Tally.json"
        for i in range(n):
            (self.drops / f"old{i:06d}.bin").write_bytes(b"%d" % i)
        env = {**os.environ, "WATCH_LOG": str(self.log)}
        env.pop("LUISY_WORKING_DIR", None)
        if kind == "luisy":
            # The existing files are processed first, as by an earlier run.
            luisy_cmd = str(Path(sys.executable).with_name("luisy"))
            subprocess.run([luisy_cmd, "run", f"bench_watch.tasks:{target}"], cwd=self.root, env=env, check=True,
                           capture_output=True)
            args = [luisy_cmd, "watch", f"bench_watch.tasks:{target}", "--settle", str(SETTLE),
                    "--interval", str(INTERVAL)]
        else:
            args = [sys.executable, "-c", PLAIN, str(self.drops), str(self.out), str(self.log), str(SETTLE),
                    str(INTERVAL), *([str(self.tally)] if target == "Tally" else [])]
        self.process = subprocess.Popen(args, cwd=self.root, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        if kind == "luisy":  # the first run, with nothing new; none with no files
            self.wait(lambda: any(" → " in line for line in self.lines) if n else bool(self.lines), 600)
        else:
            self.wait(lambda: "ready" in self.lines, 60)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SystemExit(f"{self.kind}: gave up waiting; output:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.005)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def calls(self) -> list[tuple[str, str]]:
        return [tuple(line.split()) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


def drop(folder: Path, name: str, data: bytes, pause: float = 0.0) -> None:
    """Write ``data`` as ``name`` in ``folder``: in two chunks with ``pause`` between them, or (no
    pause) under a ``.part`` name renamed into place."""
    if pause:
        with open(folder / name, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(pause)
            f.write(data[len(data) // 2:])
        return
    (folder / f"{name}.part").write_bytes(data)
    os.rename(folder / f"{name}.part", folder / name)


def tallied(path: Path) -> int:
    """The count of files in ``path``, a reduce's output or the plain loop's running count (-1: none yet)."""
    try:
        return json.loads(path.read_text())["files"]
    except (OSError, ValueError):
        return -1


def latency(kind: str, n: int, drops: int, target: str = "Digests") -> list[float]:
    """Seconds from each drop until its result is in the output (``Digests``) or counted in the
    reduce's output (``Tally``)."""
    case = Case(kind, n, target)
    try:
        times = []
        for i in range(drops):
            name = f"new{i:03d}"
            start = time.monotonic()
            drop(case.drops, f"{name}.bin", os.urandom(1000))
            if target == "Tally":
                case.wait(lambda count=n + i + 1: tallied(case.tally) == count, 60)
            else:
                case.wait(lambda name=name: (case.out / f"{name}.json").exists(), 60)
            times.append(time.monotonic() - start)
            time.sleep(0.5)
        return times
    finally:
        case.close()


def idle(kind: str, n: int, seconds: float) -> tuple[float, float, float]:
    case = Case(kind, n)
    try:
        time.sleep(30)  # past the first periodic rescans, whose peak sets the memory's high-water mark
        cpu, rss = case.cpu_seconds(), case.rss_mb()
        time.sleep(seconds)
        return (case.cpu_seconds() - cpu) / seconds, rss, case.rss_mb()
    finally:
        case.close()


def sustained(kind: str, count: int, seconds: float) -> tuple[int, int, int, int, float]:
    """Files processed, processed twice, processed from a partial content, missing; seconds after the last drop."""
    case = Case(kind, 0)
    try:
        start = time.monotonic()
        writers = []
        for i in range(count):
            time.sleep(max(0.0, start + i * seconds / count - time.monotonic()))
            writer = threading.Thread(target=drop, args=(case.drops, f"s{i:05d}.bin", os.urandom(4000), 0.2))
            writer.start()
            writers.append(writer)
        for writer in writers:
            writer.join()
        last = time.monotonic()
        case.wait(lambda: len({name for name, _ in case.calls()}) >= count, 300)
        after = time.monotonic() - last
        time.sleep(SETTLE + 2)  # nothing more comes
        calls = case.calls()
        names = [name for name, _ in calls]
        whole = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in case.drops.glob("*.bin")}
        partial = sum(whole.get(name) != sha for name, sha in calls)
        return len(set(names)), len(names) - len(set(names)), partial, len(set(whole) - set(names)), after
    finally:
        case.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-files", type=int, default=10_000)
    parser.add_argument("--drops", type=int, default=20)
    parser.add_argument("--idle-files", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--stream", type=int, default=1000)
    parser.add_argument("--stream-seconds", type=float, default=60)
    parser.add_argument("--cases", nargs="+", choices=["latency", "reduce-latency", "idle", "sustained"],
                        default=["latency", "reduce-latency", "idle", "sustained"])
    args = parser.parse_args()
    print(f"settle {SETTLE:g} s, rescan interval {INTERVAL:g} s; {os.cpu_count()} cores")
    print(f"{'case':<44} {'luisy watch':>14} {'plain loop':>14} {'luisy/plain':>12}")

    def row(label: str, ours: float, plain: float, unit: str) -> None:
        ratio = ours / plain if plain else float("nan")
        print(f"{label:<44} {ours:>12.2f}{unit:>2} {plain:>12.2f}{unit:>2} {ratio:>12.2f}", flush=True)

    if "latency" in args.cases:
        lat = {kind: latency(kind, args.latency_files, args.drops) for kind in ("luisy", "plain")}
        row(f"latency, median of {args.drops} ({args.latency_files} files)", statistics.median(lat["luisy"]),
            statistics.median(lat["plain"]), " s")
        row("latency, slowest drop", max(lat["luisy"]), max(lat["plain"]), " s")
    if "reduce-latency" in args.cases:
        lat = {kind: latency(kind, args.latency_files, args.drops, "Tally") for kind in ("luisy", "plain")}
        row(f"latency to a reduce's output, median of {args.drops}", statistics.median(lat["luisy"]),
            statistics.median(lat["plain"]), " s")
        row("latency to a reduce's output, slowest drop", max(lat["luisy"]), max(lat["plain"]), " s")
    if "idle" in args.cases:
        cost = {kind: idle(kind, args.idle_files, args.idle_seconds) for kind in ("luisy", "plain")}
        row(f"idle CPU, {args.idle_files} files ({args.idle_seconds:g} s)", 100 * cost["luisy"][0],
            100 * cost["plain"][0], " %")
        row("idle RSS, 30 s after the first run", cost["luisy"][1], cost["plain"][1], "MB")
        row(f"idle RSS, {args.idle_seconds:g} s after that", cost["luisy"][2], cost["plain"][2], "MB")
    if "sustained" in args.cases:
        stream = {kind: sustained(kind, args.stream, args.stream_seconds) for kind in ("luisy", "plain")}
        for index, label in enumerate(("processed", "processed twice", "processed half-written", "missed")):
            row(f"sustained {args.stream} files/{args.stream_seconds:g} s: {label}", stream["luisy"][index],
                stream["plain"][index], "")
        row("sustained: last drop → all processed", stream["luisy"][4], stream["plain"][4], " s")


if __name__ == "__main__":
    main()
