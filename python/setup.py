"""pip's way in: `pip install ./python` from a clone of the repository
builds the Go library (capi/) into the wheel with go build, as
python/build.sh does (Go and a C compiler needed). Metadata is in
pyproject.toml."""

import os
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BuildPyWithGo(build_py):
    """Copies the package, then builds its library next to it."""

    def run(self):
        super().run()
        if not os.path.isdir(os.path.join(REPO, "capi")):
            raise SystemExit(f"shelf: {REPO}/capi not found: install from a clone of the repository (pip install ./python)")
        out = os.path.abspath(os.path.join(self.build_lib, "shelf", "_libshelf.so"))
        subprocess.run(["go", "build", "-buildmode=c-shared", "-ldflags=-s -w", "-o", out, "./capi"], cwd=REPO, check=True)
        header = out[: -len(".so")] + ".h"
        if os.path.exists(header):
            os.remove(header)


class BinaryDistribution(Distribution):
    """A wheel for this platform: the package holds a shared library."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithGo}, distclass=BinaryDistribution)
