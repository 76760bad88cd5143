"""The ASGI app of ``luisy serve``: pages rendered on the server (Jinja2, every value escaped), a
JSON API under ``/api/``, and a token check in front of both.

Read-only unless actions are allowed (:mod:`luisy.serve.actions`): then ``POST`` routes start
``luisy`` commands, each request carrying the form's CSRF token and, if the browser sends one, an
``Origin`` of this server. Bound to loopback, only the ``Host`` names of loopback are accepted (a
page of another site cannot reach the server through a DNS name that points at 127.0.0.1). With
a token, every request carries it: ``?token=`` (which sets a cookie for the pages it links to),
an ``Authorization: Bearer`` header, or that cookie; else 401.
"""

from __future__ import annotations

import hmac
import itertools
import json
import math
import time
import urllib.parse
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luisy import config, storage
from luisy.errors import LuisyError
from luisy.history import progress
from luisy.history.runs import history
from luisy.plan import as_json as plan_data
from luisy.serve.actions import Actions, fields, parsed
from luisy.serve.views import PAGE_SIZE, Pipeline, item_page, shown, task_runs

__all__ = ["make_app", "TOKEN_COOKIE"]

TOKEN_COOKIE = "luisy_token"
TEMPLATES = Path(__file__).with_name("templates")
#: Layout of the pipeline's drawing (pixels).
BOX_WIDTH, BOX_HEIGHT, COLUMN, ROW = 210, 46, 250, 62


def make_app(root: luigi.Task, working_dir: Path, token: str | None = None, loopback: bool = True,
             actions: Actions | None = None) -> Any:
    """The app serving ``root``'s pipeline in ``working_dir``; requests need ``token`` if given.
    With ``actions`` (which needs a token), the page can start ``luisy`` commands."""
    if actions is not None and not token:
        raise ValueError("actions need a token")
    import jinja2
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    pipeline = Pipeline(root, working_dir)
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    pages.filters["when"] = _when

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        text = pages.get_template(name).render(root=root, working_dir=working_dir, status=status,
                                               actions=actions is not None, **values)
        return HTMLResponse(text, status_code=status)

    def task_of(request: Request) -> luigi.Task:
        return pipeline.find(request.path_params.get("task_id") or request.query_params.get("task", ""))

    async def index(request: Request) -> Response:
        views = pipeline.views()
        return render("pipeline.html", views=views, drawing=_drawing(views))

    async def task_page(request: Request) -> Response:
        task = task_of(request)
        view = next(v for v in pipeline.views() if v.task is task)
        page = None
        if view.to_dict()["directory"]:
            page = item_page(pipeline, task, request.query_params.get("q", ""), request.query_params.get("state", ""),
                             _page(request))
        output = _output(task)
        runs = task_runs(pipeline, task)
        return render("task.html", view=view, runs=runs, page=page, output=output, chart=_chart(runs),
                      course=_course(progress.read(working_dir, task.task_id), runs),
                      provenance=_provenance(pipeline, output), page_size=PAGE_SIZE)

    async def api_status(request: Request) -> Response:
        return JSONResponse([view.to_dict() for view in pipeline.views()])

    async def api_plan(request: Request) -> Response:
        with config.working_dir(working_dir):
            return JSONResponse(plan_data(root))

    async def api_history(request: Request) -> Response:
        runs = history(working_dir, request.query_params.get("task") or None)
        return JSONResponse([run.to_dict() for run in runs])

    async def api_items(request: Request) -> Response:
        query = request.query_params
        state = "failed" if query.get("failed") in ("1", "true") else query.get("state", "")
        page = item_page(pipeline, task_of(request), request.query_params.get("q", ""), state, _page(request))
        return JSONResponse({"page": page.page, "more": page.more, "items": [row.to_dict() for row in page.rows]})

    async def api_show(request: Request) -> Response:
        return JSONResponse(shown(pipeline, request.query_params.get("path", "")).to_dict())

    def actions_page(status: int = 200, errors: dict[str, str] | None = None,
                     sent: dict[str, str] | None = None) -> HTMLResponse:
        assert actions is not None
        form = fields(root)
        for item in form:
            item.value = (sent or {}).get(item.name, item.value)
        return render("actions.html", status, form=form, errors=errors or {}, csrf=actions.csrf,
                      tasks=pipeline.tasks, jobs=[job.to_dict() for job in reversed(actions.jobs)],
                      watching=actions.watching())

    async def sent_form(request: Request) -> dict[str, str]:
        """The form of a request that changes something, if it carries the CSRF token and comes
        from a page of this server (``PermissionError`` otherwise)."""
        assert actions is not None
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            raise PermissionError(f"a form from {origin} may not start anything here")
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        if not hmac.compare_digest(form.get("csrf", "").encode(), actions.csrf.encode()):
            raise PermissionError("the form's CSRF token is missing or wrong: reload the page")
        return form

    async def actions_index(request: Request) -> Response:
        return actions_page()

    async def act(request: Request) -> Response:
        assert actions is not None
        what = request.path_params["what"]
        form = await sent_form(request)
        if what == "stop":
            actions.stop(_number(form.get("job", "")))
        elif what in ("run", "watch"):
            task, errors = parsed(root, form)
            if task is None:
                return actions_page(400, errors, form)
            actions.start(what, task)
        elif what in ("verify", "repair"):
            actions.start(what, pipeline.find(form.get("task", "")))
        else:
            raise LookupError(f"no action {what!r}")
        return RedirectResponse("/actions", status_code=303)

    async def api_jobs(request: Request) -> Response:
        assert actions is not None
        return JSONResponse([job.to_dict() for job in actions.jobs])

    async def failed(request: Request, error: Exception) -> Response:
        status = 404 if isinstance(error, LookupError) else 403 if isinstance(error, PermissionError) else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=status)
        return render("error.html", status, error=str(error))

    routes = [Route("/", index), Route("/task/{task_id:path}", task_page), Route("/api/status", api_status),
              Route("/api/plan", api_plan), Route("/api/history", api_history), Route("/api/items", api_items),
              Route("/api/show", api_show)]
    if actions is not None:
        routes += [Route("/actions", actions_index), Route("/actions/{what}", act, methods=["POST"]),
                   Route("/api/jobs", api_jobs)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])]
        if loopback else [],
        exception_handlers={LookupError: failed, LuisyError: failed, ValueError: failed, PermissionError: failed},
    )
    if token is None:
        return app
    return _Guarded(app, token, PlainTextResponse)


class _Guarded:
    """Lets through only requests that carry the token (see the module docstring)."""

    def __init__(self, app: Any, token: str, response: Any) -> None:
        self.app, self.token, self.response = app, token, response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        given = request.query_params.get("token")
        bearer = request.headers.get("authorization", "")
        candidates = [given, bearer[7:] if bearer.lower().startswith("bearer ") else None,
                      request.cookies.get(TOKEN_COOKIE)]
        if not any(c is not None and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            await self.response("a token is needed: open the address luisy serve printed", status_code=401)(
                scope, receive, send)
            return
        if given is None:
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, with_cookie)


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a job number") from None


def _page(request: Any) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        raise ValueError("page must be a whole number from 1 on") from None


def _when(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _output(task: luigi.Task) -> dict[str, Any] | None:
    outputs = [o for o in flatten(task.output()) if getattr(o, "path", None)]
    if not outputs:
        return None
    path = str(outputs[0].path)
    store = storage.for_path(path)
    fmt = getattr(getattr(outputs[0], "file_format", None), "name", None) or type(outputs[0]).__name__
    size = store.size(path)
    found = {"path": path, "format": fmt, "size": size, "exists": store.exists(path) or store.exists(path, folder=True),
             "preview": None}
    if size is not None and size <= PREVIEW_BYTES:
        found["preview"] = _preview(store, path)
    return found


#: Outputs up to this size are shown as a table on their task's page (statistics, a reduce's result).
PREVIEW_BYTES = 1 << 16


def _preview(store: storage.Storage, path: str) -> list[tuple[str, ...]] | None:
    """Rows (the first one a header) of a small JSON or parquet output in ``store``; ``None`` for other outputs."""
    try:
        if path.endswith(".json"):
            data = json.loads(store.read_bytes(path, PREVIEW_BYTES))
            if isinstance(data, dict):
                return [("key", "value"), *((str(k), json.dumps(v, default=str)[:200]) for k, v in data.items())]
            if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
                keys = list(dict.fromkeys(k for row in data[:100] for k in row))
                return [tuple(keys), *(tuple(str(row.get(k, "")) for k in keys) for row in data[:100])]
        if path.endswith(".parquet"):
            import pandas as pd

            frame = store.load(path, pd.read_parquet).head(100)
            return [tuple(map(str, frame.columns)), *(tuple(map(str, row)) for row in frame.itertuples(index=False))]
    except (OSError, ValueError, ImportError):
        return None
    return None


def _provenance(pipeline: Pipeline, output: dict[str, Any] | None) -> str | None:
    if output is None or not output["exists"]:
        return None
    try:
        rel = Path(output["path"]).relative_to(pipeline.working_dir).as_posix()
        return "\n".join(shown(pipeline, rel).lines())
    except (ValueError, LuisyError):
        return None


def _chart(runs: list[Any]) -> dict[str, Any] | None:
    """Bars of the task's last runs, oldest first: height the duration, colour how it ended, and
    items per second where the run processed items."""
    done = [run for run in reversed(runs) if run.duration is not None]
    if len(done) < 2:
        return None
    longest = max(run.duration for run in done) or 1.0
    bars = []
    for i, run in enumerate(done):
        height = max(2.0, 100 * run.duration / longest)
        processed = (run.items or {}).get("processed") or (run.items or {}).get("folded")
        rate = f"{processed / run.duration:.0f}/s" if processed and run.duration else ""
        bars.append({"x": 10 + i * 34, "y": 120 - height, "height": height, "state": run.state,
                     "label": f"{run.duration:.1f} s", "rate": rate})
    return {"bars": bars, "width": 20 + len(bars) * 34}


#: Size of the pictures of a run's course (pixels).
COURSE_WIDTH, COURSE_HEIGHT = 420, 110


def _course(found: dict[str, Any] | None, runs: list[Any]) -> dict[str, Any] | None:
    """Pictures of the course of the task's running or last run, from its progress file: items
    per second over time, failed items over time, and how long items took. ``None`` if the file
    is of an earlier run than the journal's last, or says too little to draw."""
    if found is None or not runs or not isinstance(found.get("started"), (int, float)):
        return None
    if runs[0].started is not None and found["started"] < runs[0].started - 1:
        return None
    samples = [s for s in found.get("samples") or [] if isinstance(s, list) and len(s) == 3
               and all(isinstance(v, (int, float)) for v in s)]
    if len(samples) < 2:
        return None
    span = max(samples[-1][0], 1e-9)
    rates = [(b[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in itertools.pairwise(samples) if b[0] > a[0]]
    top_rate = max((rate for _, rate in rates), default=0) or 1.0
    top_failed = max(samples[-1][2], 1)

    def points(values: list[tuple[float, float]], top: float) -> str:
        return " ".join(f"{COURSE_WIDTH * t / span:.1f},{COURSE_HEIGHT - COURSE_HEIGHT * v / top:.1f}"
                        for t, v in values)

    bounds, counts = found.get("bounds") or [], found.get("durations") or []
    bars = []
    if isinstance(counts, list) and len(counts) == len(bounds) + 1 and any(counts):
        most = max(counts)
        labels = [f"≤{_seconds(b)}" for b in bounds] + [f">{_seconds(bounds[-1])}"]
        width = COURSE_WIDTH / len(counts)
        bars = [{"x": i * width, "width": width - 2, "height": COURSE_HEIGHT * n / most, "count": n, "label": label}
                for i, (n, label) in enumerate(zip(counts, labels, strict=True))]
    return {"rate": points(rates, top_rate), "top_rate": f"{top_rate:.0f}", "failed": points(
            [(t, f) for t, _, f in samples], top_failed), "top_failed": top_failed, "seconds": f"{span:.1f}",
            "durations": bars, "width": COURSE_WIDTH, "height": COURSE_HEIGHT,
            "done": samples[-1][1], "running": found.get("done") != found.get("total")}


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def _drawing(views: list[Any]) -> dict[str, Any]:
    """Where each task's box goes (columns by depth), and the lines from requirements to tasks."""
    rows: dict[int, int] = {}
    boxes = {}
    for view in views:
        row = rows.get(view.depth, 0)
        rows[view.depth] = row + 1
        boxes[view.task.task_id] = {"x": 10 + view.depth * COLUMN, "y": 10 + row * ROW, "view": view}
    lines = [{"x1": boxes[r]["x"] + BOX_WIDTH, "y1": boxes[r]["y"] + BOX_HEIGHT // 2,
              "x2": box["x"], "y2": box["y"] + BOX_HEIGHT // 2}
             for box in boxes.values() for r in box["view"].requires if r in boxes]
    width = 20 + (max(rows) + 1) * COLUMN if rows else 100
    height = 20 + max(rows.values(), default=1) * ROW
    return {"boxes": list(boxes.values()), "lines": lines, "width": width, "height": height,
            "box_width": BOX_WIDTH, "box_height": BOX_HEIGHT}
