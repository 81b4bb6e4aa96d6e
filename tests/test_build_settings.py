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
