"""tests/_tools.py: a missing external program skips a test with one line naming the
Debian package, or fails it when PYMONGOOSE_REQUIRE_TOOLS is set (CI)."""

from __future__ import annotations

from pathlib import Path

import _tools
import pytest
from _tools import REQUIRE_TOOLS_ENV, require


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH (and sbin) holding one program, ``present``."""
    present = tmp_path / "present"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_tools, "_SBIN", (str(tmp_path / "no-sbin"),))
    return present


def test_a_missing_tool_skips_naming_the_debian_package(
        bare_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_TOOLS_ENV, raising=False)
    for program, package in [("curl", "curl"), ("mosquitto_passwd", "mosquitto"),
                             ("dnsmasq", "dnsmasq"), ("cc", "gcc")]:
        with pytest.raises(pytest.skip.Exception) as skipped:
            require(program)
        assert str(skipped.value) == f"requires {program} (Debian package: {package})"
    assert require("present") == str(bare_path)


def test_with_the_ci_variable_a_missing_tool_fails(
        bare_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_TOOLS_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require("present", "openssl")
    assert str(failed.value).startswith("requires openssl (Debian package: openssl); "
                                        f"{REQUIRE_TOOLS_ENV} is set")
    monkeypatch.setenv(REQUIRE_TOOLS_ENV, "0")  # "0" means unset
    with pytest.raises(pytest.skip.Exception):
        require("openssl")
