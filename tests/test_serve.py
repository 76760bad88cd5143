"""``luisy serve``: a real server process on a free port, read by a real Chromium (playwright)
and over HTTP: what a person sees, the page following a build live, and each security rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, require_program, run_luisy, write_project

pytestmark = pytest.mark.slow  # see pyproject.toml: servers, builds and a browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EVIL = "<img src=x onerror=window.pwned=1>"

PROJECT = {
    "lab/__init__.py": "",
    "lab/tasks.py": '''
        import os
        import time

        import luisy


        @luisy.raw
        @luisy.directory_input(pattern="*.txt")
        class Notes(luisy.ExternalTask):
            def get_folder_name(self):
                return "notes"


        def measure(text):
            if text.startswith("bad"):
                raise ValueError("cannot measure " + text.strip())
            return {"length": len(text)}


        @luisy.interim
        @luisy.requires(Notes)
        @luisy.directory_output(format="json")
        class Lengths(luisy.DirectoryTask):
            on_error = "skip"

            def process(self, name, text):
                time.sleep(float(os.environ.get("ITEM_SECONDS", "0")))
                return measure(text)


        @luisy.final
        @luisy.requires(Lengths)
        @luisy.json_output
        class Total(luisy.ReduceTask):
            def initial(self):
                return {"total": 0}

            def fold(self, state, name, item):
                return {"total": state["total"] + item["length"]}

            def unfold(self, state, name, item):
                return {"total": state["total"] - item["length"]}


        @luisy.final
        @luisy.requires(Total)
        @luisy.json_output
        class Scaled(luisy.Task):
            factor = luisy.IntParameter(default=2, description="what the total is multiplied by")
            unit = luisy.ChoiceParameter(choices=["chars", "kchars"], default="chars", description="unit of the result")
            rounded = luisy.BoolParameter(default=False)

            def run(self):
                total = self.input().read()["total"] * self.factor
                self.write({"value": total / 1000 if self.unit == "kchars" else total, "rounded": self.rounded})
    ''',
}


@pytest.fixture
def lab(tmp_path) -> Path:
    write_project(tmp_path, PROJECT)
    notes = tmp_path / "data" / "lab" / "raw" / "notes"
    notes.mkdir(parents=True)
    for i in range(5):
        (notes / f"n{i}.txt").write_text("x" * (i + 1))
    (notes / "broken.txt").write_text("bad note")
    (notes / f"{EVIL}.txt").write_text("tricky")
    made = run_luisy(["run", "lab.tasks:Total"], cwd=tmp_path)
    assert "complete except 1 failed item(s)" in made.stdout, made.stdout + made.stderr
    return tmp_path


class Server:
    """``luisy serve`` in a child process, until stopped."""

    def __init__(self, cwd: Path, *args: str, host: str = "127.0.0.1", task: str = "lab.tasks:Total") -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
        self.process = subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "serve", task,
                                         "--port", str(self.port), "--host", host, *args], cwd=cwd, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.said = self.process.stdout.readline()
        deadline = time.monotonic() + 30
        while self.status("/api/status", headers=self._auth()) is None:
            assert self.process.poll() is None and time.monotonic() < deadline, self.said + self.process.stdout.read()
            time.sleep(0.1)

    def _auth(self) -> dict[str, str]:
        token = self.said.partition("?token=")[2].split()[0] if "?token=" in self.said else None
        return {"Authorization": f"Bearer {token}"} if token else {}

    def status(self, path: str, headers: dict[str, str] | None = None) -> int | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers or {}), timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def json(self, path: str) -> object:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=self._auth()), timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(lab) -> Iterator[Server]:
    running = Server(lab)
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = require_program("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield launched
        finally:
            launched.close()


def test_the_page_shows_the_pipeline_and_a_failed_item_with_its_traceback(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(server.url + "/")
    table = page.locator("table").first
    for task in ("Notes()", "Lengths()", "Total()"):
        expect(table).to_contain_text(task)
    expect(page.locator("svg")).to_contain_text("Lengths")
    # Its failed item is retried by the next run: not complete, and the page says why.
    expect(page.locator('span.state[data-task-id^="Lengths"]')).to_have_text("stale")
    row = table.locator("tr").filter(has=page.get_by_role("link", name="Lengths()", exact=True))
    expect(row).to_contain_text("1 failed items to retry")
    expect(page.locator('span.state[data-task-id^="Notes"]')).to_have_text("input")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-pipeline.png"))

    page.get_by_role("link", name="Lengths()").click()
    expect(page.locator("h1")).to_have_text("Lengths()")
    expect(page.locator("body")).to_contain_text("6 items, 1 failed")
    page.select_option("select[name=state]", "failed")
    page.get_by_role("button", name="filter").click()
    row = page.locator("tr", has_text="broken")
    expect(row).to_contain_text("ValueError: cannot measure bad note")
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text('raise ValueError("cannot measure " + text.strip())')
    expect(row.locator("pre")).to_contain_text("lab/tasks.py")
    page.screenshot(path=str(ARTIFACTS / "serve-task.png"))
    # An item name with markup in it is shown as text; nothing of it runs.
    page.goto(server.url + "/task/" + urllib.request.quote(server.json("/api/status")[1]["task_id"]) + "?q=img")
    expect(page.get_by_role("cell", name=EVIL, exact=True)).to_have_count(1)
    assert page.evaluate("window.pwned") is None


def test_the_page_follows_a_build_live_without_a_reload(lab, server, browser):
    from playwright.sync_api import expect

    notes = lab / "data" / "lab" / "raw" / "notes"
    for i in range(5, 25):
        (notes / f"n{i}.txt").write_text("y" * i)
    page = browser.new_page()
    page.goto(server.url + "/")
    state = page.locator('span.state[data-task-id^="Lengths"]')
    expect(state).to_have_text("stale")  # its failed item is retried
    env = {k: v for k, v in os.environ.items() if k not in ("LUISY_WORKING_DIR", "WORKING_DIR")}
    build = subprocess.Popen([str(Path(sys.executable).with_name("luisy")), "run", "lab.tasks:Total"], cwd=lab,
                             env={**env, "ITEM_SECONDS": "0.25"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        expect(state).to_have_text("running", timeout=20_000)
        progress = page.locator('[data-show="progress"][data-task-id^="Lengths"]')
        expect(progress).to_contain_text(" of 21 items", timeout=10_000)  # the failed one is retried
        first = progress.text_content()
        expect(progress).not_to_have_text(first, timeout=10_000)  # it moves
        expect(state).to_have_text("stale", timeout=60_000)
    finally:
        build.wait(timeout=120)
    assert "complete except 1 failed item(s)" in build.stdout.read()
    expect(page.locator('[data-show="items"][data-task-id^="Lengths"]')).to_have_text("26", timeout=10_000)

    # The run's course: items per second, failures over time, how long items took.
    page.get_by_role("link", name="Lengths()").click()
    expect(page.locator("h2", has_text="The last run")).to_have_count(1)
    rate = page.get_by_role("img", name="items per second over the run").locator("polyline")
    assert len(rate.get_attribute("points").split()) >= 2
    expect(page.locator("figcaption", has_text="failed items")).to_contain_text("top: 1")
    # 21 items of 0.25 s each (the failed one too), none quicker than 100 ms.
    expect(page.locator("figcaption", has_text="how long items took")).to_have_text(
        "how long items took: 21 ≤300 ms")
    page.screenshot(path=str(ARTIFACTS / "serve-course.png"), full_page=True)


def test_the_json_api_mirrors_the_commands(lab, server):
    status = server.json("/api/status")
    assert [row["family"] for row in status] == ["Notes", "Lengths", "Total"]
    assert status[1]["items"] == 6 and status[1]["failed"] == 1 and status[2]["state"] == "stale"
    failed = server.json("/api/items?task=Lengths&failed=1")
    assert [row["name"] for row in failed["items"]] == ["broken"]
    assert "ValueError" in failed["items"][0]["error"] and failed["items"][0]["traceback"]
    history = server.json("/api/history?task=Lengths")
    assert history and history[0]["state"] == "SUCCESS"
    shown = server.json("/api/show?path=lab/final/Total.json")
    assert shown["task"] == "Total()"
    plan = server.json("/api/plan")
    assert plan["steps"] == [] or all(step["task"] for step in plan["steps"])
    assert server.status("/api/items?task=Nope") == 404


def test_paths_outside_the_working_directory_cannot_be_read(lab, server):
    outside = lab / "secret.txt"
    outside.write_text("secret")
    (lab / "data" / "lab" / "final" / "link.txt").symlink_to(outside)
    for path in ("../secret.txt", "..%2Fsecret.txt", "%2E%2E/secret.txt", str(outside), "%2Fetc%2Fpasswd",
                 "lab/../../secret.txt", "lab/final/link.txt"):
        assert server.status(f"/api/show?path={path}") == 400, path
    assert server.status("/task/..%2F..%2Fsecret.txt") == 404


def test_a_token_is_needed_for_every_request_once_given(lab, browser):
    running = Server(lab, "--token", "s3cret")
    try:
        assert running.status("/") == 401 and running.status("/api/status") == 401
        assert running.status("/api/status", {"Authorization": "Bearer wrong"}) == 401
        assert running.status("/api/status", {"Authorization": "Bearer s3cret"}) == 200
        page = browser.new_page()
        page.goto(running.url + "/?token=s3cret")  # sets a cookie: the links work without the token
        page.get_by_role("link", name="Lengths()").click()
        assert page.locator("h1").text_content() == "Lengths()"
    finally:
        running.stop()


def test_another_address_than_loopback_gets_a_token_made_and_printed_once(lab):
    running = Server(lab, host="127.0.0.2")
    try:
        assert "?token=" in running.said
        assert running.status("/api/status") == 401
        assert running.status("/api/status", running._auth()) == 200
    finally:
        running.stop()


def test_a_foreign_host_name_is_refused_on_loopback(server):
    assert server.status("/api/status", {"Host": "attacker.example"}) == 400
    assert server.status("/api/status", {"Host": f"localhost:{server.port}"}) == 200


def test_a_small_result_is_shown_as_a_table_and_runs_as_bars(lab, server):
    (lab / "data" / "lab" / "raw" / "notes" / "n9.txt").write_text("z" * 9)
    assert "complete except" in run_luisy(["run", "lab.tasks:Total"], cwd=lab).stdout
    with urllib.request.urlopen(server.url + "/task/" + urllib.request.quote(server.json("/api/status")[2]["task_id"]),
                                timeout=10) as response:
        text = response.read().decode()
    total = json.loads((lab / "data" / "lab" / "final" / "Total.json").read_text())["total"]
    assert "<th>key</th><th>value</th>" in text and f"<td>total</td><td>{total}</td>" in text
    assert 'aria-label="durations of the last runs"' in text and text.count('<g class="run SUCCESS">') == 2


def test_nothing_can_be_started_unless_actions_are_allowed(server):
    assert server.status("/actions") == 404
    request = urllib.request.Request(server.url + "/actions/run", data=b"factor=3", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("POST /actions/run answered")
    except urllib.error.HTTPError as error:
        assert error.code in (404, 405)


def _post(running: Server, path: str, form: dict[str, str], headers: dict[str, str] | None = None,
          answer: list[str] | None = None) -> int:
    """The status of a POST of ``form``; its text is appended to ``answer``."""
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(running.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            (answer if answer is not None else []).append(response.read().decode())
            return response.status
    except urllib.error.HTTPError as error:
        (answer if answer is not None else []).append(error.read().decode())
        return error.code


def test_actions_need_the_token_and_the_forms_csrf_token_and_origin(lab):
    running = Server(lab, "--allow-actions", task="lab.tasks:Scaled")
    try:
        assert "?token=" in running.said and "with actions" in running.said, "made and printed, also on loopback"
        assert running.status("/actions") == 401
        with urllib.request.urlopen(urllib.request.Request(running.url + "/actions", headers=running._auth()),
                                    timeout=10) as response:
            page = response.read().decode()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"factor": "3", "unit": "chars"}
        assert _post(running, "/actions/run", {**form, "csrf": csrf}) == 401, "no token"
        assert _post(running, "/actions/run", form, running._auth()) == 403, "no CSRF token"
        assert _post(running, "/actions/run", {**form, "csrf": "guess"}, running._auth()) == 403
        assert _post(running, "/actions/run", {**form, "csrf": csrf},
                     {**running._auth(), "Origin": "http://attacker.example"}) == 403, "another site's form"
        answer: list[str] = []
        assert _post(running, "/actions/run", {"factor": "lots", "unit": "miles", "csrf": csrf}, running._auth(),
                     answer) == 400
        assert "factor: &#39;lots&#39; is not a valid IntParameter" in answer[0]
        assert "unit: &#39;miles&#39; is not a valid ChoiceParameter" in answer[0]
        assert running.json("/api/jobs") == [], "nothing started"
        assert _post(running, "/actions/run", {**form, "csrf": csrf},
                     {**running._auth(), "Origin": running.url}) == 303
        jobs = running.json("/api/jobs")
        assert len(jobs) == 1 and jobs[0]["command"][3:5] == ["run", "lab.tasks:Scaled"]
        assert jobs[0]["command"][-4:] == ["--factor", "3", "--unit", "chars"]
    finally:
        running.stop()


def test_the_page_runs_verifies_and_watches_with_parameters_from_a_form(lab, browser):
    from playwright.sync_api import expect

    running = Server(lab, "--allow-actions", task="lab.tasks:Scaled")
    token = running.said.partition("?token=")[2].split()[0]
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{running.url}/?token={token}")
        page.get_by_role("link", name="actions").click()
        expect(page.locator("h1")).to_have_text("Actions")
        expect(page.get_by_label("factor")).to_have_value("2")
        expect(page.locator("body")).to_contain_text("what the total is multiplied by")
        expect(page.get_by_label("unit").locator("option")).to_have_text(["chars", "kchars"])

        # The browser itself refuses what an IntParameter does not take (the server does too, see above).
        page.get_by_label("factor").fill("2.5")
        page.get_by_role("button", name="run", exact=True).click()
        assert page.get_by_label("factor").evaluate("element => element.validity.valid") is False
        assert running.json("/api/jobs") == []

        page.get_by_label("factor").fill("3")
        page.get_by_label("unit").select_option("kchars")
        page.get_by_role("button", name="run", exact=True).click()
        job = page.locator("tr.job").first
        expect(job).to_contain_text("run Scaled(factor=3, unit=kchars, rounded=False)")
        expect(job.locator(".job-state")).to_have_text("exit status 1", timeout=60_000)  # an item failed
        total = json.loads((lab / "data" / "lab" / "final" / "Total.json").read_text())["total"]
        scaled = json.loads(next((lab / "data" / "lab" / "final").glob("Scaled*factor=3*")).read_text())
        assert scaled == {"value": total * 3 / 1000, "rounded": False}
        page.screenshot(path=str(ARTIFACTS / "serve-actions.png"))

        page.locator("select[name=task]").select_option(label="Lengths()")
        page.get_by_role("button", name="verify", exact=True).click()
        expect(page.locator("tr.job").first.locator("pre")).to_contain_text("items checked", timeout=30_000)

        # A luisy watch keeps the result current until it is stopped.
        page.get_by_role("button", name="keep a luisy watch running").click()
        watch = page.locator("tr.job").first
        expect(watch.locator(".job-state")).to_have_text("running")
        expect(page.get_by_role("button", name="keep a luisy watch running")).to_be_disabled()
        (lab / "data" / "lab" / "raw" / "notes" / "n7.txt").write_text("1234567")
        deadline = time.monotonic() + 60
        while json.loads((lab / "data" / "lab" / "final" / "Total.json").read_text())["total"] != total + 7:
            assert time.monotonic() < deadline, watch.locator("pre").text_content()
            time.sleep(0.5)
        watch.get_by_role("button", name="stop").click()
        expect(page.locator("tr.job").first.locator(".job-state")).not_to_have_text("running", timeout=30_000)
    finally:
        running.stop()
