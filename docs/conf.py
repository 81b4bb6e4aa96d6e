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


# --- constants and type aliases in the API reference -----------------------------------
# autodoc documents a module's data only where that module's own source comments it
# (``#:``), so the names pymongoose re-exports (MG_EV_*, MQTT_*, the type aliases) would
# be left out of the reference. api.md says where they go with a marker line; this
# expands it into one ``autodata`` entry per name, described by the ``#:`` comment of
# the module that defines it or else by its family.

import importlib  # noqa: E402 - the helpers below are all this part needs
import inspect  # noqa: E402
import pkgutil  # noqa: E402
from typing import Any  # noqa: E402

from sphinx.pycode import ModuleAnalyzer  # noqa: E402

CONSTANTS_MARKER = "<!-- api: pymongoose data -->"
FAMILIES = [
    ("PYMG_EV_", "pymongoose's own event code, for a streamed request body."),
    ("MG_EV_", "Event code, read from the compiled library."),
    ("MG_LL_", "Mongoose log level (``log_set``)."),
    ("WEBSOCKET_OP_", "WebSocket opcode."),
    ("MQTT_CMD_", "MQTT packet type."),
    ("MQTT_PROP_TYPE_", "Wire type of an MQTT 5 property."),
    ("MQTT_PROP_", "MQTT 5 property id."),
]


def data_names() -> list[str]:
    """The public names of pymongoose that are neither classes nor functions.

    (``__version__`` is left to automodule, which documents it by itself.)
    """
    names = []
    for name in pymongoose.__all__:
        obj = getattr(pymongoose, name)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            names.append(name)
    return names


def comment_docs() -> dict[str, str]:
    """``#:`` comments of module-level names, from every pymongoose module."""
    docs: dict[str, str] = {}
    modules = ["pymongoose"] + [f"pymongoose.{m.name}" for m in
                                pkgutil.walk_packages(pymongoose.__path__)]
    for module in modules:
        try:
            importlib.import_module(module)
            attr_docs = ModuleAnalyzer.for_module(module).find_attr_docs()
        except Exception:  # a module that cannot be analysed documents nothing here
            continue
        for (scope, name), lines in attr_docs.items():
            if scope == "" and "".join(lines).strip():
                docs.setdefault(name, " ".join(line.strip() for line in lines).strip())
    return docs


def describe(name: str, comments: dict[str, str]) -> str:
    if name in comments:
        return comments[name]
    for prefix, text in FAMILIES:
        if name.startswith(prefix):
            return text
    return ""


def expand_constants(app: Any, docname: str, source: list[str]) -> None:
    if CONSTANTS_MARKER not in source[0]:
        return
    comments = comment_docs()
    entries = []
    for name in data_names():
        value = "" if isinstance(getattr(pymongoose, name), int) else "   :no-value:\n"
        entries.append(f".. autodata:: pymongoose.{name}\n{value}")
        entries.append(f"   {describe(name, comments) or 'See the guide pages.'}\n")
    block = "```{eval-rst}\n" + "\n".join(entries) + "```\n"
    source[0] = source[0].replace(CONSTANTS_MARKER, block)


def drop_type_docstrings(app: Any, what: str, name: str, obj: Any, options: Any,
                         lines: list[str]) -> None:
    """An int's or an alias's inherited docstring (``int([x]) -> integer``) is noise."""
    if what == "data":
        lines.clear()


def setup(app: Any) -> None:
    app.connect("source-read", expand_constants)
    app.connect("autodoc-process-docstring", drop_type_docstrings)
