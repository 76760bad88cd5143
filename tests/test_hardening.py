"""What a tampered, damaged or unlucky directory output may and may not do: real files, real processes.

Each test reproduces one way things went wrong before: a manifest pointing outside its folder, a
sub-folder replaced by a link, an item process that dies, errors taken for "complete", a reader
overtaken by a publish, long names, clashing names, corrupt manifests, leftovers of killed writers,
colliding parameter values.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import luigi
import numpy as np
import pytest
from conftest import run_luisy, write_project

import luisy
from luisy import formats
from luisy.digests import file_digest as checksum
from luisy.directory import MANIFEST_NAME, DirectoryTarget
from luisy.directory.manifest import Manifest
from luisy.errors import FileReadError, ItemNameError, UnsafePathError
from luisy.execution import run as run_tasks
from luisy.status import verify


@luisy.project_name("hard")
@luisy.raw
@luisy.directory_input(pattern="*.npy")
class Inputs(luisy.ExternalTask):
    def get_folder_name(self):
        return "inputs"


@luisy.project_name("hard")
@luisy.interim
@luisy.requires(Inputs)
@luisy.directory_output(format="npy")
class Scaled(luisy.DirectoryTask):
    def process(self, name, obj):
        return obj * 2


@luisy.project_name("hard")
@luisy.interim
@luisy.requires(Inputs)
@luisy.directory_output(format="npy")
class LenientScaled(luisy.DirectoryTask):
    on_error = "skip"

    def process(self, name, obj):
        return obj * 2


def _build(*tasks):
    assert luigi.build(list(tasks), local_scheduler=True, log_level="ERROR")


@pytest.fixture
def inputs(luisy_working_dir):
    folder = luisy_working_dir / "hard" / "raw" / "inputs"
    folder.mkdir(parents=True)
    for i in range(6):
        np.save(folder / f"f{i}.npy", np.full(3, i))
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    """Change the manifest's item lists as an attacker would: the header's length kept consistent."""
    path = folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    header, lists = json.loads(head), json.loads(body)
    edit(lists)
    text = json.dumps(lists)
    if "body_bytes" in header:
        header["body_bytes"] = len(text.encode())
        header["body_digest"] = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    path.write_text(json.dumps(header) + "\n" + text)


def _rewrite(folder: Path, name: str, value: int) -> None:
    np.save(folder / f"{name}.npy", np.full(3, value))
    os.utime(folder / f"{name}.npy", ns=(value + 7, value + 7))


# 1. Nothing outside the output folder is read, written or deleted.

@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_manifest_listing_files_outside_its_folder_is_never_followed(inputs, luisy_working_dir, where):
    victim = luisy_working_dir / "victim.npy"
    np.save(victim, np.arange(3))
    before = victim.read_bytes()
    _build(Scaled())
    folder = Scaled().output().folder
    entry = "../../../victim.npy" if where == "relative" else str(victim)
    _edit_manifest(folder, lambda lists: lists["files"].__setitem__(0, entry))
    assert (folder / entry).resolve() == victim.resolve()

    with pytest.raises(luisy.LuisyError, match="corrupt.*victim"):
        list(Scaled().output().items())
    _rewrite(inputs, "f0", 50)  # the item whose entry was bent is replaced...
    (inputs / "f1.npy").unlink()  # ...and one is removed: both would delete old files
    _build(Scaled())
    assert victim.read_bytes() == before
    assert [int(a[0]) for _, a in Scaled().output().items()] == [100, 4, 6, 8, 10]


def test_a_sub_folder_replaced_by_a_link_is_not_followed(luisy_working_dir):
    elsewhere = luisy_working_dir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.txt").write_text("precious")
    version = ["one"]

    @luisy.project_name("hard")
    @luisy.directory_output(format="txt")
    class Parts(luisy.DirectoryTask):
        def run(self):
            with self.output().writer(self) as writer:
                for i in range(2):
                    writer.write(f"part/{i}", f"{version[0]} {i}")

    Parts().run()
    folder = Parts().output().folder
    for file in (folder / "part").iterdir():
        file.unlink()
    (folder / "part").rmdir()
    (folder / "part").symlink_to(elsewhere)

    with pytest.raises(UnsafePathError, match="leads outside"):
        list(Parts().output().items())
    version[0] = "two"
    Parts().run()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["0.txt"] and (elsewhere / "0.txt").read_text() == "precious"
    assert not (folder / "part").is_symlink()
    assert dict(Parts().output().items()) == {"part/0": "two 0", "part/1": "two 1"}


@pytest.mark.parametrize("swap", ["link outside", "link inside", "FIFO", "folder"])
def test_an_item_file_swapped_for_something_else_is_read_only_if_it_stays_inside(luisy_working_dir, swap):
    outside = luisy_working_dir / "outside.json"
    outside.write_text('"secret"')

    @luisy.project_name("hard")
    @luisy.directory_output(format="json")
    class Items(luisy.DirectoryTask):
        def run(self):
            with self.output().writer(self) as writer:
                for name in ("a", "b"):
                    writer.write(name, [name])

    Items().run()
    folder = Items().output().folder
    item = folder / "a.json"
    item.unlink()
    if swap == "link outside":
        item.symlink_to(outside)
    elif swap == "link inside":
        item.symlink_to(folder / "b.json")
    elif swap == "FIFO":
        os.mkfifo(item)
    else:
        item.mkdir()

    if swap == "link outside":
        with pytest.raises(UnsafePathError, match="a.json leads outside"):
            dict(Items().output().items())
    elif swap == "link inside":
        assert dict(Items().output().items()) == {"a": ["b"], "b": ["b"]}
    else:
        with pytest.raises(luisy.LuisyError, match=f"a.json is a {swap}, not a regular file"):
            dict(Items().output().items())


# 2. An item process that dies is a failed item, not a hang.

DYING = {
    "dying/__init__.py": "",
    "dying/tasks.py": '''
        import os, sys
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Fragile(luisy.DirectoryTask):
            how = luisy.Parameter(default="kill")
            processes = 2
            on_error = "skip"

            def process(self, name, obj):
                if name == "n3":
                    if self.how == "kill":
                        os.kill(os.getpid(), 9)
                    if self.how == "exit":
                        sys.exit(3)
                    if self.how == "segfault":
                        import ctypes
                        ctypes.string_at(0)
                return obj.upper()


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Strict(Fragile):
            on_error = "raise"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Upper(luisy.DirectoryTask):
            def process(self, name, obj):
                return obj.upper()


        @luisy.final
        @luisy.requires(Upper)
        @luisy.directory_output(format="json")
        class Lengths(luisy.DirectoryTask):
            def process(self, name, obj):
                return {"length": len(obj)}
    ''',
}


@pytest.fixture
def dying(tmp_path):
    write_project(tmp_path, DYING)
    notes = tmp_path / "data" / "dying" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(10):
        (notes / f"n{i}.txt").write_text(f"note {i}")
    return tmp_path


def _run_with_deadline(args, cwd):
    script = Path(sys.executable).with_name("luisy")
    try:
        return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"luisy {' '.join(args)} hung")


@pytest.mark.parametrize("how,death", [("kill", "signal 9"), ("exit", "exit code 3"), ("segfault", "signal 11")])
def test_a_dying_item_process_fails_its_item_and_the_run_goes_on(dying, how, death):
    result = _run_with_deadline(["run", "dying.tasks:Fragile", "--how", how], dying)
    assert result.returncode == 1, result.stdout + result.stderr
    folder = dying / "data" / "dying" / "interim" / f"Fragile_how={how}"
    manifest = Manifest.load(folder)
    assert manifest.failed == {"n3": f"worker process died ({death})"}
    assert sorted(manifest.items) == [f"n{i}" for i in range(10) if i != 3]
    assert (folder / "n7.txt").read_text() == "NOTE 7"


def test_a_dying_item_process_fails_the_task_under_raise(dying):
    result = _run_with_deadline(["run", "dying.tasks:Strict"], dying)
    assert result.returncode == 1
    assert "item 'n3' (input file" in result.stdout and "failed: worker process died (signal 9)" in result.stdout
    assert not any((dying / "data" / "dying" / "interim").glob("*/" + MANIFEST_NAME))


# 3. complete() passes on only "the input is missing".

@luisy.project_name("hard")
@luisy.raw
@luisy.directory_input(pattern="*", recursive=True)
class Anything(luisy.ExternalTask):
    def get_folder_name(self):
        return "anything"


@luisy.project_name("hard")
@luisy.interim
@luisy.requires(Anything)
@luisy.directory_output(format="pkl")
class FromAnything(luisy.DirectoryTask):
    def process(self, name, obj):
        return name


@pytest.fixture
def anything(luisy_working_dir):
    folder = luisy_working_dir / "hard" / "raw" / "anything"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros(2))
    np.save(folder / "b.npy", np.ones(2))
    return folder


def test_an_input_listing_error_is_not_taken_for_complete(anything):
    _build(FromAnything())
    assert FromAnything().complete()
    np.save(anything / "c.npy", np.ones(2))
    (anything / "a.csv").write_text("x\n1\n")
    with pytest.raises(FileReadError, match=r"a\.csv and a\.npy would both be item 'a'|a\.npy and a\.csv"):
        FromAnything().complete()
    summary = run_tasks([FromAnything()], log_level="ERROR")
    assert not summary.ok
    assert any("would both be item 'a'" in line for line in summary.lines()), summary.lines()


def test_plan_status_and_run_show_an_input_listing_error_in_one_line(tmp_path):
    write_project(tmp_path, {"clash/__init__.py": "", "clash/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*")
        class Files(luisy.ExternalTask):
            def get_folder_name(self):
                return "files"


        @luisy.requires(Files)
        @luisy.directory_output(format="txt")
        class Copied(luisy.DirectoryTask):
            def process(self, name, obj):
                return str(obj)
    '''})
    files = tmp_path / "data" / "clash" / "raw" / "files"
    files.mkdir(parents=True)
    (files / "a.txt").write_text("a")
    assert run_luisy(["run", "clash.tasks:Copied"], cwd=tmp_path).returncode == 0
    (files / "c.txt").write_text("c")
    (files / "a.csv").write_text("x\n1\n")
    expected = "a.csv and a.txt would both be item 'a'"
    for command in ("plan", "status"):
        result = run_luisy([command, "clash.tasks:Copied"], cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result
    result = run_luisy(["run", "clash.tasks:Copied"], cwd=tmp_path)
    assert result.returncode == 1 and f"failed: Copied(): Files(): {expected}" in result.stdout, result.stdout


def test_a_symlink_loop_in_a_recursive_input_is_an_error(anything):
    _build(FromAnything())
    (anything / "sub").mkdir()
    (anything / "sub" / "loop").symlink_to(anything)
    with pytest.raises(FileReadError, match="loop"):
        FromAnything().complete()


def test_a_missing_input_still_counts_as_complete_for_luigi_to_report(anything):
    _build(FromAnything())
    for file in anything.iterdir():
        file.unlink()
    anything.rmdir()
    assert FromAnything().complete()


# 4. Readers of the previous manifest are not disturbed by a publish.

def test_a_reader_of_the_previous_manifest_reads_it_to_the_end(inputs):
    for i in range(6, 40):
        np.save(inputs / f"f{i}.npy", np.full(3, i))
    _build(Scaled())
    reader = Scaled().output().items()
    first = [next(reader) for _ in range(5)]
    for i in range(40):  # every item changes, and is republished by another run
        _rewrite(inputs, f"f{i}", 1000 + i)
    _build(Scaled())
    seen = dict(first + list(reader))
    assert {name: int(a[0]) for name, a in seen.items()} == {f"f{i}": 2 * i for i in range(40)}
    assert {int(a[0]) for _, a in Scaled().output().items()} == {2000 + 2 * i for i in range(40)}


@pytest.mark.slow
def test_concurrent_runs_of_one_pipeline_all_succeed(tmp_path):
    write_project(tmp_path, DYING)
    notes = tmp_path / "data" / "dying" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(300):
        (notes / f"n{i:03d}.txt").write_text("x" * i)
    script = Path(sys.executable).with_name("luisy")
    runs = [subprocess.Popen([str(script), "run", "dying.tasks:Lengths", "--workers", "2"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(6)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, "\n".join(outputs)
    folder = tmp_path / "data" / "dying" / "final" / "Lengths"
    items = Manifest.load(folder).items
    lengths = {name: json.loads((folder / items[name].file).read_text())["length"] for name in items}
    assert lengths == {f"n{i:03d}": i for i in range(300)}


# 5. Long names.

def test_items_and_outputs_with_names_of_255_bytes(luisy_working_dir):
    long_item = "i" * 251  # .npy makes 255 bytes
    folder = luisy_working_dir / "hard" / "raw" / "inputs"
    folder.mkdir(parents=True)
    np.save(folder / f"{long_item}.npy", np.full(3, 1))
    _build(Scaled())
    _rewrite(folder, long_item, 2)
    _build(Scaled())
    assert [int(a[0]) for _, a in Scaled().output().items()] == [4]

    @luisy.project_name("hard")
    @luisy.interim
    @luisy.text_output
    class LongFile(luisy.Task):
        def get_file_name(self):
            return "t" * 251  # .txt makes 255 bytes

        def run(self):
            self.write("hello")

    @luisy.project_name("hard")
    @luisy.requires(Inputs)
    @luisy.directory_output(format="npy")
    class LongFolder(Scaled):
        def get_folder_name(self):
            return "d" * 255

    _build(LongFile(), LongFolder())
    assert LongFile().read() == "hello" and len(LongFolder().output()) == 1


# 6. Two input names, one item file.

def test_two_inputs_that_would_share_an_item_file_give_one_clear_error(inputs):
    np.save(inputs / "f1.npy.npy", np.zeros(3))
    task = Scaled()
    with pytest.raises(ItemNameError, match=r"input files .*f1\.npy and .*f1\.npy\.npy would both be written "
                                            r"to 'f1\.npy'"):
        task.run()
    assert not task.output().exists()


def test_an_input_items_of_its_own_giving_one_name_twice_is_one_clear_error(inputs):
    from luisy.sources import SourceItem

    class Twice(Scaled):
        def input_items(self):
            return [SourceItem("x", str(i), str(inputs / f"f{i}.npy"), np.load) for i in (0, 1)]

    task = Twice()
    with pytest.raises(ItemNameError, match=r"input files .*f0\.npy and .*f1\.npy would both be written to 'x\.npy'"):
        task.run()
    assert not task.output().exists()


def test_a_writer_given_two_names_for_one_file_says_so(tmp_path):
    target = DirectoryTarget(tmp_path / "out", file_format=formats.TEXT, owner="W()")
    with pytest.raises(ItemNameError, match=r"W\(\): items 'a' and 'a\.txt' would both be written to 'a\.txt'"):
        with target.writer() as writer:
            writer.write("a", "one")
            writer.write("a.txt", "two")
    assert not target.exists()


# 7. Corrupt manifests.

@pytest.mark.parametrize("damage", ["truncated body", "header 1", 'header "x"', "body of the wrong shape"])
def test_a_corrupt_manifest_reruns_the_task_and_verify_reports_it(inputs, damage):
    _build(Scaled())
    folder = Scaled().output().folder
    path = folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    if damage == "truncated body":
        path.write_text(head + "\n" + body[: len(body) // 2])
    elif damage.startswith("header"):
        path.write_text(damage.split(" ", 1)[1] + "\n" + body)
    else:
        path.write_text(head + "\n" + json.dumps({"items": 5}))
    assert not Scaled().complete()
    checked, problems = verify(Scaled())
    assert len(problems) == 1 and "corrupt" in problems[0], problems
    assert str(path) in problems[0]
    _build(Scaled())
    assert Scaled().complete() and [int(a[0]) for _, a in Scaled().output().items()] == [0, 2, 4, 6, 8, 10]


def test_verify_on_the_command_line_reports_a_corrupt_manifest(tmp_path):
    write_project(tmp_path, DYING)
    notes = tmp_path / "data" / "dying" / "raw" / "notes"
    notes.mkdir(parents=True)
    (notes / "n0.txt").write_text("x")
    assert run_luisy(["run", "dying.tasks:Fragile"], cwd=tmp_path).returncode == 0
    manifest = next((tmp_path / "data").rglob(MANIFEST_NAME))
    manifest.write_text(manifest.read_text()[:-20])
    result = run_luisy(["verify", "dying.tasks:Fragile"], cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "corrupt" in result.stdout


@pytest.mark.parametrize("where", ["header", "body"])
def test_a_huge_junk_manifest_is_rejected_without_reading_it(inputs, where):
    _build(Scaled())
    path = Scaled().output().folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    with open(path, "w") as f:
        if where == "header":
            f.write(head[:-1])
        else:
            f.write(head + "\n" + body)
        for _ in range(200):
            f.write("x" * (1 << 20))
    growth = _peak_rss_growth_mb(f"""
        from luisy.directory import DirectoryTarget
        assert Manifest.load_header({str(path.parent)!r}) is None
        assert Manifest.load({str(path.parent)!r}) is None
        assert "corrupt" in DirectoryTarget({str(path.parent)!r}).problem()
    """)
    assert growth < 50, f"peak RSS grew by {growth} MB"


def _peak_rss_growth_mb(statements: str) -> int:
    """Run ``statements`` (``Manifest`` imported) in a fresh process; how much its peak RSS grew, in MB."""
    code = "import resource\nfrom luisy.directory.manifest import Manifest\n" \
           "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n" + textwrap.dedent(statements) + \
           "\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout) // 1024


# 8. Leftovers of killed writers are removed by the next run; verify reports unlisted files.

def test_a_killed_single_file_write_leaves_nothing_after_the_next_run(tmp_path):
    write_project(tmp_path, {
        "leaky/__init__.py": "",
        "leaky/tasks.py": '''
            import luisy


            @luisy.text_output
            class Report(luisy.Task):
                def run(self):
                    self.write("report " * 1000)
        ''',
    })
    (tmp_path / "data").mkdir()
    killed = textwrap.dedent("""
        import os, luisy
        from luisy import formats
        from leaky.tasks import Report

        def write(obj, path, **options):
            with open(path, "w") as f:
                f.write(obj[:100])
                f.flush()
                os.kill(os.getpid(), 9)  # killed half way through writing

        formats.TEXT.write = write
        luisy.build([Report()], log_level="ERROR")
    """)
    child = subprocess.run([sys.executable, "-c", killed], cwd=tmp_path, capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".luisy-tmp-")]
    assert leftovers, "the killed write left its temporary file"
    assert run_luisy(["run", "leaky.tasks:Report"], cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.is_file()) == ["Report.txt"]


def test_a_publish_killed_before_its_cleanup_is_finished_by_the_next_run(inputs, luisy_working_dir, tmp_path):
    _build(Scaled())
    _rewrite(inputs, "f1", 70)
    marker = tmp_path / "reached"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import luisy
        from luisy.directory import local as target
        from test_hardening import Scaled
        luisy.set_working_dir({str(luisy_working_dir)!r})

        def retire(*args, **kwargs):
            open({str(marker)!r}, "w").close()
            time.sleep(120)

        target.retire = retire
        Scaled().run()
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists(), "the child never reached the cleanup"
    finally:
        child.kill()
        child.wait()
    _, problems = verify(Scaled())
    assert problems == [f"{Scaled()}: {Scaled().output().folder / 'f1.npy'} is not listed in the manifest"]
    assert luisy.build([Scaled()], log_level="ERROR")  # complete: nothing runs, the interrupted publish is finished
    folder = Scaled().output().folder
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    manifest = Scaled().output().manifest
    assert on_disk == {MANIFEST_NAME, *manifest.items.files, *(f".luisy-retired/{f}" for f in manifest.retired)}
    assert verify(Scaled())[1] == []
    for name, item in manifest.items.items():
        assert checksum(folder / item.file) == item.checksum, name


# 9. Smaller: file names of parameter values, reserved item names, exit status without retries.

def test_parameter_values_that_rendered_alike_get_files_of_their_own(luisy_working_dir):
    @luisy.project_name("hard")
    @luisy.pickle_output
    class P(luisy.Task):
        x = luisy.Parameter()

        def run(self):
            self.write(self.x)

    values = ["a/b", "a b", "a_b", "a_b~1", "None"]
    paths = {P(x=v).output().path for v in values}
    assert len(paths) == len(values)
    assert Path(P(x="a_b").output().path).name == "P_x=a_b.pkl", "values without special characters keep 1.x names"
    _build(*(P(x=v) for v in values))
    assert [P(x=v).read() for v in values] == values


def test_an_input_whose_name_luisy_cannot_use_is_rejected_before_any_work(inputs):
    np.save(inputs / "back\\slash.npy", np.zeros(3))
    task = LenientScaled()
    with pytest.raises(UnsafePathError, match=r"input file .*back\\slash\.npy gives the item name"):
        task.run()
    assert not task.output().exists()


def test_no_retry_failed_still_exits_1_while_items_fail(tmp_path):
    write_project(tmp_path, DYING)
    notes = tmp_path / "data" / "dying" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(5):
        (notes / f"n{i}.txt").write_text(f"note {i}")
    assert run_luisy(["run", "dying.tasks:Fragile", "--how", "exit"], cwd=tmp_path).returncode == 1
    again = run_luisy(["run", "dying.tasks:Fragile", "--how", "exit", "--no-retry-failed"], cwd=tmp_path)
    assert again.returncode == 1, again.stdout
    assert "1 failed" in again.stdout


# Found by an attack run on the above: links at luisy's own files, dying workers, odd manifests.

def test_a_link_at_the_retired_folder_is_not_followed(inputs, luisy_working_dir):
    _build(Scaled())
    victim = luisy_working_dir / "victim"
    victim.mkdir()
    (victim / "f1.npy").write_text("precious")
    (Scaled().output().folder / ".luisy-retired").symlink_to(victim)
    _rewrite(inputs, "f1", 40)
    _build(Scaled())
    assert [p.name for p in victim.iterdir()] == ["f1.npy"] and (victim / "f1.npy").read_text() == "precious"
    assert not (Scaled().output().folder / ".luisy-retired").is_symlink()
    assert int(dict(Scaled().output().items())["f1"][0]) == 80


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_at_the_lock_file_does_not_touch_its_target(inputs, luisy_working_dir, link):
    _build(Scaled())
    victim = luisy_working_dir / "victim.txt"
    victim.write_text("precious")
    lock = Scaled().output().folder.with_name(".Scaled.luisy-lock")
    assert not lock.exists(), "a finished run leaves no lock file"
    if link == "symbolic":
        lock.symlink_to(victim)
    else:
        os.link(victim, lock)
    _rewrite(inputs, "f1", 40)
    _build(Scaled())
    assert victim.read_text() == "precious"
    assert int(dict(Scaled().output().items())["f1"][0]) == 80


def test_item_processes_end_when_the_run_is_killed(dying, tmp_path):
    (dying / "dying" / "slow.py").write_text(textwrap.dedent('''
        import os, time
        import luisy
        from dying.tasks import Notes


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Slow(luisy.DirectoryTask):
            processes = 2

            def process(self, name, obj):
                with open(os.path.join(os.environ["PIDS"], str(os.getpid())), "w"):
                    pass
                time.sleep(0.3)
                return obj
    '''))
    pids = tmp_path / "pids"
    pids.mkdir()
    script = Path(sys.executable).with_name("luisy")
    run = subprocess.Popen([str(script), "run", "dying.slow:Slow"], cwd=dying, env={**os.environ, "PIDS": str(pids)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if len(list(pids.iterdir())) >= 2:
            break
        time.sleep(0.05)
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) >= 2, "the item processes never started"
    run.kill()
    run.wait()
    for _ in range(100):
        alive = [pid for pid in workers if _alive(pid)]
        if not alive:
            break
        time.sleep(0.05)
    assert alive == [], "item processes outlived the run"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _exits_on_odd(index):
    from luisy.executors.local import ItemStatus, Outcome

    if index % 2:
        sys.exit(5)
    return Outcome(ItemStatus.OK, index)


@pytest.mark.slow
def test_workers_dying_between_chunks_never_break_the_pool():
    from luisy.executors.local import ItemStatus, ProcessExecutor

    for _ in range(3):
        outcomes = list(ProcessExecutor(2).map(_exits_on_odd, 100))
        assert sorted(o.index for o in outcomes) == list(range(100))
        assert sum(o.status is ItemStatus.FAIL for o in outcomes) == 50


def test_item_processes_may_start_processes_of_their_own(dying):
    (dying / "dying" / "nested.py").write_text(textwrap.dedent('''
        import multiprocessing
        import luisy
        from dying.tasks import Notes


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="txt")
        class Nested(luisy.DirectoryTask):
            processes = 2

            def process(self, name, obj):
                with multiprocessing.get_context("fork").Pool(1) as pool:
                    return pool.apply(str.upper, (obj,))
    '''))
    result = _run_with_deadline(["run", "dying.nested:Nested"], dying)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("odd", ["nested JSON", "a folder", "a pipe"])
def test_an_odd_manifest_is_corrupt_and_replaced(inputs, odd):
    _build(Scaled())
    path = Scaled().output().folder / MANIFEST_NAME
    path.unlink()
    if odd == "nested JSON":
        path.write_text("[" * 100_000 + "]" * 100_000 + "\n{}")
    elif odd == "a folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    assert not Scaled().complete()
    _, problems = verify(Scaled())
    assert len(problems) == 1 and "corrupt" in problems[0], problems
    _build(Scaled())
    assert Scaled().complete() and path.is_file() and len(Scaled().output()) == 6


@pytest.mark.slow
def test_a_sparse_body_of_a_huge_declared_length_is_checked_in_small_memory(inputs):
    _build(Scaled())
    path = Scaled().output().folder / MANIFEST_NAME
    head, body = path.read_text().split("\n")
    header = json.loads(head)
    header["body_bytes"] = 1 << 30
    line = json.dumps(header) + "\n"
    path.write_text(line)
    os.truncate(path, len(line) + (1 << 30))
    growth = _peak_rss_growth_mb(f"assert Manifest.load_header({str(path.parent)!r}) is None")
    assert growth < 50, f"peak RSS grew by {growth} MB"


def test_list_values_that_render_alike_get_files_of_their_own(luisy_working_dir):
    @luisy.project_name("hard")
    class L(luisy.Task):
        x = luisy.ListParameter()

    names = {L(x=x).get_file_name() for x in ([1, 2], ["1", "2"], [1.5], ["1.5"], ["True"], [True])}
    assert len(names) == 6
    assert L(x=[1, 2]).get_file_name() == "L_x=1_2" and L(x=["a", "b"]).get_file_name() == "L_x=a_b"


def test_an_item_that_would_be_a_file_and_a_folder_is_one_clear_error(anything):
    np.save(anything / "x.npy", np.zeros(2))  # item 'x' → x.pkl
    (anything / "x.pkl").mkdir()
    np.save(anything / "x.pkl" / "q.npy", np.zeros(2))  # item 'x.pkl/q' → x.pkl/q.pkl
    with pytest.raises(ItemNameError, match=r"would need 'x\.pkl' to be both a file and a folder"):
        FromAnything().run()


def test_names_too_long_for_a_file_system_are_rejected_before_any_work(inputs, luisy_working_dir):
    @luisy.project_name("hard")
    @luisy.interim
    @luisy.requires(Inputs)
    @luisy.directory_output(format="json")
    class AsJson(luisy.DirectoryTask):
        def process(self, name, obj):
            return obj.tolist()

    np.save(inputs / ("a" * 251 + ".npy"), np.zeros(1))  # 255 bytes in; 256 bytes out as .json
    with pytest.raises(UnsafePathError, match=r"longer than the 255 bytes"):
        AsJson().run()

    @luisy.project_name("hard")
    class Wordy(luisy.Task):
        text = luisy.Parameter()

    with pytest.raises(UnsafePathError, match=r"is 3\d\d bytes long, file systems allow 255"):
        Wordy(text="w" * 300).output()


def test_writers_in_another_pid_namespace_do_not_share_this_ones_temp_names(tmp_path):
    from luisy.atomic import temp_sibling

    here = temp_sibling(tmp_path / "out").name
    code = f"from luisy.atomic import temp_sibling; print(temp_sibling({str(tmp_path / 'out')!r}).name)"
    result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    there = result.stdout.strip()
    assert here.split(".")[1] != there.split(".")[1], "the writer's tag must tell the namespaces apart"


@pytest.mark.slow
def test_the_publish_lock_excludes_other_processes_though_its_file_comes_and_goes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    script = textwrap.dedent(f"""
        from pathlib import Path
        from luisy.directory.local import _publish_lock
        for _ in range(300):
            with _publish_lock(Path({str(tmp_path / "out")!r})):
                value = int(open({str(counter)!r}).read())
                open({str(counter)!r}, "w").write(str(value + 1))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert counter.read_text() == "900", "no increment was lost"
    assert not (tmp_path / ".out.luisy-lock").exists()
