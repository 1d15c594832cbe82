"""cffi builder for nsPod._syscalls (out-of-line API mode), named in setup.py's cffi_modules."""
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "syscalls.h").read_text())
ffibuilder.set_source("nsPod._syscalls", (HERE / "syscalls.c").read_text())

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
