"""Manifests as a registry sends them, checked: digests, media types, the platform an index
offers for this machine, descriptors. Pure functions over bytes (pull.py fetches)."""
import hashlib
import json
import platform

from nsPod.errors import InputError, NspodError
from nsPod.manifest import image_reference as reference
from nsPod.registry import client


class PullError(NspodError):
    """A pull failed: the registry, the network, or what the registry sent (exit 1)."""


_GZIP_LAYERS = ("application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
_TAR_LAYERS = ("application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar")
_CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                 "application/vnd.docker.container.image.v1+json")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def host_platform():
    machine = platform.machine()
    arch = _ARCHES.get(machine, machine)
    variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else "")
    return "linux", arch, variant


# --- manifests --------------------------------------------------------------------------------

def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_manifest(data, expected, what):
    """The digest of a manifest's bytes, checked against `expected` (when there is one)."""
    digest = sha256(data)
    if expected and expected.startswith("sha512:"):
        actual = "sha512:" + hashlib.sha512(data).hexdigest()
        if actual != expected:
            raise PullError(f"{what}: digest mismatch: expected {expected}, got {actual}")
        return expected
    if expected and digest != expected:
        raise PullError(f"{what}: digest mismatch: expected {expected}, got {digest} "
                        "(refused: the registry or a proxy changed it)")
    return digest


def parse_manifest(data, media_type, what):
    """The manifest as a dict, with its media type settled (the body's mediaType wins over
    the Content-Type when present)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise PullError(f"{what}: not JSON") from None
    if not isinstance(doc, dict):
        raise PullError(f"{what}: not a JSON object")
    kind = doc.get("mediaType") or media_type
    if kind in client.DOCKER_V1 or doc.get("schemaVersion") == 1:
        raise PullError(f"{what}: Docker schema 1 manifests are not supported (deprecated; "
                        "push the image again with a current tool)")
    if not kind:
        kind = client.OCI_INDEX if "manifests" in doc else client.OCI_MANIFEST
    if kind not in (client.OCI_INDEX, client.DOCKER_LIST, client.OCI_MANIFEST,
                    client.DOCKER_MANIFEST):
        raise PullError(f"{what}: unsupported manifest type {kind!r} (not an image)")
    return kind, doc


def select_platform(index, want=None, what="index"):
    """The descriptor of the image for linux/<arch>[/variant] in an index or manifest list.
    A matching variant is preferred; an entry without a variant matches any."""
    os_name, arch, variant = want or host_platform()
    best = None
    for d in index.get("manifests") or ():
        if not isinstance(d, dict):
            continue
        p = d.get("platform") or {}
        if p.get("os") != os_name or p.get("architecture") != arch:
            continue  # another platform, or an attestation ("unknown/unknown")
        if variant and p.get("variant") == variant:
            return d
        if best is None and (not p.get("variant") or not variant):
            best = d
    if best is None:
        have = sorted({f"{(d.get('platform') or {}).get('os')}/"
                       f"{(d.get('platform') or {}).get('architecture')}"
                       for d in index.get("manifests") or () if isinstance(d, dict)})
        raise PullError(f"{what}: no image for {os_name}/{arch} (it has: "
                        f"{', '.join(have) or 'nothing'})")
    return best


def _descriptor_digest(d, what):
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise PullError(f"{what}: no digest")
    try:
        reference.check_digest(d["digest"])
    except InputError as e:
        raise PullError(f"{what}: {e}") from None
    if not d["digest"].startswith("sha256:"):
        raise PullError(f"{what}: {d['digest']}: only sha256 digests are supported")
    size = d.get("size")
    # The size is required (OCI image spec): it bounds what a registry may send.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PullError(f"{what}: bad or missing size {size!r}")
    return d["digest"]
