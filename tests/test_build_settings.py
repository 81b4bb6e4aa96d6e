"""Build-time settings of the source tree: PYMONGOOSE_PORTABLE, and setup.py's check
of the build tools that an installer with --no-build-isolation leaves to the user."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("setuptools", reason="setup.py needs setuptools (pip install setuptools)")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import build_ffi  # noqa: E402
import setup as setup_script  # noqa: E402  (setup() runs only as __main__)


def test_portable_build_turns_epoll_off_and_forces_the_portable_path() -> None:
    assert build_ffi.portable_defines("") == []
    assert build_ffi.portable_defines("0") == []
    defines = dict(build_ffi.portable_defines("1"))
    assert defines == {"MG_ENABLE_EPOLL": "0", "PYMG_FORCE_PORTABLE": "1"}


def test_portable_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMONGOOSE_PORTABLE", "1")
    assert ("PYMG_FORCE_PORTABLE", "1") in build_ffi.portable_defines()
    monkeypatch.delenv("PYMONGOOSE_PORTABLE")
    assert build_ffi.portable_defines() == []


def test_unknown_portable_setting_is_refused_with_the_choices() -> None:
    with pytest.raises(build_ffi.BuildConfigError, match=r"PYMONGOOSE_PORTABLE='yes'.*use 1"):
        build_ffi.portable_defines("yes")


def _build_requires() -> dict[str, tuple[int, ...]]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("[build-system]", 1)[1].split("\n[", 1)[0]
    found = re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', block)
    return {name: tuple(int(n) for n in version.split(".")) for name, version in found}


def test_setup_checks_the_versions_pyproject_requires() -> None:
    requires = _build_requires()
    assert requires["setuptools"] == setup_script.MIN_SETUPTOOLS[:len(requires["setuptools"])]
    assert requires["cffi"] == setup_script.MIN_CFFI


def test_old_setuptools_gets_told_what_to_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_script.setuptools, "__version__", "65.5.0")
    with pytest.raises(SystemExit) as caught:
        setup_script.check_build_requirements()
    message = str(caught.value)
    assert "setuptools>=77.0 (found 65.5.0)" in message
    assert "--no-build-isolation" in message
    assert "pip install -U 'setuptools>=77.0'" in message
    assert "\n" not in message


def test_missing_cffi_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_script.setuptools, "__version__", "65.5.0")
    monkeypatch.setitem(sys.modules, "cffi", None)  # import cffi raises ImportError
    with pytest.raises(SystemExit, match=r"setuptools>=77.0 .* and cffi>=1.15 \(not installed\)"
                       r".*-U 'setuptools>=77.0' 'cffi>=1.15'"):
        setup_script.check_build_requirements()


def test_recent_build_tools_pass_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_script.setuptools, "__version__", "80.9.0")
    monkeypatch.setitem(sys.modules, "cffi", type(sys)("cffi"))
    sys.modules["cffi"].__version__ = "1.17.1"  # type: ignore[attr-defined]
    setup_script.check_build_requirements()


# -- GIL_KEPT: cffi's wrappers of the hot calls keep the GIL -----------------------------

_SHAPES_CDEF = """
    int takes_none(void);
    long takes_four(void *c, const char *buf, size_t len, int op);
    void returns_nothing(void *c);
    int released(void *c);
"""
_SHAPES = ("takes_none", "takes_four", "returns_nothing")


def _wrapper(c_source: str, name: str) -> str:
    start = c_source.index(f"\n_cffi_f_{name}(PyObject *self")
    return c_source[start:c_source.index("\n}\n", start)]


@pytest.fixture
def generated_c(tmp_path: Path) -> str:
    """What the installed cffi generates for a few function shapes (no compiler needed)."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(_SHAPES_CDEF)
    ffi.set_source("shapes", "")
    target = tmp_path / "shapes.c"
    ffi.emit_c_code(str(target))
    return target.read_text(encoding="utf-8")


def test_keep_gil_takes_the_release_out_of_the_named_wrappers_only(generated_c: str) -> None:
    for name in (*_SHAPES, "released"):
        assert "Py_BEGIN_ALLOW_THREADS" in _wrapper(generated_c, name)  # what cffi does
    edited, missing = build_ffi.keep_gil(generated_c, _SHAPES)
    assert missing == []
    for name in _SHAPES:
        wrapper = _wrapper(edited, name)
        assert "ALLOW_THREADS" not in wrapper
        assert build_ffi.GIL_KEPT_MARK in wrapper
        assert f"{name}(" in wrapper and "_cffi_save_errno();" in wrapper  # the call stays
    released = _wrapper(edited, "released")
    assert "Py_BEGIN_ALLOW_THREADS" in released and "Py_END_ALLOW_THREADS" in released
    # Only the two GIL lines went, each replaced by the marker's one.
    assert edited.count("\n") == generated_c.count("\n") - len(_SHAPES)


def test_keep_gil_is_idempotent_and_names_what_it_cannot_find(generated_c: str) -> None:
    once, _ = build_ffi.keep_gil(generated_c, _SHAPES)
    twice, missing = build_ffi.keep_gil(once, _SHAPES)
    assert twice == once and missing == []
    _, missing = build_ffi.keep_gil(generated_c, ("takes_none", "not_declared", "takes_no"))
    assert missing == ["not_declared", "takes_no"]  # a name must match a whole function


def test_keep_gil_in_file_edits_the_file_and_says_what_it_missed(
        generated_c: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c_file = tmp_path / "generated.c"
    c_file.write_text(generated_c, encoding="utf-8")
    build_ffi.keep_gil_in_file(c_file, (*_SHAPES, "gone"))
    text = c_file.read_text(encoding="utf-8")
    assert text.count(build_ffi.GIL_KEPT_MARK) == len(_SHAPES)
    assert "gone" in capsys.readouterr().err


def test_every_gil_kept_name_is_a_function_of_the_binding() -> None:
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(build_ffi._read_cdefs())
    declared = {key.split(" ", 1)[1] for key in ffi._parser._declarations
                if key.startswith("function ")}
    assert set(build_ffi.GIL_KEPT) <= declared
    from test_gil_kept import KEPT_CALLS  # each kept call is also checked on the build

    assert set(KEPT_CALLS) == set(build_ffi.GIL_KEPT)
    assert "pymg_poll" not in build_ffi.GIL_KEPT  # it waits: it must let other threads run


def test_setup_py_edits_cffis_c_file_before_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edited: list[Path] = []
    monkeypatch.setattr(build_ffi, "keep_gil_in_file", edited.append)
    compiled: list[str] = []
    monkeypatch.setattr(setup_script.build_ext, "build_extension",
                        lambda self, ext: compiled.append(ext.name))
    from setuptools import Distribution

    command = setup_script.BuildExtKeepingGil(Distribution())
    source = tmp_path / "pymongoose._mongoose_cffi.c"
    command.build_extension(setup_script.Extension("pymongoose._mongoose_cffi", [str(source)]))
    command.build_extension(setup_script.Extension("other", [str(source)]))
    assert edited == [source] and compiled == ["pymongoose._mongoose_cffi", "other"]
