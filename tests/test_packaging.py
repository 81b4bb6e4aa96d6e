"""What an installed pymongoose says about itself: its distribution and its build.

These run against whatever is installed (an editable build, or a wheel in CI's
.ci/wheels), never against files of the source tree.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pymongoose
from pymongoose import Manager, aio
from pymongoose._ffi import lib

#: The name on the package index; the import name stays ``pymongoose`` ("pymongoose" on
#: the index is an unrelated project).
DISTRIBUTION = "pymongoose-cffi"


def test_the_distribution_carries_the_package_and_its_version() -> None:
    dist = metadata.distribution(DISTRIBUTION)
    assert dist.version == pymongoose.__version__
    assert dist.metadata["Name"] == DISTRIBUTION
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"pymongoose": "pymongoose.__main__:main"}


def test_the_console_script_runs_the_command_line() -> None:
    script = Path(sys.executable).parent / "pymongoose"
    assert script.is_file(), f"no console script beside {sys.executable}"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--root DIR" in proc.stdout


def test_the_build_reports_the_platform_paths_it_compiled_in() -> None:
    features = lib.pymg_build_features()
    epoll = bool(features & lib.PYMG_FEATURE_EPOLL)
    trim = bool(features & lib.PYMG_FEATURE_MALLOC_TRIM)
    nosignal = bool(features & lib.PYMG_FEATURE_MSG_NOSIGNAL)
    if features & lib.PYMG_FEATURE_FORCED_PORTABLE:
        assert (epoll, trim, nosignal) == (False, False, False)
    elif sys.platform.startswith("linux"):
        assert epoll and nosignal
        assert trim == (platform.libc_ver()[0] == "glibc")
    else:
        assert not epoll


def test_asyncio_waits_on_mongoose_s_descriptor_only_where_epoll_is_built_in() -> None:
    mgr = Manager()
    try:
        has_fd = aio._poll_fd(mgr) >= 0
    finally:
        mgr.close()
    assert has_fd == bool(lib.pymg_build_features() & lib.PYMG_FEATURE_EPOLL)
