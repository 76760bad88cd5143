"""Damaged, deleted and stray item files: what verify finds, what --repair does, what a downstream run says."""

from __future__ import annotations

import directory_tasks
from conftest import run_luisy, status_rows, write_project
from directory_tasks import PROCESSED, Doubled, Summed, _build, files_of, files_on_disk

import luisy
from luisy.directory import MANIFEST_NAME
from luisy.execution import run as run_tasks
from luisy.status import verify


def test_repair_drops_exactly_the_bad_items_and_the_next_run_makes_them_again(frames):
    _build(Summed())
    folder = Doubled().output().folder
    manifest = Doubled().output().manifest
    (folder / manifest.items["f1"].file).write_bytes(b"damaged")
    (folder / manifest.items["f2"].file).unlink()
    (folder / "stray.txt").write_text("put here by hand")

    checked, problems = verify(Summed())
    assert checked == 8 and len(problems) == 3
    assert [p.split(": ", 1)[1][:9] for p in problems] == ["item 'f1'", "item 'f2'", str(folder)[:9]]
    assert Summed().complete() and Doubled().complete(), "verify alone changes nothing"

    verify(Summed(), repair=True)
    assert sorted(Doubled().output().manifest.items) == ["f0", "f3"]
    assert not (folder / "stray.txt").exists() and not Doubled().complete()
    PROCESSED.clear()
    _build(Summed())
    assert sorted(PROCESSED) == ["f1", "f2"], "only the dropped items are made again"
    assert verify(Summed()) == (8, [])
    assert [d["sum"] for d in Summed().read()] == [0, 8, 16, 24]


def test_repair_of_a_corrupt_manifest_rebuilds_the_output(frames):
    _build(Doubled())
    folder = Doubled().output().folder
    (folder / "stray.txt").write_text("x")
    path = folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    path.write_text(head + "\n" + body.replace("f1", "fX"))  # its digest no longer matches
    _, problems = verify(Doubled(), repair=True)
    assert len(problems) == 1 and "corrupt" in problems[0]
    directory_tasks.PROCESSED.clear()
    _build(Doubled())
    assert sorted(PROCESSED) == ["f0", "f1", "f2", "f3"]
    on_disk = {p.name for p in folder.iterdir()}
    assert on_disk == {MANIFEST_NAME, "f0.npy", "f1.npy", "f2.npy", "f3.npy"}, "the folder was swept"


def test_a_downstream_task_meeting_a_bad_item_file_says_which_and_what_to_do(frames):
    _build(Doubled())
    folder = Doubled().output().folder
    manifest = Doubled().output().manifest
    (folder / manifest.items["f2"].file).write_bytes(b"not an array")
    summary = run_tasks([Summed()], log_level="CRITICAL")
    (line,) = [error for _, error in summary.failed]
    assert f"item 'f2' (input file {folder / 'f2.npy'}) failed: Doubled(): item file" in line
    assert "is damaged (" in line and "`luisy verify TASK --repair` drops bad items" in line

    (folder / manifest.items["f2"].file).unlink()
    summary = run_tasks([Summed()], log_level="CRITICAL")
    (line,) = [error for _, error in summary.failed]
    assert f"item 'f2' (input file {folder / 'f2.npy'}) failed: Doubled(): item file" in line
    assert "is missing; `luisy verify TASK --repair` drops bad items" in line


def test_verify_repair_and_run_verify_on_the_command_line(tmp_path):
    write_project(tmp_path, {"rep/__init__.py": "", "rep/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Upper(luisy.DirectoryTask):
            def process(self, name, obj):
                return obj.upper()
    '''})
    notes = tmp_path / "data" / "rep" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"n{i}.txt").write_text(f"note {i}")
    assert run_luisy(["run", "rep.tasks:Upper"], cwd=tmp_path).returncode == 0
    out = tmp_path / "data" / "Upper"
    (out / "n1.txt").unlink()

    assert status_rows(run_luisy(["status", "rep.tasks:Upper"], cwd=tmp_path).stdout)["Upper()"]["bad"] == ""
    found = run_luisy(["verify", "rep.tasks:Upper"], cwd=tmp_path)
    assert found.returncode == 1 and "item 'n1'" in found.stdout and "3 items checked, 1 bad" in found.stdout
    status = run_luisy(["status", "rep.tasks:Upper"], cwd=tmp_path)
    assert status_rows(status.stdout)["Upper()"]["bad"] == "1", status.stdout
    repaired = run_luisy(["verify", "rep.tasks:Upper", "--repair"], cwd=tmp_path)
    assert repaired.returncode == 0 and "repaired: the next run makes them again" in repaired.stdout
    assert status_rows(run_luisy(["status", "rep.tasks:Upper"], cwd=tmp_path).stdout)["Upper()"]["bad"] == ""
    assert run_luisy(["verify", "rep.tasks:Upper"], cwd=tmp_path).returncode == 0
    assert run_luisy(["run", "rep.tasks:Upper"], cwd=tmp_path).returncode == 0
    assert (out / "n1.txt").read_text() == "NOTE 1"

    (out / "n2.txt").write_text("tampered")
    again = run_luisy(["run", "rep.tasks:Upper", "--verify"], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "item 'n2'" in again.stdout and "1 processed" in again.stdout
    assert (out / "n2.txt").read_text() == "NOTE 2" and luisy.__version__


def test_a_repair_after_a_publish_deletes_nothing_the_new_manifest_lists(frames):
    """verify looks without the publish lock: a publish may come between its look and its repair.
    What it found against the old manifest is checked again under the lock against the new one."""
    import numpy as np

    _build(Doubled())
    output = Doubled().output()
    checked, old = output.current_header(), output.manifest
    for path in frames.glob("*.npy"):  # every item is made again and published
        np.save(path, np.load(path) + 10)
    _build(Doubled())
    new = Doubled().output().manifest
    bad, strays = output.place.check(old)  # what verify finds looking at the old manifest now
    assert sorted(bad) == ["f0", "f1", "f2", "f3"] and len(strays) == 8, "its files moved, the new ones are strays"

    output.repair(bad, strays, checked=checked)
    assert Doubled().output().manifest.items == new.items, "no item of the new publication is dropped"
    assert verify(Doubled()) == (4, [])
    assert files_on_disk(output.folder) == files_of(new), "no file the new manifest lists or keeps is deleted"
    assert Doubled().complete()


def test_a_repair_of_a_manifest_mended_since_leaves_it(frames):
    _build(Doubled())
    output = Doubled().output()
    path = output.folder / MANIFEST_NAME
    sound = path.read_bytes()
    path.write_bytes(sound.replace(b"f1", b"fX"))
    assert output.problem() is not None
    path.write_bytes(sound)  # published again before the repair takes the lock
    output.repair(corrupt=True)
    assert path.read_bytes() == sound and Doubled().complete()
