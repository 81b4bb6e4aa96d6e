"""Importing pymongoose from a source tree without a compiled module (``pip install .``
then ``python -m pymongoose`` in the clone's root): the installed copy's compiled module
is used when it was built from the same sources; otherwise the ImportError says what to run.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cffi
from subprocess_helpers import child_env

import pymongoose
from pymongoose._installed import find_installed_build, missing_build_message, same_sources

PACKAGE = Path(pymongoose.__file__).resolve().parent
COMPILED = Path(sys.modules["pymongoose._mongoose_cffi"].__file__ or "")
CFFI_SITE = str(Path(cffi.__file__).resolve().parent.parent)


def copy_sources(parent: Path) -> Path:
    """``parent/pymongoose`` with the package's Python files and nothing compiled."""
    target = parent / "pymongoose"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return target


def install_copy(parent: Path, compiled: Path = COMPILED) -> Path:
    """``parent/pymongoose`` as pip installs it: the sources and a compiled module."""
    target = copy_sources(parent)
    shutil.copy2(compiled, target / compiled.name)
    return target


def test_a_matching_installed_copy_is_found_and_a_changed_one_is_not(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "clone")
    fake = tmp_path / ("_mongoose_cffi" + importlib.machinery.EXTENSION_SUFFIXES[0])
    fake.write_bytes(b"")
    no_build = copy_sources(tmp_path / "no-build")  # sources only: not a candidate
    installed = install_copy(tmp_path / "site", fake)
    path = [str(tmp_path / "clone"), str(no_build.parent), str(installed.parent)]

    compiled, different = find_installed_build(source, path)
    assert compiled == installed / fake.name
    assert different == []
    assert same_sources(source, installed)

    (installed / "manager.py").write_text("# edited after the install\n")
    compiled, different = find_installed_build(source, path)
    assert compiled is None
    assert different == [installed.resolve()]
    message = missing_build_message(source, different)
    assert str(installed.resolve()) in message
    assert f"-m pip install -e {source.parent}" in message

    (installed / "manager.py").unlink()  # a file missing is a difference too
    assert not same_sources(source, installed)
    shutil.copy2(source / "manager.py", installed / "manager.py")
    assert same_sources(source, installed)
    (source / "sub").mkdir()  # subpackages count
    (source / "sub" / "__init__.py").write_text("")
    assert not same_sources(source, installed)


PROBE = ("import sys, pymongoose; "
         "print(pymongoose.__file__); print(sys.modules['pymongoose._mongoose_cffi'].__file__); "
         "print(pymongoose.md5(b'abc').hex())")


def run_in(cwd: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` (first on sys.path, as with -m and -c), ``site`` next.

    -S: no .pth files, so an editable install of the package under test (whose finder
    would supply the compiled module) stays out; cffi's folder comes after ``site``.
    """
    env = dict(child_env(), PYTHONPATH=os.pathsep.join([str(site), CFFI_SITE]))
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_python_c_in_a_clone_uses_the_installed_build(tmp_path: Path) -> None:
    clone = copy_sources(tmp_path / "clone").parent
    installed = install_copy(tmp_path / "site")
    result = run_in(clone, installed.parent, "-c", PROBE)
    assert result.returncode == 0, result.stderr
    package_file, compiled_file, digest = result.stdout.split()
    assert Path(package_file).parent == clone / "pymongoose"
    assert Path(compiled_file).parent == installed
    assert digest == "900150983cd24fb0d6963f7d28e17f72"
    # and the command line, as the README's users meet it
    result = run_in(clone, installed.parent, "-m", "pymongoose", "--help")
    assert result.returncode == 0, result.stderr
    assert "--root" in result.stdout


def test_a_clone_without_a_matching_build_says_what_to_run(tmp_path: Path) -> None:
    clone = copy_sources(tmp_path / "clone").parent
    installed = install_copy(tmp_path / "site")
    (installed / "utils.py").write_text("# another version\n")
    result = run_in(clone, installed.parent, "-m", "pymongoose", "--help")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()
    assert any(line.startswith("ImportError: pymongoose was imported from "
                               f"{clone / 'pymongoose'}") for line in last), result.stderr
    assert f"-m pip install -e {clone}" in result.stderr
    assert f"Installed copies built from other sources: {installed}" in result.stderr
