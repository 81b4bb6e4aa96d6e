"""setuptools needs a setup.py for cffi_modules; everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.sdist import sdist


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


setup(cffi_modules=["build_ffi.py:ffibuilder"], cmdclass={"sdist": SdistWithMongoose})
