"""Find the compiled module when the package is imported from a source tree without one.

``pip install .`` builds ``_mongoose_cffi`` into site-packages and leaves the source
tree as it was. ``python -m pymongoose`` (or ``python -c``) run from the clone's root puts
the current directory first on ``sys.path``, so Python imports the package from the
source tree, which has no compiled module. This module looks for an installed copy of the
package elsewhere on ``sys.path`` that has one and was installed from the same Python
sources (every ``.py`` file identical), and loads its compiled module in place of the
missing one. Otherwise it raises an ImportError that says what to run.
"""

from __future__ import annotations

import filecmp
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

__all__ = ["compiled_module", "find_installed_build", "missing_build_message"]

_PACKAGE = __name__.rpartition(".")[0]
_MODULE = "_mongoose_cffi"
_HERE = Path(__file__).resolve().parent


def _python_sources(package_dir: Path) -> list[str]:
    """The package's ``.py`` files, subpackages included, as sorted relative paths."""
    return sorted(str(p.relative_to(package_dir)) for p in package_dir.rglob("*.py")
                  if "__pycache__" not in p.parts)


def same_sources(a: Path, b: Path) -> bool:
    """Whether two package folders hold the same ``.py`` files with the same contents."""
    names = _python_sources(a)
    if names != _python_sources(b):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def _compiled_file(package_dir: Path) -> Optional[Path]:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = package_dir / (_MODULE + suffix)
        if candidate.is_file():
            return candidate
    return None


def find_installed_build(
    source_dir: Path = _HERE, search_path: Optional[list[str]] = None,
) -> tuple[Optional[Path], list[Path]]:
    """The compiled module of an installed copy of the package built from the same
    sources as ``source_dir`` (None if there is none), and the installed copies that
    have a compiled module but different sources.

    ``search_path`` defaults to ``sys.path``; the folder holding ``source_dir`` is skipped.
    """
    different: list[Path] = []
    seen = {source_dir.resolve()}
    for entry in sys.path if search_path is None else search_path:
        package_dir = Path(entry or os.getcwd()) / _PACKAGE
        try:
            package_dir = package_dir.resolve()
        except OSError:
            continue
        if package_dir in seen or not package_dir.is_dir():
            continue
        seen.add(package_dir)
        compiled = _compiled_file(package_dir)
        if compiled is None:
            continue
        if same_sources(source_dir, package_dir):
            return compiled, different
        different.append(package_dir)
    return None, different


def missing_build_message(source_dir: Path, different: list[Path]) -> str:
    """What to tell a user whose import found sources but no compiled module."""
    project = source_dir.parent
    lines = [
        f"{_PACKAGE} was imported from {source_dir}, which has no compiled module "
        f"({_MODULE}), and no installed copy built from the same sources was found.",
    ]
    if different:
        lines.append("Installed copies built from other sources: "
                     + ", ".join(str(d) for d in different) + ".")
    lines.append(
        f"Build it in place with `{sys.executable} -m pip install -e {project}`, or "
        f"(re)install it with `{sys.executable} -m pip install {project}`: from the source "
        "tree, an installed copy is used only while its Python files match the tree's. "
        f"(`python -m {_PACKAGE}` puts the current folder first on sys.path; the "
        f"`{_PACKAGE}` command does not.)"
    )
    return "\n".join(lines)


def compiled_module(error: ModuleNotFoundError) -> ModuleType:
    """The compiled module of a matching installed copy, registered under our name;
    ImportError (chained to ``error``) with what to run when there is none."""
    name = f"{_PACKAGE}.{_MODULE}"
    compiled, different = find_installed_build()
    if compiled is None:
        raise ImportError(missing_build_message(_HERE, different), name=name) from error
    spec = importlib.util.spec_from_file_location(name, compiled)
    if spec is None or spec.loader is None:  # pragma: no cover - a file we just found
        raise ImportError(f"cannot load {compiled}", name=name) from error
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
