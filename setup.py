"""Builds logstore's one optional C extension, the record codec (logstore/records/_codec.c).

pyproject.toml holds all of the metadata; this file only declares the extension. It is
optional: without a C compiler the build prints one warning and carries on, and logstore
runs its pure-Python codec (logstore/records/accel.py says which one runs).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

CODEC = Extension(
    "logstore.records._codec",
    sources=["logstore/records/_codec.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-Wall", "-Wextra"],
    optional=True,  # setuptools then copies no missing .so into place (editable installs)
)
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """build_ext that warns and goes on when the extension cannot be built."""

    warned = False

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as err:  # no compiler at all: found before any extension
            self._warn(err)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as err:
            self._warn(err)

    def _warn(self, err: Exception) -> None:
        if not OptionalBuildExt.warned:
            OptionalBuildExt.warned = True
            print(
                f"WARNING: logstore: the C record codec could not be built ({err}); "
                f"using the pure-Python codec",
                file=sys.stderr,
            )


setup(ext_modules=[CODEC], cmdclass={"build_ext": OptionalBuildExt})
