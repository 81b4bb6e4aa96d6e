"""Sphinx configuration: Markdown pages (MyST) and an API reference from the docstrings.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``; autodoc imports the installed (compiled) package.
"""

from __future__ import annotations

import pymongoose

project = "pymongoose"
author = "pymongoose contributors"
copyright = "2026, pymongoose contributors"
release = pymongoose.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# Other branches drop draft pages in docs/drafts/; they join the site once integrated.
exclude_patterns = ["_build", "drafts/**", "drafts"]

# Headings up to ### get anchors, so pages can link to [a section](page.md#a-section).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"pymongoose {release}"
html_static_path: list[str] = []
