"""``luisy serve``: a page of the pipeline — its graph and states, each task's runs, output,
provenance and items — updated live while a build runs anywhere, and the same as JSON under
``/api/``. Needs the ``web`` extra (Starlette, uvicorn, Jinja2), imported only here."""

from __future__ import annotations

from luisy.serve.app import make_app
from luisy.serve.server import serve

__all__ = ["make_app", "serve"]
