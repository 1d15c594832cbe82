"""Hostile layers pushed to a real registry (Debian's docker-registry, skopeo): a gzip bomb,
an archive of too many entries, a terabyte sparse file, paths nested too deep, a file hard
linked too often, an image whose layers are each small enough but together too big. Each is
refused with one line naming the limit, and nothing of the image is left: no image, no
layer, no work directory. The limits are NSPOD_UNPACK_LIMITS (docs/interface.md)."""
import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from busybox import require_busybox
from test_registry import (HTPASSWD, REGISTRY, SKOPEO, Registry, images, insecure,
                           layer_dirs, leftovers, one_error, write_layout)


@pytest.fixture(scope="module")
def registry():
    missing = [p for p in (REGISTRY, SKOPEO, HTPASSWD) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry and skopeo "
                    "(sh tests/run.sh does)")
    require_busybox()
    base = tempfile.mkdtemp(prefix="nspod-hostile-")
    r = Registry(base, "hostile")
    r.base = base
    try:
        yield r
    finally:
        r.stop()
        shutil.rmtree(base, ignore_errors=True)


def _tar(add):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add(tar)
    return buf.getvalue()


def _file(tar, name, data=b""):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _push(registry, name, layers):
    path = os.path.join(registry.base, name.replace(":", "-"))
    return registry.push(write_layout(path, layers), name)


def _good():
    return _tar(lambda tar: _file(tar, "fine", b"a harmless first layer\n"))


def _zeros(name, size):
    """A file of `size` zero bytes, written in chunks (tarfile reads it as a stream)."""
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        tar.addfile(info, _Zeros(size))
    return add


class _Zeros(io.RawIOBase):
    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _many(n):
    return lambda tar: [_file(tar, f"f{i}") for i in range(n)]


def _deep(depth):
    return lambda tar: _file(tar, "/".join(["d"] * depth) + "/leaf", b"x")


def _links(n):
    def add(tar):
        _file(tar, "target", b"linked\n")
        for i in range(n):
            info = tarfile.TarInfo(f"link{i}")
            info.type, info.linkname = tarfile.LNKTYPE, "target"
            tar.addfile(info)
    return add


def _sparse_tar(workdir, size):
    """A GNU sparse member of `size` bytes (almost all hole), as GNU tar --sparse writes it."""
    src = os.path.join(workdir, "sparse-src")
    os.makedirs(src)
    with open(os.path.join(src, "huge"), "wb") as f:
        f.truncate(size)
        f.seek(size // 2)
        f.write(b"data in the middle")
    out = os.path.join(workdir, "sparse.tar")
    subprocess.run(["tar", "--sparse", "-C", src, "-cf", out, "huge"], check=True)
    with open(out, "rb") as f:
        return f.read()


def _refused(nspod, ref, env, *words):
    result = nspod("image", "pull", ref, env=env, check=False)
    one_error(result, 1, ref, "refused, nothing stored", *words)
    assert ref not in images(nspod)
    assert layer_dirs(nspod) == [], "not even the harmless first layer is kept"
    assert not leftovers(nspod), "the work directory is removed"
    return result


@pytest.mark.parametrize("case", ["bomb", "entries", "links", "image-bytes"])
def test_a_hostile_layer_past_a_limit_is_refused_and_nothing_is_left(nspod, registry, case):
    limits = {"bomb": ("layer-bytes=8M", [_good(), _tar(_zeros("bomb", 64 << 20))]),
              "entries": ("layer-entries=1000", [_good(), _tar(_many(3000))]),
              "links": ("layer-links=500", [_good(), _tar(_links(2000))]),
              "image-bytes": ("layer-bytes=8M,image-bytes=10M",
                              [_good(), _tar(_zeros("a", 6 << 20)),
                               _tar(_zeros("b", 6 << 20))])}
    knob, layers = limits[case]
    ref = _push(registry, f"hostile-{case}:1", layers)
    env = dict(insecure(nspod, registry.host), NSPOD_UNPACK_LIMITS=knob)
    key = knob.split(",")[-1].split("=")[0]
    result = _refused(nspod, ref, env, f"NSPOD_UNPACK_LIMITS {key}=")
    if case == "image-bytes":
        assert "the image unpacks to more than" in result.stderr
    # The same image within a larger limit is pulled whole.
    roomy = dict(env, NSPOD_UNPACK_LIMITS="layer-bytes=100M,image-bytes=200M")
    nspod("image", "pull", ref, env=roomy)
    assert ref in images(nspod)
    nspod("image", "rm", ref)


def test_a_terabyte_sparse_file_is_refused_by_the_default_limits(nspod, registry):
    ref = _push(registry, "hostile-sparse:1", [_good(), _sparse_tar(nspod.workdir, 1 << 40)])
    _refused(nspod, ref, insecure(nspod, registry.host), "layer-bytes=17179869184",
             "'huge'")


def test_paths_nested_too_deep_are_refused_by_default(nspod, registry):
    ref = _push(registry, "hostile-deep:1", [_good(), _tar(_deep(400))])
    result = nspod("image", "pull", ref, env=insecure(nspod, registry.host), check=False)
    one_error(result, 1, ref, "more than 256 directories deep")
    assert ref not in images(nspod) and layer_dirs(nspod) == [] and not leftovers(nspod)


def test_an_import_is_bounded_too(nspod):
    bomb = os.path.join(nspod.workdir, "bomb.tar.gz")
    with open(bomb, "wb") as f:
        f.write(gzip.compress(_tar(_zeros("bomb", 32 << 20)), compresslevel=1))
    result = nspod("image", "import", "bomb", bomb, check=False,
                   env={"NSPOD_UNPACK_LIMITS": "layer-bytes=4M"})
    one_error(result, 1, "unpacks to more than 4194304 bytes", "layer-bytes")
    assert "bomb" not in images(nspod)
    store = os.path.join(nspod.root, "images")
    assert not [e for e in os.listdir(store) if e.startswith(".import-")]


@pytest.mark.parametrize("bad", ["layer-bytes", "layer-bytes=0", "entries=5", "layer-links=1K",
                                 "image-bytes=-3"])
def test_a_bad_limits_knob_is_bad_input(nspod, bad):
    result = nspod("image", "pull", "127.0.0.1:9/none:1", check=False,
                   env={"NSPOD_UNPACK_LIMITS": bad})
    one_error(result, 2, "NSPOD_UNPACK_LIMITS")
