"""Directory outputs: a folder of item files plus a manifest, published atomically (see docs/directory.rst)."""

from __future__ import annotations

from luisy.directory.manifest import MANIFEST_NAME, Manifest
from luisy.directory.target import DirectoryTarget, DirectoryWriter

__all__ = ["MANIFEST_NAME", "Manifest", "DirectoryTarget", "DirectoryWriter"]
