"""``luisy graph``, ``status``, ``verify`` and scheduler errors, through the real command"""

from __future__ import annotations

import json
import socket

import pytest
from conftest import require_program, run_luisy, write_project

PROJECT = {
    "insp/__init__.py": "",
    "insp/tasks.py": '''
        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="json")
        class Parsed(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, obj):
                if "bad" in obj:
                    raise ValueError("cannot parse " + name)
                return {"words": len(obj.split())}


        @luisy.final
        @luisy.requires(Parsed)
        @luisy.json_output
        class Words(luisy.Task):
            def run(self):
                self.write({"total": sum(item["words"] for item in self.input().read())})
    ''',
}


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "insp" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"n{i}.txt").write_text("a b c " * (i + 1))
    return tmp_path


def test_graph_text_and_dot(project):
    before = run_luisy(["graph", "insp.tasks:Words"], cwd=project)
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        "Words()  [to run]",
        "└── Parsed()  [to run]",
        "    └── Notes()  [input]",
    ]
    assert run_luisy(["run", "insp.tasks:Words"], cwd=project).returncode == 0
    after = run_luisy(["graph", "insp.tasks:Words"], cwd=project).stdout
    assert "Parsed()  [complete, 3 items]" in after
    dot = run_luisy(["graph", "insp.tasks:Words", "--format", "dot", "-o", "g.dot"], cwd=project)
    text = (project / "g.dot").read_text()
    assert dot.returncode == 0 and text.startswith("digraph luisy {")
    assert '[label="Parsed()\\ncomplete, 3 items"' in text and '"Parsed__99914b932b" -> "Words__99914b932b";' in text


def test_graph_svg_without_graphviz_names_what_to_install(project):
    no_graphviz = {"PATH": str(project / "empty-path")}  # `dot` cannot be found
    result = run_luisy(["graph", "insp.tasks:Words", "--format", "svg", "-o", "g.svg"], cwd=project, env=no_graphviz)
    assert result.returncode == 2 and "apt-get install graphviz" in result.stderr
    assert not (project / "g.svg").exists()


def test_graph_svg_and_png_with_graphviz(project):
    require_program("dot", "graphviz")
    assert run_luisy(["graph", "insp.tasks:Words", "--format", "svg", "-o", "g.svg"], cwd=project).returncode == 0
    assert "<svg" in (project / "g.svg").read_text() and "Parsed()" in (project / "g.svg").read_text()
    assert run_luisy(["graph", "insp.tasks:Words", "--format", "png", "-o", "g.png"], cwd=project).returncode == 0
    assert (project / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_items_status_table_and_retries(project):
    (project / "data" / "insp" / "raw" / "notes" / "n9.txt").write_text("bad")
    run = run_luisy(["run", "insp.tasks:Words"], cwd=project)
    assert run.returncode == 1, run.stdout + run.stderr  # an item failed
    assert run.stdout.startswith("complete except 1 failed item(s), retried by the next run: Words()")
    assert "items: Parsed(): 4 processed, 1 failed (3 in the output)" in run.stdout
    words = json.loads((project / "data" / "insp" / "final" / "Words.json").read_text())
    assert words == {"total": 3 + 6 + 9}, "downstream ran on the items that worked"

    result = run_luisy(["status", "insp.tasks:Words"], cwd=project)
    assert result.returncode == 1
    header, notes, parsed, words_row = result.stdout.splitlines()
    assert header.split()[:4] == ["task", "complete", "items", "failed"]
    assert notes.split()[:2] == ["Notes()", "yes"] and notes.endswith("input")
    assert parsed.split()[:4] == ["Parsed()", "no", "3", "1"] and parsed.endswith("1 failed items to retry")
    assert words_row.split()[:2] == ["Words()", "no"] and "upstream changed: Parsed()" in words_row

    # The next run retries exactly the failed item; with --no-retry-failed nothing is retried.
    again = run_luisy(["run", "insp.tasks:Words"], cwd=project)
    assert "items: Parsed(): 1 processed, 1 failed (3 in the output)" in again.stdout
    settled = run_luisy(["run", "insp.tasks:Words", "--no-retry-failed"], cwd=project)
    assert settled.returncode == 1, "failed items remain, though luigi found Words complete"
    assert settled.stdout.startswith("complete except 1 failed item(s), not retried (--no-retry-failed): Words()")
    assert "ran:" not in settled.stdout

    (project / "data" / "insp" / "raw" / "notes" / "n9.txt").write_text("now fine")
    fixed = run_luisy(["run", "insp.tasks:Words"], cwd=project)
    assert fixed.returncode == 0 and "items: Parsed(): 1 processed, 0 failed (4 in the output)" in fixed.stdout


def test_verify_finds_changed_and_missing_items(project):
    assert run_luisy(["run", "insp.tasks:Words"], cwd=project).returncode == 0
    ok = run_luisy(["verify", "insp.tasks:Words"], cwd=project)
    assert ok.returncode == 0 and ok.stdout.strip() == "3 items checked, 0 bad"
    folder = project / "data" / "insp" / "interim" / "Parsed"
    (folder / "n0.json").write_text('{"words": 999}')
    (folder / "n1.json").unlink()
    bad = run_luisy(["verify", "insp.tasks:Words"], cwd=project)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert any("item 'n0'" in line and ("checksum" in line or "bytes" in line) for line in lines)
    assert any("item 'n1'" in line and "is missing" in line for line in lines)
    assert lines[-1] == "3 items checked, 2 bad"


def test_unreachable_scheduler_is_one_line_naming_the_url(project):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = run_luisy(["run", "insp.tasks:Words", "--scheduler-url", url], cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[0]
    ] and f"cannot reach the luigi central scheduler at {url}" in result.stderr


@pytest.mark.parametrize("command", ["run", "plan", "graph", "status", "verify", "scheduler"])
def test_every_command_has_help_with_an_example(project, command):
    result = run_luisy([command, "--help"], cwd=project)
    assert result.returncode == 0 and "Example:" in result.stdout
