"""Tampered checkpoints, output and layer folders replaced by links, manifests naming unsafe
items, and item files, lock files and luisy's folders replaced by something else.

Each test plays one attack with real files, real links and the ``luisy`` command: nothing outside
the working directory may be moved, written or deleted, and nothing the checks did not pass may
be published.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_luisy, write_project

from luisy.atomic import temp_sibling
from luisy.digests import file_digest
from luisy.directory import MANIFEST_NAME
from luisy.directory.local import CHECKPOINT, CHECKPOINT_MAX_BYTES
from luisy.directory.manifest import Manifest
from luisy.directory.table import Item
from luisy.errors import ManifestError

pytestmark = pytest.mark.slow  # the attack runs' regressions: many processes each; see pyproject.toml

PROJECT = {
    "tam/__init__.py": "",
    "tam/tasks.py": '''
        import os
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Upper(luisy.DirectoryTask):
            def process(self, name, obj):
                with open(os.environ["MADE"], "a") as made:
                    made.write(name + "\\n")
                if name == os.environ.get("FAIL"):
                    raise RuntimeError("stopped here")
                return obj.upper()


        @luisy.final
        @luisy.requires(Upper)
        @luisy.directory_output(format="txt")
        class Shout(luisy.DirectoryTask):
            def process(self, name, obj):
                return obj + "!"


        @luisy.final
        @luisy.requires(Upper)
        @luisy.json_output
        class Count(luisy.Task):
            def run(self):
                self.write({"items": len(list(self.input().items()))})
    ''',
}
NOTES = {f"n{i}": f"note {i}" for i in range(5)}


@pytest.fixture
def project(tmp_path):
    root = write_project(tmp_path / "project", PROJECT)
    notes = root / "data" / "tam" / "raw" / "notes"
    notes.mkdir(parents=True)
    for name, text in NOTES.items():
        (notes / f"{name}.txt").write_text(text)
    return root


def _luisy(project: Path, *args: str, fail: str = "") -> tuple[int, str, list[str]]:
    """Run ``luisy args``; its exit status, its output, and the items ``Upper`` made."""
    made = project / "made.txt"
    made.write_text("")
    result = run_luisy(list(args), cwd=project, env={"MADE": str(made), "FAIL": fail})
    return result.returncode, result.stdout + result.stderr, made.read_text().split()


def _layer(project: Path) -> Path:
    return project / "data" / "tam" / "interim"


def _published(project: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (_layer(project) / "Upper").glob("n*.txt")}


def _interrupted(project: Path) -> Path:
    """A run of ``Upper`` that stopped at item n3: n0..n2 wait in its staging folder for the next run."""
    status, output, made = _luisy(project, "run", "tam.tasks:Upper", fail="n3")
    assert status == 1 and made == ["n0", "n1", "n2", "n3"], output
    (staging,) = _layer(project).glob(".luisy-tmp-*Upper")
    return staging


def _forge(staging: Path, name: str, item: Item) -> None:
    """Append a checkpoint line, as luisy writes them, that says item ``name`` is ``item``."""
    with open(staging / CHECKPOINT, "a") as f:
        f.write("\n" + json.dumps({"items": {name: list(item)}}))


def _checkpointed(staging: Path, name: str) -> Item:
    lines = [json.loads(line) for line in (staging / CHECKPOINT).read_text().split("\n") if line]
    return Item(*next(line["items"][name] for line in reversed(lines) if name in line.get("items", {})))


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# A tampered checkpoint: what is taken over is checked; nothing outside is moved.

@pytest.mark.parametrize("tamper", ["symbolic link", "hard link", "rewritten, same size"])
def test_a_tampered_item_in_a_checkpoint_is_made_again_not_published(project, tmp_path, tamper):
    staging = _interrupted(project)
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("EVIL 0")  # as long as the item's real content, "NOTE 0"
    item = staging / "n0.txt"
    checkpointed = _checkpointed(staging, "n0")
    if tamper == "rewritten, same size":
        item.write_text("EVIL 0")
    else:
        item.unlink()
        item.symlink_to(victim) if tamper == "symbolic link" else os.link(victim, item)
        # the checkpoint line made to match what now stands there
        _forge(staging, "n0", checkpointed._replace(size=os.lstat(item).st_size, checksum=file_digest(victim)))

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0, output
    assert made == ["n0", "n3", "n4"], "the tampered item is made again, the sound ones are taken over"
    published = _layer(project) / "Upper" / "n0.txt"
    assert not published.is_symlink() and os.stat(published).st_nlink == 1
    assert _published(project) == {name: text.upper() for name, text in NOTES.items()}
    assert victim.read_text() == "EVIL 0" and os.stat(victim).st_nlink == 1
    assert _luisy(project, "verify", "tam.tasks:Upper")[0] == 0


def test_a_checkpoint_naming_a_file_through_a_linked_sub_folder_moves_nothing_out_of_it(project, tmp_path):
    staging = _interrupted(project)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    (staging / "sub").symlink_to(outside)
    _forge(staging, "sub/precious", Item("sub/precious.txt", 8, file_digest(outside / "precious.txt"), "x"))

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n3", "n4"], output
    assert _files(outside) == {"precious.txt": "precious"}


def test_a_staging_folder_that_is_a_link_is_not_taken_over(project, tmp_path):
    staging = _interrupted(project)
    outside = tmp_path / "outside"
    shutil.move(staging, outside)
    (outside / "precious.txt").write_text("precious")
    staging.symlink_to(outside)
    before = _files(outside)

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n0", "n1", "n2", "n3", "n4"], output
    assert _files(outside) == before
    assert _published(project) == {name: text.upper() for name, text in NOTES.items()}


#: What the faults below raised before luisy handled them.
RAW_ERRORS = ("Traceback", "MemoryError", "RecursionError", "OverflowError", "IsADirectoryError", "FileExistsError",
              "TypeError")


def _no_traceback(output: str) -> None:
    assert not any(error in output for error in RAW_ERRORS), output


def _sparse(path: Path, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


@pytest.mark.parametrize("damage", ["link to a huge file", "huge", "deeply nested", "item file of a wrong type"])
def test_a_checkpoint_luisy_did_not_write_is_ignored_and_its_items_made_again(project, tmp_path, damage):
    staging = _interrupted(project)
    checkpoint = staging / CHECKPOINT
    huge = tmp_path / "outside" / "huge"
    huge.parent.mkdir()
    _sparse(huge, 100 << 30)
    if damage == "link to a huge file":
        checkpoint.unlink()
        checkpoint.symlink_to(huge)
    elif damage == "huge":
        _sparse(checkpoint, 100 << 30)  # its lines first, then more than luisy ever writes
    elif damage == "deeply nested":
        checkpoint.write_text('\n{"state": ' + "[" * 300_000 + "]" * 300_000 + "}")
    else:
        _forge(staging, "n0", Item(7, 6, "c", "s"))  # type: ignore[arg-type]

    for command in ("plan", "status", "items"):
        status, output, _ = _luisy(project, command, "tam.tasks:Upper")
        assert status in (0, 1), output
        _no_traceback(output)
    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == sorted(NOTES), output
    assert _published(project) == {name: text.upper() for name, text in NOTES.items()}
    assert not list(_layer(project).glob(".luisy-tmp-*")), "no staging folder is left behind"
    assert huge.stat().st_size == 100 << 30


def test_a_checkpoint_stops_growing_before_luisy_would_not_read_it(tmp_path, monkeypatch):
    from luisy.directory import local as target

    monkeypatch.setattr(target, "CHECKPOINT_MAX_BYTES", 300)
    staging = target.LocalStaging(tmp_path / "out")
    staging.keep()
    first = {"a": Item("a.txt", 1, "c" * 32, "s1")}
    staging.checkpoint({"code": "x"}, first.items())
    staging.checkpoint({"code": "x"}, [(f"b{i}", Item(f"b{i}.txt", 1, "c" * 32, "s")) for i in range(5)])
    staging.checkpoint({"code": "x"}, [("c", Item("c.txt", 1, "c" * 32, "s3"))])
    assert (staging.path / CHECKPOINT).stat().st_size <= 300
    staging.discard()
    _, items = target.latest_checkpoint(tmp_path / "out", {"code": "x"})
    assert items == {**first, "c": Item("c.txt", 1, "c" * 32, "s3")}
    assert CHECKPOINT_MAX_BYTES == 1 << 30


def test_a_checkpoint_written_in_pieces_is_taken_back_whole_when_it_grows_too_long(tmp_path, monkeypatch):
    from luisy.directory import local as target

    staging = target.LocalStaging(tmp_path / "out")
    staging.keep()
    first = {"a": Item("a.txt", 1, "c" * 32, "s1")}
    staging.checkpoint({"code": "x"}, first.items())
    before = (staging.path / CHECKPOINT).read_bytes()
    many = [(f"b{i:05d}", Item(f"b{i:05d}.txt", 1, "c" * 32, "s")) for i in range(9000)]  # three pieces
    monkeypatch.setattr(target, "CHECKPOINT_MAX_BYTES", len(before) + 2 * 4096 * 60)  # room for about two
    staging.checkpoint({"code": "x"}, many)
    assert (staging.path / CHECKPOINT).read_bytes() == before, "the pieces written are taken back"
    monkeypatch.setattr(target, "CHECKPOINT_MAX_BYTES", 1 << 30)
    staging.checkpoint({"code": "x"}, many)
    staging.discard()
    _, items = target.latest_checkpoint(tmp_path / "out", {"code": "x"})
    assert items == {**first, **dict(many)}


def test_a_temporary_name_with_a_pid_no_process_can_have_is_a_gone_writers(project):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    layer = _layer(project)
    mine = temp_sibling(layer / "Upper").name  # as this machine's writers name them
    (layer / mine.replace(f".{os.getpid()}.", ".99999999999999999999999.", 1)).mkdir()
    (project / "data" / "tam" / "raw" / "notes" / "n9.txt").write_text("note 9")

    for command in ("plan", "status", "verify"):
        status, output, _ = _luisy(project, command, "tam.tasks:Shout")
        assert status in (0, 1), output
        _no_traceback(output)
    status, output, made = _luisy(project, "run", "tam.tasks:Shout")
    assert status == 0 and made == ["n9"], output
    assert not list(layer.glob(".luisy-tmp-*")), "the gone writer's folder is removed"


# Item files and luisy's own files beside and in the output folder replaced by something else.

@pytest.mark.parametrize("how", ["verify --repair", "run --verify"])
def test_an_item_file_replaced_by_a_folder_is_bad_and_repair_removes_it(project, tmp_path, how):
    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    item = _layer(project) / "Upper" / "n1.txt"
    item.unlink()
    item.mkdir()
    (item / "inside.txt").write_text("put here")
    (tmp_path / "outside.txt").write_text("outside")
    (item / "link").symlink_to(tmp_path / "outside.txt")

    status, output, _ = _luisy(project, "verify", "tam.tasks:Shout")
    assert status == 1 and f"item 'n1': {item} is a folder, not a regular file" in output, output
    if how == "verify --repair":
        status, output, _ = _luisy(project, "verify", "tam.tasks:Shout", "--repair")
        assert status == 0, output
        _no_traceback(output)
    status, output, made = _luisy(project, "run", "tam.tasks:Shout", *(["--verify"] if "run" in how else []))
    assert status == 0 and made == ["n1"], output
    assert item.read_text() == "NOTE 1" and (tmp_path / "outside.txt").read_text() == "outside"
    assert _luisy(project, "verify", "tam.tasks:Shout")[0] == 0


def test_a_folder_where_a_dropped_item_is_made_again_is_left_alone(project):
    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    item = _layer(project) / "Upper" / "n1.txt"
    item.unlink()
    assert _luisy(project, "verify", "tam.tasks:Shout", "--repair")[0] == 0
    item.mkdir()  # put in its place after the repair dropped it
    (item / "inside.txt").write_text("put here")

    status, output, made = _luisy(project, "run", "tam.tasks:Shout")
    assert status == 0 and made == ["n1"], output
    shout = project / "data" / "tam" / "final" / "Shout"
    assert {p.stem: p.read_text() for p in shout.glob("*.txt")} == {n: t.upper() + "!" for n, t in NOTES.items()}
    assert (item / "inside.txt").read_text() == "put here"


@pytest.mark.parametrize("lock", ["lock", "writer"])
def test_a_lock_file_replaced_by_a_folder_is_one_line_and_verify_repair_removes_it(project, lock):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    path = _layer(project) / f".Upper.luisy-{lock}"
    path.mkdir()
    (path / "inside.txt").write_text("put here")
    (project / "data" / "tam" / "raw" / "notes" / "n9.txt").write_text("note 9")

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 1 and made == [], output
    _no_traceback(output)
    (line,) = [line for line in output.splitlines() if "failed: Upper()" in line]
    assert f"{path} is a folder, not a regular file: remove it" in line
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper")
    assert status == 1 and f"{path} is a folder, not a regular file: no run can lock it" in output, output
    assert path.is_dir(), "verify alone changes nothing"
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper", "--repair")
    assert status == 0 and not path.exists(), output
    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n9"], output


@pytest.mark.parametrize("what", ["file", "fifo"])
def test_the_retired_folder_replaced_by_a_file_is_made_again(project, what):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    retired = _layer(project) / "Upper" / ".luisy-retired"
    shutil.rmtree(retired, ignore_errors=True)
    retired.write_text("put here") if what == "file" else os.mkfifo(retired)
    (project / "data" / "tam" / "raw" / "notes" / "n1.txt").write_text("note one")  # n1's file is retired

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n1"], output
    assert retired.is_dir() and [p.name for p in retired.iterdir()] == ["n1.txt"]
    assert [p.read_text() for p in (_layer(project) / "Upper").glob("n1*.txt")] == ["NOTE ONE"]


def test_an_item_damaged_without_changing_its_size_is_found_by_verify_not_on_read(project):
    """What the docs say: a read checks that the item file is there and that its format reads it;
    its size and content are checked by ``luisy verify`` and ``luisy run --verify``. What a
    downstream task made from the damaged item before that stays until its output is removed."""
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    upper = _layer(project) / "Upper" / "n1.txt"
    upper.write_text("XXXX 1")  # as long as "NOTE 1"
    shout = project / "data" / "tam" / "final" / "Shout"

    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    assert (shout / "n1.txt").read_text() == "XXXX 1!", "read as it is"
    status, output, _ = _luisy(project, "verify", "tam.tasks:Shout")
    assert status == 1 and f"item 'n1': {upper} does not match its checksum" in output, output
    status, output, made = _luisy(project, "run", "tam.tasks:Shout", "--verify")
    assert status == 0 and made == ["n1"] and upper.read_text() == "NOTE 1", output
    assert (shout / "n1.txt").read_text() == "XXXX 1!", "made again, n1 has the checksum Shout read it by"
    shutil.rmtree(shout)
    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    assert (shout / "n1.txt").read_text() == "NOTE 1!"


# An output folder, or the layer folder it is in, replaced by a link to another folder.

def _link(project: Path, tmp_path: Path, which: str, with_output: bool) -> Path:
    """Replace the output folder of ``Upper`` (or its layer folder) by a link to a folder elsewhere,
    holding a copy of the output if ``with_output``, and a file of its own; return where the output
    folder now leads."""
    layer, elsewhere = _layer(project), tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere if which == "output" else elsewhere / "Upper"
    if with_output:
        shutil.copytree(layer / "Upper", target, dirs_exist_ok=True)
    target.mkdir(exist_ok=True)
    (target / "mine.txt").write_text("not luisy's")
    linked = layer / "Upper" if which == "output" else layer
    shutil.rmtree(linked)
    linked.symlink_to(elsewhere)
    return target


@pytest.mark.parametrize("which", ["output", "layer"])
def test_a_run_writes_nothing_into_an_output_folder_that_is_a_link(project, tmp_path, which):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    _link(project, tmp_path, which, with_output=False)
    elsewhere = tmp_path / "elsewhere"
    before = _files(elsewhere)

    status, output, _ = _luisy(project, "run", "tam.tasks:Upper")
    assert _files(elsewhere) == before
    assert [p.name for p in elsewhere.rglob("*") if p.name.startswith(".luisy")] == []
    assert status == 1 and "failed: Upper(): " in output and "is a symbolic link" in output, output
    assert "luisy.errors" not in output and output.count("Upper()") == 2, "one task name per line"
    (line,) = [line for line in output.splitlines() if "failed: Upper()" in line]
    assert "is a symbolic link (to " in line and str(tmp_path / "elsewhere") in line


@pytest.mark.parametrize("which", ["output", "layer"])
def test_verify_repair_deletes_nothing_through_a_linked_output_folder(project, tmp_path, which):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    target = _link(project, tmp_path, which, with_output=True)
    (target / "n2.txt").write_text("EVIL 2")
    before = _files(target)

    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper")
    assert status == 1 and "mine.txt is not listed in the manifest" in output and "item 'n2'" in output, output
    assert _files(target) == before, "verify writes no note of what it found through the link"
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper", "--repair")
    assert _files(target) == before
    assert status == 2 and "is a symbolic link" in output and "Traceback" not in output, output


@pytest.mark.parametrize("which", ["output", "layer"])
def test_the_sweep_after_an_interrupted_publish_deletes_nothing_through_a_link(project, tmp_path, which):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    target = _link(project, tmp_path, which, with_output=True)
    (_layer(project) / ".Upper.luisy-lock").write_text("publishing\n")  # as a killed publish leaves it
    before = _files(target)

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert _files(target) == before
    assert made == [] and "is a symbolic link" in output and "Traceback" not in output, output


# The layer folder of a task with a single-file output replaced by a link: the same rule.

def test_a_run_writes_and_deletes_nothing_through_the_linked_folder_of_a_file_output(project, tmp_path):
    assert _luisy(project, "run", "tam.tasks:Count")[0] == 0
    final, elsewhere = project / "data" / "tam" / "final", tmp_path / "elsewhere"
    shutil.copytree(final, elsewhere)
    shutil.rmtree(final)
    final.symlink_to(elsewhere)
    # A temporary file as an older luisy named them, of a writer gone for two days: stale, were it luisy's.
    stale = elsewhere / ".luisy-tmp-old-Count.json"
    stale.write_text("not luisy's")
    os.utime(stale, (time.time() - 2 * 24 * 3600,) * 2)
    (project / "data" / "tam" / "raw" / "notes" / "n9.txt").write_text("note 9")  # Count must run again
    before = _files(elsewhere)

    status, output, made = _luisy(project, "run", "tam.tasks:Count")
    assert _files(elsewhere) == before and stale.exists(), "nothing written or deleted through the link"
    assert status == 1 and made == ["n9"] and "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "failed: Count()" in line]
    assert f"{final} is a symbolic link (to {elsewhere})" in line, line


def test_outputs_and_inputs_are_still_read_through_links(project, tmp_path):
    notes, moved = project / "data" / "tam" / "raw" / "notes", tmp_path / "notes-elsewhere"
    notes.rename(moved)
    notes.symlink_to(moved)  # raw inputs on another disk
    status, output, made = _luisy(project, "run", "tam.tasks:Count")
    assert status == 0 and sorted(made) == sorted(NOTES), output
    final, elsewhere = project / "data" / "tam" / "final", tmp_path / "final-elsewhere"
    final.rename(elsewhere)
    final.symlink_to(elsewhere)
    status, output, _ = _luisy(project, "run", "tam.tasks:Count")
    assert status == 0 and "nothing to run" in output, output
    assert json.loads((final / "Count.json").read_text()) == {"items": len(NOTES)}


# A manifest that names an item unsafely is corrupt.

def _rename_item(folder: Path, old: str, new: str) -> None:
    """Rename an item in the manifest as an attacker would: columns kept sorted, digests made to match."""
    path = folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    header, lists = json.loads(head), json.loads(body)
    rows = sorted(zip(*(lists[c] for c in ("names", "files", "sizes", "checksums", "sources")), strict=True))
    rows = sorted((new if row[0] == old else row[0], *row[1:]) for row in rows)
    for column, values in zip(("names", "files", "sizes", "checksums", "sources"), zip(*rows, strict=True),
                              strict=True):
        lists[column] = list(values)
    text = json.dumps(lists)
    header["body_bytes"] = len(text.encode())
    header["body_digest"] = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    path.write_text(json.dumps(header) + "\n" + text)


def test_verify_reports_a_manifest_naming_an_item_outside_and_repair_removes_it(project, tmp_path):
    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    upper = _layer(project) / "Upper"
    _rename_item(upper, "n1", "../../outside/pwned")
    shutil.rmtree(project / "data" / "tam" / "final" / "Shout")  # downstream must run on it

    status, output, _ = _luisy(project, "verify", "tam.tasks:Shout")
    assert status == 1 and "corrupt" in output and "../../outside/pwned" in output, output
    status, output, _ = _luisy(project, "verify", "tam.tasks:Shout", "--repair")
    assert status == 0 and "corrupt" in output, output
    status, output, made = _luisy(project, "run", "tam.tasks:Shout")
    assert status == 0 and sorted(made) == sorted(NOTES), output
    shout = project / "data" / "tam" / "final" / "Shout"
    assert {p.stem: p.read_text() for p in shout.glob("*.txt")} == {n: t.upper() + "!" for n, t in NOTES.items()}
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b", "_luisy_manifest", ".luisy-retired/x", "a\\b", ""])
def test_a_manifest_whose_item_name_cannot_name_a_file_is_corrupt(name):
    text = Manifest(items={name: Item("ok.txt", 1, "c"), "z": Item("z.txt", 1, "c")}).to_json()
    with pytest.raises(ManifestError, match="item name"):
        Manifest.from_json(text)


@pytest.mark.parametrize("damage", ["re-signed body", "not JSON"])
def test_plan_and_status_give_a_corrupt_manifest_as_the_reason_the_task_runs(project, damage):
    assert _luisy(project, "run", "tam.tasks:Shout")[0] == 0
    upper = _layer(project) / "Upper"
    if damage == "not JSON":
        (upper / MANIFEST_NAME).write_text("garbage\n")
    else:
        _rename_item(upper, "n1", "n0")  # two items of one name, the digests made to match
    (project / "data" / "tam" / "raw" / "notes" / "n3.txt").write_text("changed")

    for command in ("plan", "status"):
        status, output, _ = _luisy(project, command, "tam.tasks:Shout")
        assert status == (0 if command == "plan" else 1), output  # status: 1 while the task is not complete
        (line,) = [line for line in output.splitlines() if line.lstrip().startswith("Upper(")]
        assert "corrupt manifest (" in line and "`luisy verify TASK --repair` removes it" in line, output
    status, output, made = _luisy(project, "run", "tam.tasks:Shout")
    assert status == 0 and sorted(made) == sorted(NOTES), output


NESTED = {
    "nest/__init__.py": "",
    "nest/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt", recursive=True)
        class Tree(luisy.ExternalTask):
            def get_folder_name(self):
                return "tree"


        @luisy.interim
        @luisy.requires(Tree)
        @luisy.directory_output(format="txt")
        class Copied(luisy.DirectoryTask):
            def process(self, name, obj):
                return obj.upper()
    ''',
}


@pytest.mark.parametrize("odd", ["file", "fifo"])
def test_a_file_where_a_sub_folder_of_an_output_goes_is_replaced_and_repair_does_not_crash(tmp_path, odd):
    root = write_project(tmp_path, NESTED)
    tree = root / "data" / "nest" / "raw" / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    for rel in ("a/x1.txt", "a/x2.txt", "a/b/y1.txt", "top.txt"):
        (tree / rel).write_text(rel)
    assert run_luisy(["run", "nest.tasks:Copied"], cwd=root).returncode == 0
    out = root / "data" / "nest" / "interim" / "Copied"
    shutil.rmtree(out / "a")
    if odd == "file":
        (out / "a").write_text("junk")
    else:
        os.mkfifo(out / "a")
    (tree / "a" / "x2.txt").write_text("changed")  # the next run publishes into a/ again
    ran = run_luisy(["run", "nest.tasks:Copied"], cwd=root)
    assert ran.returncode == 0 and "Traceback" not in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    repaired = run_luisy(["verify", "nest.tasks:Copied", "--repair"], cwd=root)
    assert "Traceback" not in repaired.stdout + repaired.stderr, repaired.stderr
    assert run_luisy(["run", "nest.tasks:Copied"], cwd=root).returncode == 0
    clean = run_luisy(["verify", "nest.tasks:Copied"], cwd=root)
    assert clean.returncode == 0 and "0 bad" in clean.stdout, clean.stdout
    assert (out / Manifest.read(out).items["a/x2"].file).read_text() == "CHANGED"


@pytest.mark.parametrize("odd", ["file", "fifo"])
def test_a_file_in_place_of_the_output_folder_is_reported_and_replaced_by_the_run(project, odd):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    out = project / "data" / "tam" / "interim" / "Upper"
    shutil.rmtree(out)
    if odd == "file":
        out.write_text("junk")
    else:
        os.mkfifo(out)
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper")
    assert status == 1 and "not a folder: the next run replaces it" in output, output
    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and "Traceback" not in output and sorted(made) == sorted(NOTES), output
    assert out.is_dir() and _luisy(project, "verify", "tam.tasks:Upper")[0] == 0


@pytest.mark.parametrize("lock", ["lock", "writer"])
def test_a_lock_file_replaced_by_a_socket_is_one_line_and_verify_repair_removes_it(project, lock, monkeypatch):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    path = _layer(project) / f".Upper.luisy-{lock}"
    with socket.socket(socket.AF_UNIX) as server, monkeypatch.context() as here:
        here.chdir(path.parent)  # a socket's path may be 107 bytes at most: a temporary folder's can be longer
        server.bind(path.name)
    (project / "data" / "tam" / "raw" / "notes" / "n9.txt").write_text("note 9")

    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 1 and made == [], output
    _no_traceback(output)
    (line,) = [line for line in output.splitlines() if "failed: Upper()" in line]
    assert f"{path} is a socket, not a regular file: remove it" in line
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper")
    assert status == 1 and f"{path} is a socket, not a regular file: no run can lock it" in output, output
    assert path.is_socket(), "verify alone changes nothing"
    status, output, _ = _luisy(project, "verify", "tam.tasks:Upper", "--repair")
    assert status == 0 and not os.path.lexists(path), output
    status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n9"], output


HOLD_WRITER_LOCK = """
import fcntl, sys, time
with open(sys.argv[1], "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(sys.argv[2])
    f.flush()
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@pytest.mark.parametrize(("text", "said"), [
    ("\x1b]0;pwned\x07\x1b[2J x\x1b[31m\n", "another process"),
    ("12 host\x1b[2J\x07\n", "pid 12 on host\\x1b[2J\\x07"),
])
def test_what_the_holder_of_a_writer_lock_wrote_into_it_is_logged_escaped(project, text, said):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    (project / "data" / "tam" / "raw" / "notes" / "n9.txt").write_text("note 9")
    path = _layer(project) / ".Upper.luisy-writer"
    with subprocess.Popen([sys.executable, "-c", HOLD_WRITER_LOCK, os.fspath(path), text, "3"],
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline() == "held\n"
        status, output, made = _luisy(project, "run", "tam.tasks:Upper")
    assert status == 0 and made == ["n9"], output
    (line,) = [line for line in output.splitlines() if "waiting for" in line]
    assert line.endswith(f"waiting for Upper() ({said})"), line
    assert "\x1b" not in output and "\x07" not in output


def _limited(args: list[str], cwd: Path, memory: int) -> subprocess.CompletedProcess:
    """``luisy args`` in a process that cannot allocate more than ``memory`` bytes of data (with
    ``MADE`` as :func:`_luisy` sets it)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))

    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    env["MADE"] = os.fspath(cwd / "made.txt")
    return subprocess.run([str(Path(sys.executable).with_name("luisy")), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)


def test_a_checkpoint_for_other_code_is_read_no_further_than_its_state(project):
    staging = _interrupted(project)
    checkpoint = staging / CHECKPOINT
    checkpoint.write_text("\n" + json.dumps({"state": {"code_fingerprint": "other", "params": {}}}) + "\n")
    _sparse(checkpoint, CHECKPOINT_MAX_BYTES - 1)  # one line of nearly 1 GiB, as luisy could append
    (project / "made.txt").write_text("")
    for command in ("plan", "run"):
        result = _limited([command, "tam.tasks:Upper"], project, 600 << 20)
        assert result.returncode == 0, result.stdout + result.stderr
        _no_traceback(result.stdout + result.stderr)
    assert _published(project) == {name: text.upper() for name, text in NOTES.items()}
    assert (project / "made.txt").read_text().split() == list(NOTES), "nothing taken over"


def test_a_verified_file_longer_than_luisy_writes_for_the_manifest_is_not_read(project):
    assert _luisy(project, "run", "tam.tasks:Upper")[0] == 0
    folder = _layer(project) / "Upper"
    (folder / "n1.txt").write_text("changed")
    assert _luisy(project, "verify", "tam.tasks:Upper")[0] == 1
    verified = folder / ".luisy-verified.json"
    record = json.loads(verified.read_text())
    assert list(record["bad"]) == ["n1"]
    status = json.loads(run_luisy(["status", "tam.tasks:Upper", "--json"], cwd=project).stdout)
    assert [row["bad"] for row in status if row["task"] == "Upper()"] == [1], "what verify wrote is read"
    record["bad"].update({f"x{i}": "item: forged" for i in range(100_000)})  # 2 MB for a 5-item manifest
    verified.write_text(json.dumps(record))
    status = json.loads(run_luisy(["status", "tam.tasks:Upper", "--json"], cwd=project).stdout)
    assert [row["bad"] for row in status if row["task"] == "Upper()"] == [0], status


@pytest.mark.parametrize("odd", ["file", "fifo"])
def test_a_file_in_place_of_a_layer_folder_is_one_line_and_kept(project, odd):
    assert _luisy(project, "run", "tam.tasks:Count")[0] == 0
    layer = project / "data" / "tam" / "interim"
    shutil.rmtree(layer)
    if odd == "file":
        layer.write_text("someone's notes")
    else:
        os.mkfifo(layer)
    for args in (("verify", "tam.tasks:Count"), ("verify", "tam.tasks:Count", "--repair"), ("run", "tam.tasks:Count")):
        status, output, _ = _luisy(project, *args)
        assert "Traceback" not in output, (args, output)
    what = "a regular file" if odd == "file" else "a FIFO"
    assert status == 1 and f"{layer} is {what} where luisy needs a folder: remove it, then run again" in output, output
    assert odd == "fifo" or layer.read_text() == "someone's notes"
