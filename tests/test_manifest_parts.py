"""Manifests of more than a few thousand items are stored in parts: a rerun reads and rewrites
only the parts whose input changed, and its result equals a full recomputation."""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import luigi
import pytest
from conftest import run_luisy, write_project

import luisy
from luisy.directory.manifest import MANIFEST_NAME, PARTS, Manifest
from luisy.errors import ItemNameError
from luisy.parts import PART_ITEMS, part_of

ITEMS = 10_000  # more than PART_ITEMS: four parts

TASKS = """
    import luisy

    @luisy.raw
    @luisy.directory_input(pattern="*.txt")
    class Numbers(luisy.ExternalTask):
        def get_folder_name(self):
            return "numbers"

    @luisy.interim
    @luisy.requires(Numbers)
    class Doubled(luisy.DirectoryTask):
        on_error = "skip"
        def process(self, name, text):
            return int(text) * 2

    @luisy.interim
    @luisy.requires(Doubled)
    class Tripled(luisy.DirectoryTask):
        def process(self, name, value):
            return value * 3

    @luisy.final
    @luisy.requires(Tripled)
    @luisy.json_output
    class Total(luisy.ReduceTask):
        def initial(self):
            return {"n": 0, "sum": 0}
        def fold(self, state, name, value):
            return {"n": state["n"] + 1, "sum": state["sum"] + value}
        def unfold(self, state, name, value):
            return {"n": state["n"] - 1, "sum": state["sum"] - value}
"""


@pytest.fixture
def parted(tmp_path, monkeypatch):
    """A project with ``ITEMS`` numbers as input; yields its tasks module, input folder and working dir."""
    write_project(tmp_path / "proj", {"parted_tasks.py": TASKS})
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    sys.modules.pop("parted_tasks", None)
    tasks = importlib.import_module("parted_tasks")
    data = tmp_path / "data"
    folder = data / "parted_tasks" / "raw" / "numbers"
    folder.mkdir(parents=True)
    for i in range(ITEMS):
        (folder / f"n{i:05d}.txt").write_text(str(i))
    with luisy.config.working_dir(data):
        yield tasks, folder, data
    sys.modules.pop("parted_tasks", None)


def _folder(task: luigi.Task) -> Path:
    return Path(task.output().path)


def _part_files(task: luigi.Task) -> set[str]:
    return {p.name for p in (_folder(task) / PARTS).iterdir()}


def _items(task: luigi.Task, data: Path | None = None) -> dict[str, tuple[int, str]]:
    """Item name → (size, checksum): what the output holds, whatever its file names (in the
    working directory ``data``, default: the one the task's output is in)."""
    table = _manifest(task, data).items
    return {name: (table[name].size, table[name].checksum) for name in table}


def _manifest(task: luigi.Task, data: Path | None = None) -> Manifest:
    folder = _folder(task)
    if data is not None:
        folder = data / folder.relative_to(folder.parents[2])
    return Manifest.read(folder)


def test_a_large_output_is_kept_in_parts_and_a_rerun_rewrites_only_the_parts_that_changed(parted):
    tasks, folder, data = parted
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    for task in (tasks.Doubled(), tasks.Tripled()):
        header = task.output().header
        assert header.part_count == 4 and header.item_count == ITEMS
        assert len(_part_files(task)) == 4
        head, body = (_folder(task) / MANIFEST_NAME).read_text().splitlines()
        assert "names" not in json.loads(body), "a manifest of parts lists no items itself"
    before = {task: _part_files(task) for task in (tasks.Doubled(), tasks.Tripled())}

    (folder / "n10001.txt").write_text("5")
    (folder / "n00003.txt").write_text("77")
    (folder / "n00007.txt").unlink()
    summary = luisy.execution.run([tasks.Total()], working_dir=data)
    assert summary.ok
    changed_parts = set()
    for task in (tasks.Doubled(), tasks.Tripled()):
        manifest = task.output().manifest
        assert manifest.processed == 2 and len(manifest.items) == ITEMS
        after = {record.file.rsplit("/", 1)[1] for record in manifest.items.records}
        changed_parts = after - before[task]
        # n10001 and n00003 and n00007 fall in at most three parts; the others are not rewritten.
        assert 1 <= len(changed_parts) <= 3 and len(after & before[task]) == 4 - len(changed_parts)
        # The replaced parts stay for readers of the previous manifest.
        assert {f.rsplit("/", 1)[1] for f in manifest.retired_parts} == before[task] - after
        assert _part_files(task) == before[task] | after
    values = {i: i for i in range(ITEMS) if i != 7} | {3: 77, 10001: 5}
    assert json.loads(_folder(tasks.Total()).read_text()) == {"n": len(values), "sum": 6 * sum(values.values())}
    assert summary.reduced == [("Total()", {"folded": 2, "unfolded": 2, "refolded": None})]

    # A lookup reads the part of its name only; the whole table reads all of them.
    at = _folder(tasks.Tripled())
    read = []
    manifest = Manifest.from_json((at / MANIFEST_NAME).read_text(), str(at / MANIFEST_NAME),
                                  read_part=lambda file: read.append(file) or (at / file).read_bytes())
    assert manifest.items["n00003"].size > 0 and "n00007" not in manifest.items
    assert len(read) <= 2
    assert manifest.items.names == sorted(f"n{i:05d}" for i in values)

    # A no-op rerun writes nothing.
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    assert tasks.Tripled().output().manifest.processed == 2



def test_in_an_object_store_a_rerun_uploads_only_the_parts_that_changed(tmp_path, monkeypatch, moto_s3):
    """Counted in the S3 server's own log. Parts hold fewer items here, so that a few hundred
    uploads make eight parts."""
    import fsspec

    monkeypatch.setattr(luisy.parts, "PART_ITEMS", 16)
    items = 100  # eight parts
    for name, value in moto_s3.env.items():
        monkeypatch.setenv(name, value)
    write_project(tmp_path / "proj", {"parted_store_tasks.py": TASKS})
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    sys.modules.pop("parted_store_tasks", None)
    tasks = importlib.import_module("parted_store_tasks")
    root = f"{moto_s3.create_bucket(f'parts-{uuid.uuid4().hex[:10]}')}/data"
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **moto_s3.storage_options())
    for i in range(items):
        fs.pipe_file(f"{root}/parted_store_tasks/raw/numbers/n{i:05d}.txt", str(i).encode())
    assert luisy.execution.run([tasks.Total()], working_dir=f"s3://{root}").ok
    with luisy.config.working_dir(f"s3://{root}"):
        assert [task.output().header.part_count for task in (tasks.Doubled(), tasks.Tripled())] == [8, 8]

    fs.pipe_file(f"{root}/parted_store_tasks/raw/numbers/n10001.txt", b"5")
    moto_s3.mark()
    assert luisy.execution.run([tasks.Total()], working_dir=f"s3://{root}").ok
    puts = [r.path.split("?")[0] for r in moto_s3.requests() if r.method == "PUT"]  # refused ones sent it too
    for stage in ("Doubled", "Tripled"):
        parts = [p for p in puts if f"/interim/{stage}/{PARTS}/" in p]
        assert len(parts) == 1, f"{stage}: only the part n10001 falls in is uploaded, not {parts}"
    fs.invalidate_cache()
    total = json.loads(fs.cat_file(f"{root}/parted_store_tasks/final/Total.json"))
    assert total == {"n": items + 1, "sum": 6 * (sum(range(items)) + 5)}
    sys.modules.pop("parted_store_tasks", None)


@pytest.mark.parametrize("new", ["n00003.pkl.txt", "n00005.txt"])
def test_a_new_input_whose_item_file_is_a_kept_items_is_refused_before_any_work(parted, new):
    tasks, folder, data = parted
    (folder / "n00005.txt").rename(folder / "n00005.pkl.txt")  # item "n00005.pkl": file n00005.pkl
    assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
    before = _items(tasks.Doubled())
    (folder / new).write_text("1")
    kept = "n00003" if new.startswith("n00003") else "n00005.pkl"
    with pytest.raises(ItemNameError, match=rf"input file .*{new}\b.* and the published item {kept!r} would both be "
                                            r"written to 'n0000[35]\.pkl'"):
        tasks.Doubled().run()
    assert _items(tasks.Doubled()) == before

def test_replaced_parts_go_once_no_reader_needs_them(parted):
    tasks, folder, data = parted
    with luisy.config.luigi_setting("luisy", "keep_replaced_seconds", "0"):
        assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
        (folder / "n00003.txt").write_text("77")
        assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
        first_replaced = set(tasks.Doubled().output().manifest.retired_parts)
        assert len(first_replaced) == 1
        (folder / "n00004.txt").write_text("78")
        assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
    manifest = tasks.Doubled().output().manifest
    listed = {record.file.rsplit("/", 1)[1] for record in manifest.items.records}
    kept = {file.rsplit("/", 1)[1] for file in manifest.retired_parts}
    assert _part_files(tasks.Doubled()) == listed | kept
    assert not first_replaced & set(manifest.retired_parts), "kept past keep_replaced_seconds"


@pytest.mark.slow
def test_random_reruns_equal_a_full_recomputation(parted, tmp_path):
    tasks, folder, data = parted
    rng = random.Random(5)
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    for step in range(4):
        present = sorted(p.stem for p in folder.glob("*.txt"))
        for _ in range(rng.randint(1, 40)):
            action = rng.choice(["add", "change", "remove", "rename", "break", "mend"])
            name = rng.choice(present)
            if action == "add":
                (folder / f"m{rng.randrange(10**6):06d}.txt").write_text(str(rng.randrange(100)))
            elif action == "change":
                (folder / f"{name}.txt").write_text(str(rng.randrange(100, 200)))
            elif action == "remove":
                (folder / f"{name}.txt").unlink(missing_ok=True)
            elif action == "rename" and (folder / f"{name}.txt").exists():
                (folder / f"{name}.txt").rename(folder / f"r{rng.randrange(10**6):06d}.txt")
            elif action == "break":  # a failed item, retried by the next run
                (folder / f"{name}.txt").write_text("not a number")
            elif action == "mend" and (folder / f"{name}.txt").exists():
                (folder / f"{name}.txt").write_text("1")
        assert luisy.execution.run([tasks.Total()], working_dir=data).complete, step
        fresh = tmp_path / f"fresh{step}"
        shutil.copytree(folder, fresh / "parted_tasks" / "raw" / "numbers")
        assert luisy.execution.run([tasks.Total()], working_dir=fresh).complete, step
        for task in (tasks.Doubled(), tasks.Tripled()):
            incremental, full = _manifest(task, data), _manifest(task, fresh)
            assert _items(task, data) == _items(task, fresh), (step, task)
            assert sorted(incremental.failed) == sorted(full.failed), (step, task)
        totals = [json.loads(next(root.rglob("final/Total.json")).read_text()) for root in (data, fresh)]
        assert totals[0] == totals[1], step
        shutil.rmtree(fresh)


def _as_schema_4(folder: Path) -> None:
    """Rewrite the folder's manifest in the previous schema: every item in its second line."""
    manifest = Manifest.read(folder)
    table = manifest.items.full()
    body = {"failed": manifest.failed, "failed_sources": manifest.failed_sources,
            "failed_details": manifest.failed_details, "skipped": manifest.skipped, "retired": manifest.retired,
            "names": table.names, "files": table.files, "sizes": table.sizes, "checksums": table.checksums,
            "sources": table.sources}
    line = json.dumps(body, separators=(",", ":"))
    head = json.loads((folder / MANIFEST_NAME).read_text().splitlines()[0])
    del head["part_count"]
    from luisy.digests import bytes_digest, columns_digest
    head.update(schema=4, body_bytes=len(line), body_digest=bytes_digest(line.encode()),
                items_digest=columns_digest(table.names, table.checksums))
    (folder / MANIFEST_NAME).write_text(json.dumps(head, sort_keys=True) + "\n" + line)
    shutil.rmtree(folder / PARTS)


def test_a_manifest_of_the_previous_schema_is_read_and_rewritten_in_parts(parted):
    tasks, folder, data = parted
    assert luisy.execution.run([tasks.Tripled()], working_dir=data).ok
    items = _items(tasks.Tripled())
    for task in (tasks.Doubled(), tasks.Tripled()):
        _as_schema_4(_folder(task))
    assert tasks.Tripled().output().header.part_count == 1
    assert _items(tasks.Tripled()) == items, "read as it is"
    (folder / "n00003.txt").write_text("77")
    assert luisy.execution.run([tasks.Tripled()], working_dir=data).ok
    for task in (tasks.Doubled(), tasks.Tripled()):
        assert task.output().header.part_count == 4 and len(_part_files(task)) == 4
        assert task.output().manifest.processed == 1
    assert _items(tasks.Tripled())["n00003"] != items.pop("n00003")
    assert {k: v for k, v in _items(tasks.Tripled()).items() if k != "n00003"} == items


def test_a_damaged_part_is_reported_and_repaired(parted):
    tasks, folder, data = parted
    assert luisy.execution.run([tasks.Tripled()], working_dir=data).ok
    part = sorted((_folder(tasks.Tripled()) / PARTS).iterdir())[0]
    part.write_bytes(part.read_bytes().replace(b'"n0', b'"x0', 1))
    project = folder.parents[2].parent / "proj"
    verify = run_luisy(["verify", "parted_tasks:Tripled", "--working-dir", str(data)], cwd=project)
    assert verify.returncode != 0 and part.name in verify.stdout + verify.stderr
    assert "Traceback" not in verify.stderr
    repair = run_luisy(["verify", "parted_tasks:Tripled", "--working-dir", str(data), "--repair"], cwd=project)
    assert repair.returncode == 0, repair.stderr
    assert luisy.execution.run([tasks.Tripled()], working_dir=data).ok
    assert tasks.Tripled().output().manifest.processed == ITEMS
    assert json.loads(part.parent.joinpath(next(iter(_part_files(tasks.Tripled())))).read_text())["names"]


def test_parts_hold_about_part_items():
    from luisy.parts import part_count

    assert part_count(0) == part_count(PART_ITEMS) == 1
    assert part_count(PART_ITEMS + 1) == 2 and part_count(1_000_000) == 256
    assert part_count(1_000_000, current=128) == 128, "a count within four times is kept"
    assert part_count(1_000_000, current=32) == 256


def test_a_listings_parts_and_their_digests_are_those_of_its_items_split_by_name():
    from luisy.digests import columns_digest
    from luisy.parts import part_of
    from luisy.sources import SourceItems

    rng = random.Random(7)
    names = sorted({f"f{rng.randrange(10**6)}/x.{rng.randrange(99)}" for _ in range(3000)})
    fingerprints = [f"{rng.randrange(10**4)}-{rng.randrange(10**12)}" for _ in names]
    count = 8
    expected = {p: [row for row, name in enumerate(names) if part_of(name, count) == p] for p in range(count)}
    listing = SourceItems(names, fingerprints, names, str)
    digests = listing.part_digests(count)
    for p, rows in expected.items():
        assert digests[p] == columns_digest([names[r] for r in rows], [fingerprints[r] for r in rows])
    picked = listing.parts(count, [5, 2, 5])
    assert sorted(picked) == [2, 5]
    for p, part in picked.items():
        assert part.names == [names[r] for r in expected[p]]
        assert part.fingerprints == [fingerprints[r] for r in expected[p]]
    # Out of order, or with an item not fingerprinted, each part's digest is still that of its items.
    order = list(range(len(names)))
    rng.shuffle(order)
    shuffled = SourceItems([names[r] for r in order], [fingerprints[r] for r in order], names, str)
    assert shuffled.part_digests(count) == digests
    gap = list(fingerprints)
    gap[expected[3][0]] = None
    with_gap = SourceItems(names, gap, names, str).part_digests(count)
    assert [p for p in range(count) if with_gap[p] != digests[p]] == [3]



KILL_HOOKS = {
    # The new parts are written; the manifest that lists them is not.
    "after the parts, before the manifest": """
        original = local.temp_sibling
        def temp_sibling(path):
            if path.name == local.MANIFEST_NAME:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path)
        local.temp_sibling = temp_sibling
    """,
    # The manifest is replaced; replaced files and parts are not moved aside or deleted yet.
    "after the manifest": """
        def remember(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        local.remember = remember
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_HOOKS))
def test_kill_9_while_publishing_parts_leaves_one_state_and_the_rerun_converges(parted, point):
    tasks, folder, data = parted
    assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
    before = _items(tasks.Doubled())
    (folder / "n00003.txt").write_text("77")
    (folder / "n10001.txt").write_text("5")
    script = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, {project!r})
        import luisy
        from luisy.directory import local
    """).format(project=str(folder.parents[3] / "proj")) + textwrap.dedent(KILL_HOOKS[point]) + textwrap.dedent("""
        import parted_tasks
        luisy.build([parted_tasks.Doubled()], working_dir={data!r})
    """).format(data=str(data))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # Readers see the old state or the new one, every part and item file of it intact.
    seen = _items(tasks.Doubled())
    if point == "after the manifest":
        assert seen.keys() == before.keys() | {"n10001"} and seen["n00003"] != before["n00003"]
    else:
        assert seen == before
    manifest = _manifest(tasks.Doubled())
    bad, _ = tasks.Doubled().output().place.check(manifest)
    assert not bad

    assert luisy.execution.run([tasks.Doubled()], working_dir=data).ok
    values = dict(tasks.Doubled().output().items())
    assert values["n00003"] == 154 and values["n10001"] == 10 and values["n00004"] == 8
    bad, strays = tasks.Doubled().output().place.check(tasks.Doubled().output().manifest)
    assert not bad and not strays, "the rerun sweeps what the killed publish left"
    listed = {record.file for record in tasks.Doubled().output().manifest.items.records}
    kept = set(tasks.Doubled().output().manifest.retired_parts)
    assert {f"{PARTS}/{name}" for name in _part_files(tasks.Doubled())} == listed | kept


def test_a_first_run_over_an_upstream_in_parts_holds_a_few_of_its_parts_at_a_time(parted, monkeypatch):
    from luisy.directory import manifest as manifests

    tasks, folder, data = parted
    monkeypatch.setattr(manifests, "HELD_PARTS", 2)  # as a million items in 256 parts are: not all kept
    seen: list[tuple[str, int, bool]] = []

    def at_hand(task: luigi.Task) -> tuple[int, bool]:
        items = Manifest.read(_folder(task)).items  # the one this process holds, just published
        return sum(table is not None for table in items._tables), items._full is not None

    def process(self, name, value):
        seen.append((name, *at_hand(tasks.Doubled())))
        return value * 3

    folded: list[tuple[str, int, bool]] = []

    def fold(self, state, name, value):
        folded.append((name, *at_hand(tasks.Tripled())))
        return {"n": state["n"] + 1, "sum": state["sum"] + value}

    monkeypatch.setattr(tasks.Tripled, "process", process)
    monkeypatch.setattr(tasks.Total, "fold", fold)
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    # Part after part, each sorted by name; the upstream's parts are read one at a time, none kept.
    names = [name for name, _, _ in seen]
    keys = [part_of(name, 4) for name in names]
    assert keys == sorted(keys) and sorted(names) == [f"n{i:05d}" for i in range(ITEMS)]
    assert {held for _, held, _ in seen} == {0} and not any(full for _, _, full in seen)
    # The reduce folds in name order all the same, without the whole table of its input.
    assert [name for name, _, _ in folded] == sorted(names)
    assert {held for _, held, _ in folded} == {0} and not any(full for _, _, full in folded)
    assert json.loads(_folder(tasks.Total()).read_text()) == {"n": ITEMS, "sum": 6 * sum(range(ITEMS))}
    manifest = tasks.Tripled().output().manifest
    assert manifest.items.names == sorted(names) and all(
        manifest.items[name].source == tasks.Doubled().output().manifest.items[name].checksum for name in names[:50])
    # A rerun reads the part that changed (and those its kept-name check looks in), not all four.
    (folder / "n00003.txt").write_text("77")
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    assert seen[-1][0] == "n00003" and seen[-1][1] < 4 and not seen[-1][2] and len(seen) == ITEMS + 1


def test_a_reduce_reads_no_part_again_that_the_publish_before_it_replaced(parted, monkeypatch):
    from luisy.directory import manifest as manifests

    tasks, folder, data = parted
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    (folder / "n00003.txt").write_text("77")
    reads: list[str] = []
    original = manifests.read_own

    def read_own(path, *args, **kwargs):
        reads.append(os.path.relpath(path, _folder(tasks.Tripled())))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(manifests, "read_own", read_own)
    monkeypatch.setattr(manifests, "_parsed", manifests._ParsedManifests(size=2))  # as in a new process
    assert luisy.execution.run([tasks.Total()], working_dir=data).ok
    tripled = [path for path in reads if not path.startswith("..")]
    # Tripled's run reads the part n00003 is in; the reduce compares it, as it was, with the new one.
    assert len(tripled) == 1 and tripled[0].startswith(PARTS)
    assert json.loads(_folder(tasks.Total()).read_text())["sum"] == 6 * (sum(range(ITEMS)) - 3 + 77)
