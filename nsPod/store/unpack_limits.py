"""How much one layer, and one image, may unpack to: bytes and entries, counted member by
member before each is written, so a hostile archive (a gzip bomb, a tar of millions of empty
files, a sparse file of a terabyte, a file hard-linked a million times) is refused before it
costs the disk or the memory it claims. A refusal is one ImageError; the caller's work
directory, where everything was written, is removed whole, so nothing partial is left.

The limits are far above real images (the largest public layers hold ~300k entries and a few
GiB) and are set with NSPOD_UNPACK_LIMITS, a comma list of KEY=VALUE:
  layer-bytes     regular files' sizes in one layer (a sparse file counts its full size)
  image-bytes     the same over every layer of one image (pull or import)
  layer-entries   members of one layer's archive (whiteouts, directories, links included)
  image-entries   the same over every layer of one image
  layer-links     hard-link members in one layer
Bytes take a binary suffix (K, M, G, T, or Ki, Mi, Gi, Ti).
"""
import os
import re

from nsPod.errors import ImageError, InputError

ENV = "NSPOD_UNPACK_LIMITS"
DEFAULTS = {"layer-bytes": 16 << 30, "image-bytes": 32 << 30, "layer-entries": 500_000,
            "image-entries": 1_000_000, "layer-links": 100_000}
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_VALUE = re.compile(r"([0-9]{1,15})([kKmMgGtT]i?)?")


def limits(environ=None):
    """{key: int} from NSPOD_UNPACK_LIMITS over the defaults; InputError naming the knob."""
    env = os.environ if environ is None else environ
    found = dict(DEFAULTS)
    text = (env.get(ENV) or "").strip()
    if not text:
        return found
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if key not in DEFAULTS or not eq:
            raise InputError(f"{ENV}: {item.strip()!r}: want KEY=VALUE with KEY one of "
                             f"{', '.join(DEFAULTS)}")
        m = _VALUE.fullmatch(value.strip())
        if not m or (m.group(2) and not key.endswith("bytes")):
            raise InputError(f"{ENV}: {key}={value!r}: want a whole number"
                             + (" with an optional K, M, G or T suffix"
                                if key.endswith("bytes") else ""))
        number = int(m.group(1)) * _SUFFIX[(m.group(2) or "")[:1].lower()]
        if number < 1:
            raise InputError(f"{ENV}: {key}={value!r}: must be at least 1")
        found[key] = number
    return found


class Budget:
    """What one image has unpacked so far; `layer(what)` starts a layer's own count."""

    def __init__(self, values=None):
        self.limits = values or limits()
        self.bytes = self.entries = 0
        self.layer_bytes = self.layer_entries = self.layer_links = 0
        self.what = "the archive"

    def layer(self, what):
        self.layer_bytes = self.layer_entries = self.layer_links = 0
        self.what = what
        return self

    def charge_existing(self, size, entries):
        """A layer unpacked before (shared with another image) counts toward this image."""
        self.bytes += size
        self.entries += entries
        self._check_image()

    def charge(self, member):
        """Count one tar member before it is written; ImageError past a limit."""
        self.layer_entries += 1
        self.entries += 1
        if member.isreg():
            self.layer_bytes += member.size
            self.bytes += member.size
        elif member.islnk():
            self.layer_links += 1
        for key, have in (("layer-entries", self.layer_entries),
                          ("layer-bytes", self.layer_bytes),
                          ("layer-links", self.layer_links)):
            if have > self.limits[key]:
                raise ImageError(self._refusal(key, member))
        self._check_image(member)

    def count_only(self, n):
        """Members read (the whiteout pass) against the layer's entry limit, not charged."""
        if n > self.limits["layer-entries"]:
            raise ImageError(self._refusal("layer-entries"))

    def _check_image(self, member=None):
        for key, have in (("image-entries", self.entries), ("image-bytes", self.bytes)):
            if have > self.limits[key]:
                raise ImageError(self._refusal(key, member))

    def _refusal(self, key, member=None):
        unit = "bytes" if key.endswith("bytes") else (
            "hard links" if key.endswith("links") else "entries")
        where = "the image" if key.startswith("image") else self.what
        at = f" (at {member.name[:100]!r})" if member is not None else ""
        return (f"{where} unpacks to more than {self.limits[key]} {unit}{at}: refused, "
                f"nothing stored (the limit is {ENV} {key}={self.limits[key]})")


def count_tree(path):
    """(bytes of regular files, entries) of an unpacked layer's directory, for an image that
    reuses it. Iterative: a layer may be deeper than Python's recursion."""
    size = entries = 0
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entries += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
    return size, entries
