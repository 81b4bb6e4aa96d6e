"""setuptools needs a setup.py for cffi_modules; everything else is in pyproject.toml."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import setuptools
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

#: pyproject.toml's [build-system] requires, checked here because an installer run with
#: --no-build-isolation uses whatever is installed: setuptools < 77 cannot read the
#: project's SPDX license field and fails with a schema error that names neither.
MIN_SETUPTOOLS = (77, 0)
MIN_CFFI = (1, 15)


def _version_tuple(text: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as ``77.0.3`` or ``1.17.1``."""
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check_build_requirements() -> None:
    """Stop with one paragraph when the installed build tools are too old or missing."""
    problems = []
    found = setuptools.__version__
    if _version_tuple(found) < MIN_SETUPTOOLS:
        problems.append(f"setuptools>={_shown(MIN_SETUPTOOLS)} (found {found})")
    try:
        import cffi
    except ImportError:
        problems.append(f"cffi>={_shown(MIN_CFFI)} (not installed)")
    else:
        if _version_tuple(cffi.__version__) < MIN_CFFI:
            problems.append(f"cffi>={_shown(MIN_CFFI)} (found {cffi.__version__})")
    if problems:
        needs = " and ".join(problems)
        wanted = " ".join(f"'{p.split(' ')[0]}'" for p in problems)
        sys.exit(
            f"error: building pymongoose needs {needs}. Without --no-build-isolation, pip "
            f"fetches the build tools itself; with it, upgrade them in the environment that "
            f"builds: python -m pip install -U {wanted}"
        )


class SdistWithMongoose(sdist):
    """Put the Mongoose source the build used into the sdist, so installing it needs no network."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from build_ffi import mongoose_source_dir

        source = mongoose_source_dir()
        for name in ("mongoose.c", "mongoose.h"):
            target = Path(base_dir, "csrc", name)
            target.unlink(missing_ok=True)  # may be a hard link into our tree
            shutil.copyfile(source / name, target)


class BuildExtKeepingGil(build_ext):
    """Compile cffi's generated C after taking the GIL release out of the hot calls'
    wrappers (``build_ffi.GIL_KEPT``). cffi generates that file just before this runs."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name == "pymongoose._mongoose_cffi" and ext.sources[0].endswith(".c"):
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from build_ffi import keep_gil_in_file

            keep_gil_in_file(Path(ext.sources[0]))
        super().build_extension(ext)


if __name__ == "__main__":
    check_build_requirements()
    setup(cffi_modules=["build_ffi.py:ffibuilder"],
          cmdclass={"sdist": SdistWithMongoose, "build_ext": BuildExtKeepingGil})
