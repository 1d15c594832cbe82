"""An OCI image layout (index.json + blobs) walked as hostile input: the manifest for this
machine's platform picked through nested indexes, its layers applied in order with their
whiteouts, and what its config gives a container, each field checked.
"""
import errno
import hashlib
import json
import os
import platform

from nsPod.errors import ImageError, describe
from nsPod.store import unpack_limits, zstd_layers
from nsPod.store.unpack import _apply_whiteouts, _extract, _open_regular, _open_tar

_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}
# An OCI layout is hostile input too: its indexes may fan out (50 references each, 4 deep:
# 6 million descriptors in 32 KB), its JSON blobs may be huge. Limits far above real images.
MAX_DESCRIPTORS = 1000       # descriptors the walk of the indexes may visit, in all
MAX_JSON_BLOB = 4 << 20      # an index, manifest or config (registries refuse > 4 MiB too)
MAX_INDEX_DEPTH = 4


def _import_oci(layout, rootfs):
    """Apply the image's layers in order; return what its config gives a container."""
    with _Layout(layout) as oci:
        index = oci.json_file("index.json")
        manifest = _pick_manifest(oci, index)
        config = oci.blob_json(manifest.get("config"), "the image config")
        layers = manifest.get("layers") or []
        if not isinstance(layers, list):
            raise ImageError("OCI layout: the image manifest's layers are not a list")
        budget = unpack_limits.Budget()
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise ImageError(f"OCI layout: layer {i} is not a descriptor")
            media_type = str(layer.get("mediaType", ""))
            what = f"layer {i} ({layer.get('digest')})"
            opener = _open_tar
            if media_type in zstd_layers.MEDIA_TYPES:
                zstd_layers.require(what)
                opener = lambda blob: zstd_layers.open_tar(blob, what)  # noqa: E731
            elif "zstd" in media_type:
                raise ImageError(f"{what}: unsupported media type {media_type!r}")
            with oci.blob(layer, f"layer {i}") as blob:
                with opener(blob) as tar:
                    _apply_whiteouts(tar, rootfs, budget.layer(f"layer {i}"))
                with opener(blob) as tar:
                    _extract(tar, rootfs, layer=True, budget=budget.layer(f"layer {i}"))
    return _container_config(config)


def _container_config(config):
    """What an image config gives a container, each field checked: it is the image's word."""
    c = config.get("config") or {}
    if not isinstance(c, dict):
        raise ImageError("OCI layout: the image config's config is not an object")
    out = {"entrypoint": c.get("Entrypoint"), "cmd": c.get("Cmd"), "env": c.get("Env"),
           "workingDir": c.get("WorkingDir"), "user": c.get("User")}
    for key, field in (("entrypoint", "Entrypoint"), ("cmd", "Cmd"), ("env", "Env")):
        value = out[key]
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise ImageError(f"OCI layout: the image config's {field} is not a list of strings")
    for key, field in (("workingDir", "WorkingDir"), ("user", "User")):
        if out[key] is not None and not isinstance(out[key], str):
            raise ImageError(f"OCI layout: the image config's {field} is not a string")
    return out


class _LayoutTooLarge(ImageError):
    """The walk of an OCI layout went past MAX_DESCRIPTORS: not an index to skip, the end."""


def _pick_manifest(oci, index, depth=0):
    """The image manifest for this machine's platform, following nested indexes: the first
    that fits, in the order of the indexes."""
    want = ("linux", _ARCHES.get(platform.machine(), platform.machine()))
    manifests = index.get("manifests") or []
    if not isinstance(manifests, list):
        raise ImageError("OCI layout: an index's manifests are not a list")
    for descriptor in manifests:
        oci.visit()
        if not isinstance(descriptor, dict):
            raise ImageError("OCI layout: an index lists something that is not a descriptor")
        if descriptor.get("mediaType") in _INDEX_TYPES:
            if depth >= MAX_INDEX_DEPTH:
                continue  # nested deeper than any real image's indexes
            nested = oci.blob_json(descriptor, "a nested index")
            try:
                return _pick_manifest(oci, nested, depth + 1)
            except _LayoutTooLarge:
                raise
            except ImageError:
                continue  # nothing for this machine in there: the next entry may have it
        p = descriptor.get("platform") or {}
        if not isinstance(p, dict) or p and (p.get("os"), p.get("architecture")) != want:
            continue  # another platform's image, or an attestation (os "unknown")
        return oci.blob_json(descriptor, "the image manifest")
    raise ImageError(f"the OCI layout has no image for {want[0]}/{want[1]}")


class _Layout:
    """An OCI layout directory, read as hostile input: no symlink in it is followed, only
    regular files are read, JSON blobs are capped, and the walk of its indexes is bounded."""

    def __init__(self, path):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"OCI layout {path}: {describe(e)}") from None
        self.visited = 0
        self.parsed = {}   # (digest, size) -> JSON already read: a blob listed again is free

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def visit(self):
        self.visited += 1
        if self.visited > MAX_DESCRIPTORS:
            raise _LayoutTooLarge(f"OCI layout: its indexes list more than {MAX_DESCRIPTORS} "
                                  "descriptors; no image has that many")

    def open(self, parts, what):
        """parts[-1] under parts[:-1] of the layout, no component a symlink."""
        fds = []
        try:
            fd = self.fd
            for name in parts[:-1]:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=fd)
                fds.append(fd)
            f = _open_regular(parts[-1], dir_fd=fd)
            f.label = "/".join(parts)
            return f
        except OSError as e:
            problem = describe(e)
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                problem = "a symlink or not a directory (a layout holds only regular files)"
            raise ImageError(f"OCI layout: {what}: {'/'.join(parts)}: {problem}") from None
        finally:
            for fd in fds:
                os.close(fd)

    def json_file(self, name):
        with self.open([name], name) as f:
            return _parse_json(f.read(MAX_JSON_BLOB + 1), name)

    def blob(self, descriptor, what, limit=None):
        """The descriptor's blob, open at its start, checked against its size and digest."""
        if not isinstance(descriptor, dict) or ":" not in str(descriptor.get("digest", "")):
            raise ImageError(f"{what}: no digest in its descriptor")
        algorithm, _, hex_digest = str(descriptor["digest"]).partition(":")
        if algorithm not in ("sha256", "sha512") or not (
                hex_digest.isascii() and hex_digest.isalnum() and len(hex_digest) <= 128):
            raise ImageError(f"{what}: unsupported digest {str(descriptor['digest'])[:80]!r}")
        expected = descriptor.get("size")
        if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
            raise ImageError(f"{what}: its descriptor's size is not a number")
        f = self.open(["blobs", algorithm, hex_digest], what)
        try:
            size = os.fstat(f.fileno()).st_size
            name = descriptor["digest"]
            if expected is not None and expected != size:
                raise ImageError(f"{what}: blob {name} has {size} bytes, its descriptor says "
                                 f"{expected}")
            if limit is not None and size > limit:
                raise ImageError(f"{what}: blob {name} has {size} bytes, more than "
                                 f"{limit >> 20} MiB")
            digest = hashlib.new(algorithm)
            read = 0
            while read <= size:
                chunk = f.read(min(1 << 20, size + 1 - read))
                if not chunk:
                    break
                digest.update(chunk)
                read += len(chunk)
            if read != size or digest.hexdigest() != hex_digest:
                raise ImageError(f"{what}: blob {name} does not match its digest")
            f.seek(0)
            return f
        except BaseException:
            f.close()
            raise

    def blob_json(self, descriptor, what):
        key = None
        if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str) \
                and isinstance(descriptor.get("size"), (int, type(None))):
            key = (descriptor["digest"], descriptor.get("size"))
        if key is not None and key in self.parsed:
            return self.parsed[key]
        with self.blob(descriptor, what, MAX_JSON_BLOB) as f:
            data = _parse_json(f.read(MAX_JSON_BLOB + 1), what)
        if key is not None:
            self.parsed[key] = data
        return data


def _parse_json(data, what):
    if len(data) > MAX_JSON_BLOB:
        raise ImageError(f"OCI layout: {what} is larger than {MAX_JSON_BLOB >> 20} MiB")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ImageError(f"OCI layout: {what}: {describe(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"OCI layout: {what} is not a JSON object")
    return doc
