"""luisy 1.x's ``luisy.helpers`` module path."""

from __future__ import annotations

from luisy.paths import get_string_repr

__all__ = ["get_string_repr"]
