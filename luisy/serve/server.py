"""Starting ``luisy serve``: the address, the token, and uvicorn."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import luigi

from luisy.errors import MissingExtraError
from luisy.serve.actions import Actions
from luisy.serve.app import make_app

__all__ = ["LOOPBACK", "serve"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(task: luigi.Task, working_dir: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          say: Callable[[str], None] = print, allow_actions: bool = False) -> None:
    """Serve ``task``'s pipeline until interrupted. Another address than loopback, and actions,
    need a token: ``token``, else one made here and said once. ``allow_actions``: the page can
    run tasks, keep a ``luisy watch`` running, verify and repair (each a ``luisy`` command)."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("luisy serve needs the web extra: pip install 'luisy[web]'") from None
    loopback = host in LOOPBACK
    if (allow_actions or not loopback) and not token:
        token = secrets.token_urlsafe(24)
    actions = Actions(task, working_dir) if allow_actions else None
    app = make_app(task, working_dir, token or None, loopback=loopback, actions=actions)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {task} at http://{shown}:{port}/" + (f"?token={token}" if token else "")
        + (" with actions" if allow_actions else "") + " (Ctrl-C stops)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if actions is not None:
            actions.close()
