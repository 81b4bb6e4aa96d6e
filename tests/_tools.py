"""External programs the tests drive (curl, openssl, mosquitto, ...), and what happens
when one is missing.

On a plain machine a test that needs a missing program skips with one line naming the
Debian package to install. With ``PYMONGOOSE_REQUIRE_TOOLS=1`` (CI sets it) the same test
fails instead, so CI runs everything.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

#: The environment variable that turns a missing tool into a failure.
REQUIRE_TOOLS_ENV = "PYMONGOOSE_REQUIRE_TOOLS"

#: program -> the Debian package that provides it.
DEBIAN_PACKAGES = {
    "curl": "curl",
    "wrk": "wrk",
    "openssl": "openssl",
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "dnsmasq": "dnsmasq",
    "valgrind": "valgrind",
    "cc": "gcc",
    "gcc": "gcc",
}

#: Daemons Debian installs outside an ordinary user's PATH.
_SBIN = ("/usr/sbin", "/sbin")


def tools_required() -> bool:
    """Whether a missing tool fails the test (CI) rather than skipping it."""
    return os.environ.get(REQUIRE_TOOLS_ENV, "") not in ("", "0")


def find_tool(program: str) -> str | None:
    """The path of ``program`` on PATH (or in /usr/sbin for daemons), else None."""
    found = shutil.which(program)
    if found is None and program == "dnsmasq":
        found = shutil.which(program, path=os.pathsep.join(_SBIN))
    return found


def missing(program: str) -> NoReturn:
    """Skip (or, under CI, fail) the running test: ``program`` is not installed."""
    package = DEBIAN_PACKAGES.get(program, program)
    message = f"requires {program} (Debian package: {package})"
    if tools_required():
        pytest.fail(f"{message}; {REQUIRE_TOOLS_ENV} is set, so a missing tool fails",
                    pytrace=False)
    pytest.skip(message)


def require(*programs: str) -> str:
    """The path of the first of ``programs``; skips (or fails) the test if any is missing."""
    paths = []
    for program in programs:
        path = find_tool(program)
        if path is None:
            missing(program)
        paths.append(path)
    return paths[0]
