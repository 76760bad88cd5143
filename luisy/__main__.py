"""``python -m luisy`` is the ``luisy`` command."""

from __future__ import annotations

from luisy.cli import main

if __name__ == "__main__":
    main(prog_name="luisy")
