"""zstd-compressed layers (application/vnd.oci.image.layer.v1.tar+zstd), through the optional
`zstandard` package (PyPI zstandard, Debian python3-zstandard; `pip install nspod[zstd]`):
the one module that imports it. Without it, a zstd layer is one clear line saying so.

The decompressed stream is read once, forward (tarfile's stream mode): a layer is never
decompressed to disk whole, and what it unpacks to is bounded member by member
(unpack_limits). A damaged stream is an OSError, as a damaged gzip one is to tarfile.
"""
import errno
import io
import tarfile

from nsPod.errors import ImageError

MEDIA_TYPES = ("application/vnd.oci.image.layer.v1.tar+zstd",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
MISSING = ("zstd layers need python package zstandard (pip install zstandard, or apt install "
           "python3-zstandard)")
# The largest window a frame may ask for (memory): libzstd's own default limit, 128 MiB.
MAX_WINDOW = 1 << 27


def _module():
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def require(what):
    """ImageError unless zstd layers can be unpacked here."""
    if _module() is None:
        raise ImageError(f"{what}: {MISSING}")


class _Reader(io.RawIOBase):
    """The decompressed bytes of a zstd file object; zstd's errors as OSError (EIO)."""

    def __init__(self, fileobj, zstandard):
        self._error = zstandard.ZstdError
        self._inner = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
            fileobj, read_across_frames=True, closefd=False)

    def readable(self):
        return True

    def readinto(self, buffer):
        try:
            data = self._inner.read(len(buffer))
        except self._error as e:
            raise OSError(errno.EIO, f"zstd: {e}") from None
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        self._inner.close()
        super().close()


def open_tar(fileobj, what):
    """A stream-mode tarfile over the decompressed zstd file object (rewound)."""
    zstandard = _module()
    if zstandard is None:
        raise ImageError(f"{what}: {MISSING}")
    fileobj.seek(0)
    reader = io.BufferedReader(_Reader(fileobj, zstandard), 1 << 16)
    try:
        tar = tarfile.open(fileobj=reader, mode="r|")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ImageError(f"{what}: cannot read it as a zstd tar archive: {e}") from None
    tar.label = what
    return tar
