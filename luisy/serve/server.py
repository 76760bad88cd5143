"""Starting ``luisy serve``: the address, the token, and uvicorn."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import luigi

from luisy.errors import MissingExtraError
from luisy.serve.app import make_app

__all__ = ["LOOPBACK", "serve"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(task: luigi.Task, working_dir: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          say: Callable[[str], None] = print) -> None:
    """Serve ``task``'s pipeline until interrupted. Another address than loopback needs a token:
    ``token``, else one made here and said once."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("luisy serve needs the web extra: pip install 'luisy[web]'") from None
    loopback = host in LOOPBACK
    if not loopback and not token:
        token = secrets.token_urlsafe(24)
    app = make_app(task, working_dir, token or None, loopback=loopback)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {task} at http://{shown}:{port}/" + (f"?token={token}" if token else "") + " (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
