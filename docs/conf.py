"""Sphinx configuration for luisy's documentation."""

from __future__ import annotations

import luisy

project = "luisy"
author = "the luisy developers"
release = luisy.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
# luigi's own docstrings are not ours to fix; only luisy's members are documented.
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
html_static_path = ["_static"]
