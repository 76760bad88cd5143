"""pytest plugin (entry point ``pytest11``): the ``luisy_working_dir`` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def luisy_working_dir(tmp_path: Path) -> Iterator[Path]:
    """Point luisy's working directory at a fresh ``tmp_path`` for one test, then restore it."""
    from luisy.config import working_dir

    with working_dir(tmp_path) as path:
        yield path
