"""A working directory on an object store, as a path luisy joins like any other.

``s3://lake/data`` is kept as the absolute path ``/s3:/lake/data`` (its *alias*): output paths,
records and the journal are joined below it as below a local folder, and the storage of that
scheme (:mod:`luisy.storage.remote`) turns each back into its URL. ``file://`` URLs are plain
local paths. Messages show the URL again (:func:`shown`).
"""

from __future__ import annotations

import os
import re

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_ALIAS = re.compile(r"/([a-z][a-z0-9+.-]*):(?=/|$)")


def alias(given: str | os.PathLike[str]) -> str | None:
    """The alias path of an fsspec URL (``s3://lake/data`` → ``/s3:/lake/data``); ``None`` for a
    local path. A ``file://`` URL is its local path."""
    match = _URL.match(os.fspath(given))
    if match is None:
        return None
    scheme, rest = match[1].lower(), match[2].strip("/")
    if scheme in ("file", "local"):
        return None
    return f"/{scheme}:/{rest}" if rest else f"/{scheme}:"


def local_path(given: str | os.PathLike[str]) -> str:
    """``given`` without a ``file://`` prefix."""
    text = os.fspath(given)
    match = _URL.match(text)
    return "/" + match[2].lstrip("/") if match is not None and match[1].lower() in ("file", "local") else text


def url(path: str | os.PathLike[str]) -> str | None:
    """The URL an alias path stands for (``/s3:/lake/data/x`` → ``s3://lake/data/x``); ``None`` for a
    local path."""
    text = os.fspath(path)
    match = _ALIAS.match(text)
    if match is None:
        return None
    return f"{match[1]}://{text[match.end():].lstrip('/')}"


def scheme(path: str | os.PathLike[str]) -> str | None:
    """The scheme of an alias path (``s3``), ``None`` for a local path."""
    match = _ALIAS.match(os.fspath(path))
    return match[1] if match is not None else None


def shown(text: str) -> str:
    """``text`` with every alias path written as its URL, for messages."""
    return re.sub(r"(?<![\w/])/([a-z][a-z0-9+.-]*):/", lambda m: f"{m[1]}://", text) if ":/" in text else text
