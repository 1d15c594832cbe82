"""Build steps setuptools cannot express in pyproject.toml: the cffi extension and pause.

`import cffi` at the top is deliberate: without cffi in the build environment setuptools
would silently build a wheel with no extension and no pause binary (machine.md).
"""
import os
import shutil
import subprocess

import cffi  # noqa: F401  (see the docstring)
from setuptools import setup
from setuptools.command.build_ext import build_ext

PAUSE_SOURCE = "csrc/pause.c"
PAUSE_TARGET = os.path.join("nsPod", "_bin", "nspod-pause")


def pause_compile_command(output):
    version = _package_version()
    flags = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", f'-DVERSION="{version}"']
    # musl gives a 18 KB binary; glibc static works too, at 700 KB (machine.md).
    compiler = shutil.which("musl-gcc") or os.environ.get("CC", "cc")
    return [compiler, *flags, "-o", output, PAUSE_SOURCE]


def _package_version():
    with open(os.path.join("nsPod", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("nsPod/__init__.py has no __version__")


class BuildExtWithPause(build_ext):
    """Compiles pause next to the extension, into the wheel or (editable) into the tree."""

    def run(self):
        super().run()
        outputs = [os.path.join(self.build_lib, PAUSE_TARGET)]
        if self.inplace:
            outputs = [PAUSE_TARGET]
        for output in outputs:
            os.makedirs(os.path.dirname(output), exist_ok=True)
            command = pause_compile_command(output)
            print("building pause:", " ".join(command))
            subprocess.check_call(command)

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self.build_lib, PAUSE_TARGET)]


setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithPause},
)
