"""nspod's local image store: root filesystems that containers use as their overlay's lower layer.

Layout, under <root>/images/:
  <name>:<tag>/rootfs/        the unpacked root filesystem (never written to once stored)
  <name>:<tag>/config.json    what the image gives a container: entrypoint, cmd, env,
                              workingDir, user (an OCI image's config; empty for a plain rootfs)
  .import-* .remove-*         work in progress (named with the pid and start time of the nspod
                              that made it, so a crashed one's leftovers are recognised)

An image is unpacked into a temporary directory and renamed into place: a reader sees all of
it or nothing. It comes from a tarball of a root filesystem (what `docker export` writes,
.tar or compressed), a directory, or an OCI image layout (index.json + blobs, as `skopeo copy
oci:` or `docker save` write it; also as a tarball), whose layers are applied in order with
their whiteouts. There are no pulls: nspod talks to no registry.
"""
import contextlib
import copy
import hashlib
import json
import os
import platform
import posixpath
import shutil
import subprocess
import tarfile
import uuid

from nsPod import mounts, state
from nsPod.errors import InputError, NspodError, describe

CONFIG_FILE = "config.json"
ROOTFS = "rootfs"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}
# tarfile's extraction filters (3.11.4+): the checks are ours (_safe_target), so tarfile must
# not redo them (its realpath checks follow the image's absolute symlinks on the host).
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


class ImageError(NspodError):
    """An image cannot be imported, found or removed."""


def store_dir(root):
    return os.path.join(root, "images")


def reference(name, argument="NAME"):
    """The store's name:tag for NAME, or InputError naming the argument."""
    from nsPod.spec import image_is_path, image_name_problem, image_reference
    if not name:
        problem = "must not be empty"
    elif image_is_path(name):
        problem = "must be an image name, not a path"
    else:
        problem = image_name_problem(name)
    if problem:
        raise InputError(f"{argument}: {name!r}: {problem}")
    return image_reference(name)


def image_dir(root, ref):
    # A reference's '/' cannot be in one directory name; '%' can never be in a reference.
    return os.path.join(store_dir(root), ref.replace("/", "%"))


def _rootfs(root, path, config):
    """A pulled image's root is shared by digest (registry/store.py); an imported one's is
    its own."""
    from nsPod.registry.store import ROOTS, valid_id
    if "root" in config:
        if not valid_id(config["root"]):
            raise ValueError("bad root")
        return os.path.join(store_dir(root), ROOTS, config["root"], ROOTFS)
    return os.path.join(path, ROOTFS)


def configs(root):
    """{name:tag: config with its "rootfs" path} of every stored image (for plan's Facts)."""
    found = {}
    try:
        names = os.listdir(store_dir(root))
    except FileNotFoundError:
        return found
    for entry in names:
        if entry.startswith("."):
            continue
        ref = entry.replace("%", "/")
        path = image_dir(root, ref)
        try:
            config = state.read_json(os.path.join(path, CONFIG_FILE))
            config["rootfs"] = _rootfs(root, path, config)
        except (OSError, ValueError, TypeError):
            continue
        found[ref] = config
    return found


def list_images(config):
    """The stored images, by name: [config] (name, format, size, created, entrypoint...)."""
    return [c for _, c in sorted(configs(config.root).items())]


# --- import ---------------------------------------------------------------------------------

def import_image(config, name, source):
    """Unpack SOURCE into the store as NAME; returns the stored config."""
    ref = reference(name)
    kind = _source_kind(source)
    origin = os.path.abspath(source)
    store = store_dir(config.root)
    os.makedirs(store, mode=0o700, exist_ok=True)
    _remove_leftovers(store)
    final = image_dir(config.root, ref)
    if os.path.exists(final):
        raise ImageError(f"image {ref} already exists (remove it first: nspod image rm {ref})")
    work = os.path.join(store, f".import-{_owner_tag()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(work, 0o700)
    try:
        rootfs = os.path.join(work, ROOTFS)
        os.mkdir(rootfs, 0o755)
        if kind == "tar" and _is_oci_archive(source):
            layout = os.path.join(work, "layout")
            os.mkdir(layout, 0o700)
            with _open_tar(source) as tar:
                _extract(tar, layout)
            source, kind = layout, "oci"
        if kind == "oci":
            image = _import_oci(source, rootfs)
        elif kind == "tar":
            with _open_tar(source) as tar:
                _extract(tar, rootfs)
            image = {}
        else:
            _copy_tree(source, rootfs)
            image = {}
        shutil.rmtree(os.path.join(work, "layout"), ignore_errors=True)
        stored = {
            "name": ref, "format": {"oci": "oci", "tar": "tar", "dir": "directory"}[kind],
            "source": origin,
            "created": state.now_rfc3339(), "size": _tree_size(rootfs),
            "entrypoint": image.get("entrypoint"), "cmd": image.get("cmd"),
            "env": image.get("env") or [], "workingDir": image.get("workingDir") or "",
            "user": image.get("user") or "",
        }
        state.write_json(os.path.join(work, CONFIG_FILE), stored)
        try:
            # Atomic: the image appears whole or not at all.
            os.rename(work, final)
        except OSError as e:
            raise ImageError(f"image {ref} already exists (remove it first: "
                             f"nspod image rm {ref})") from e
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return stored


def _source_kind(source):
    if not os.path.exists(source):
        raise InputError(f"FILE|DIR: {source!r} does not exist")
    if os.path.isdir(source):
        is_oci = all(os.path.exists(os.path.join(source, f)) for f in ("index.json", "blobs"))
        return "oci" if is_oci else "dir"
    try:
        if tarfile.is_tarfile(source):
            return "tar"
    except OSError as e:
        raise InputError(f"FILE|DIR: cannot read {source!r}: {describe(e)}") from None
    raise InputError(f"FILE|DIR: {source!r} is neither a tar archive (.tar, .tar.gz...), "
                     "a directory, nor an OCI image layout")


def _open_tar(path):
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"{path}: cannot read it as a tar archive: {describe(e)}") from None


def _is_oci_archive(path):
    """A tarball of an OCI layout (index.json and oci-layout at its top) rather than of a root
    filesystem."""
    top = set()
    with _open_tar(path) as tar:
        for member in tar:
            top.add(posixpath.normpath(member.name.lstrip("/")))
            if {"index.json", "oci-layout"} <= top:
                return True
    return False


def _copy_tree(source, target):
    """A directory copied as it is: owners, modes, links, hard links, devices, xattrs."""
    try:
        subprocess.run(["cp", "-a", "--one-file-system", "--", os.path.join(source, "."),
                        target], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise ImageError(f"copy {source}: {e.stderr.strip() or 'cp failed'}") from None
    except OSError as e:
        raise ImageError(f"copy {source}: {describe(e)}") from None


def _tree_size(path):
    total, seen = 0, set()
    for directory, dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# --- tar archives and layers ----------------------------------------------------------------

def _extract(tar, dest, layer=False):
    """Every member of `tar` into dest, which it can never leave.

    A member's directories are resolved as the container will see them, inside dest
    (mounts.secure_join): a symlink the archive made earlier, even an absolute one such as
    lib -> /usr/lib, leads inside the image, never onto the host, and so does a hard link's
    target. Whatever is in a member's way (a file, a symlink, a directory a layer replaces)
    is removed first, as tar does, and never written through. Owners are numeric, as a root
    filesystem's are; modes, setuid bits and device nodes are kept.
    """
    for member in tar:
        parent_rel, base = posixpath.split(member.name.strip("/"))
        if base in ("", ".", ".."):
            continue  # the archive's root entry: dest is made already
        if layer and base.startswith(WHITEOUT):
            continue  # applied before (_apply_whiteouts)
        target = os.path.join(mounts.secure_join(dest, parent_rel), base)
        _make_room(target, member)
        member = copy.copy(member)
        member.name = os.path.relpath(target, dest)
        if member.islnk():
            member.linkname = os.path.relpath(mounts.secure_join(dest, member.linkname), dest)
        try:
            tar.extract(member, dest, set_attrs=True, numeric_owner=True, **_TRUSTED)
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"unpack {member.name}: {describe(e)}") from None


def _make_room(target, member):
    if not os.path.lexists(target):
        return
    if member.isdir() and os.path.isdir(target) and not os.path.islink(target):
        return  # a directory stays; its new contents are added
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    else:
        os.unlink(target)


def _apply_whiteouts(tar, rootfs):
    """An OCI layer's deletions, applied to the layers below before its own files land:
    .wh.NAME removes NAME, .wh..wh..opq empties its directory (of what lower layers put
    there; this layer's own entries come after)."""
    for member in tar:
        parent_rel, base = posixpath.split(member.name.strip("/"))
        if not base.startswith(WHITEOUT):
            continue
        parent = mounts.secure_join(rootfs, parent_rel)
        if base == OPAQUE:
            if os.path.isdir(parent) and not os.path.islink(parent):
                for entry in os.listdir(parent):
                    _remove(os.path.join(parent, entry))
        elif base[len(WHITEOUT):] not in ("", ".", ".."):   # never the directory or its parent
            _remove(os.path.join(parent, base[len(WHITEOUT):]))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# --- OCI image layouts ----------------------------------------------------------------------

def _import_oci(layout, rootfs):
    """Apply the image's layers in order; return what its config gives a container."""
    index = _read_json(os.path.join(layout, "index.json"), "index.json")
    manifest = _pick_manifest(layout, index)
    config = _read_blob_json(layout, manifest.get("config"), "the image config")
    for i, layer in enumerate(manifest.get("layers") or ()):
        media_type = layer.get("mediaType", "")
        if "zstd" in media_type:
            raise ImageError(f"layer {i} ({layer.get('digest')}) is zstd-compressed, which "
                             "nspod cannot unpack; export the image with gzip layers")
        path = _blob(layout, layer, f"layer {i}")
        with _open_tar(path) as tar:
            _apply_whiteouts(tar, rootfs)
        with _open_tar(path) as tar:
            _extract(tar, rootfs, layer=True)
    c = config.get("config") or {}
    return {"entrypoint": c.get("Entrypoint"), "cmd": c.get("Cmd"), "env": c.get("Env"),
            "workingDir": c.get("WorkingDir"), "user": c.get("User")}


def _pick_manifest(layout, index, depth=0):
    """The image manifest for this machine's platform, following nested indexes."""
    want = ("linux", _ARCHES.get(platform.machine(), platform.machine()))
    candidates = []
    for descriptor in index.get("manifests") or ():
        if descriptor.get("mediaType") in _INDEX_TYPES and depth < 4:
            nested = _read_blob_json(layout, descriptor, "a nested index")
            try:
                candidates.append(_pick_manifest(layout, nested, depth + 1))
            except ImageError:
                pass
            continue
        p = descriptor.get("platform") or {}
        if p and (p.get("os"), p.get("architecture")) != want:
            continue  # another platform's image, or an attestation (os "unknown")
        candidates.append(_read_blob_json(layout, descriptor, "the image manifest"))
    if not candidates:
        raise ImageError(f"the OCI layout has no image for {want[0]}/{want[1]}")
    return candidates[0]


def _blob(layout, descriptor, what):
    """The path of a descriptor's blob, checked against its digest and size."""
    if not isinstance(descriptor, dict) or ":" not in str(descriptor.get("digest", "")):
        raise ImageError(f"{what}: no digest in its descriptor")
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    if algorithm not in ("sha256", "sha512") or not hex_digest.isalnum():
        raise ImageError(f"{what}: unsupported digest {descriptor['digest']!r}")
    path = os.path.join(layout, "blobs", algorithm, hex_digest)
    digest = hashlib.new(algorithm)
    size = 0
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise ImageError(f"{what}: blob {descriptor['digest']}: {describe(e)}") from None
    if digest.hexdigest() != hex_digest:
        raise ImageError(f"{what}: blob {descriptor['digest']} does not match its digest")
    if "size" in descriptor and descriptor["size"] != size:
        raise ImageError(f"{what}: blob {descriptor['digest']} has {size} bytes, its "
                         f"descriptor says {descriptor['size']}")
    return path


def _read_blob_json(layout, descriptor, what):
    return _read_json(_blob(layout, descriptor, what), what)


def _read_json(path, what):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ImageError(f"OCI layout: {what}: {describe(e)}") from None
    if not isinstance(data, dict):
        raise ImageError(f"OCI layout: {what} is not a JSON object")
    return data


# --- removal --------------------------------------------------------------------------------

def remove(config, name):
    """Remove an image no pod under this root uses."""
    from nsPod.pod import admission_lock
    ref = reference(name)
    path = image_dir(config.root, ref)
    # `run` plans and records its pod under this lock: a pod either is recorded before we
    # look, or plans after the image has gone (and is refused).
    with admission_lock(config):
        if not os.path.isdir(path):
            raise ImageError(f"image {ref} not found")
        try:
            rootfs = _rootfs(config.root, path, _config_of(path))
        except ValueError:
            rootfs = os.path.join(path, ROOTFS)
        users = pods_using(config.root, rootfs)
        if users:
            raise ImageError(f"image {ref} is used by pod{'s' if len(users) > 1 else ''} "
                             f"{', '.join(users)} (remove {'them' if len(users) > 1 else 'it'} "
                             "first: nspod rm -f POD)")
        doomed = os.path.join(store_dir(config.root),
                              f".remove-{_owner_tag()}-{ref.replace('/', '%')}")
        os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    collect(config)
    return ref


def _config_of(path):
    try:
        return state.read_json(os.path.join(path, CONFIG_FILE))
    except (OSError, ValueError):
        return {}


def collect(config):
    """Remove the shared roots, layers and blobs (registry/store.py) that no image names and
    no pod uses. Returns (roots, layers, blobs) removed."""
    from nsPod.pod import admission_lock
    from nsPod.registry import store
    store_path = store_dir(config.root)
    if not os.path.isdir(os.path.join(store_path, store.ROOTS)):
        return (0, 0, 0)
    with admission_lock(config), store.locked(store_path, exclusive=True):
        _remove_leftovers(store_path)
        return store.collect(store_path, configs(config.root).values(), _pod_roots(config.root))


def _pod_roots(root):
    found = set()
    for pod_dir in state.list_pods(root):
        try:
            plan = pod_dir.read_pod()["plan"]
        except (NspodError, KeyError):
            continue
        for c in plan.get("containers", []) + plan.get("init_containers", []):
            if c.get("rootfs"):
                found.add(os.path.realpath(c["rootfs"]))
    return found


def prune(config):
    """Remove every image no pod uses, then what no image uses; returns the names removed."""
    removed = []
    for ref, image in sorted(configs(config.root).items()):
        if pods_using(config.root, image["rootfs"]):
            continue
        try:
            removed.append(remove(config, ref))
        except ImageError:
            continue      # a pod took it meanwhile, or another prune removed it
    return removed, collect(config)


def pods_using(root, rootfs):
    """Names of the pods (running or not: a stopped pod may be restarted) whose plan has a
    container on this root filesystem."""
    users = []
    rootfs = os.path.realpath(rootfs)   # the same store, however --root was spelt
    for pod_dir in state.list_pods(root):
        try:
            plan = pod_dir.read_pod()["plan"]
        except (NspodError, KeyError):
            continue
        containers = plan.get("containers", []) + plan.get("init_containers", [])
        if any(c.get("rootfs") and os.path.realpath(c["rootfs"]) == rootfs
               for c in containers):
            users.append(pod_dir.name)
    return users


def _owner_tag():
    return f"{os.getpid()}.{state.process_start_time(os.getpid())}"


def _remove_leftovers(store):
    """Work directories of imports, pulls and removals whose nspod died before finishing;
    returns their names."""
    removed = []
    for entry in os.listdir(store):
        if not entry.startswith((".import-", ".remove-", ".pull-")):
            continue
        owner = entry.split("-", 2)[1]
        pid, _, start = owner.partition(".")
        with contextlib.suppress(ValueError):
            if str(state.process_start_time(int(pid))) == start:
                continue  # its nspod is still at work
        shutil.rmtree(os.path.join(store, entry), ignore_errors=True)
        removed.append(entry)
    return removed


def gc(config):
    """`nspod gc`: the leftovers of dead imports and pulls, lines for the report."""
    store = store_dir(config.root)
    if not os.path.isdir(store):
        return []
    return [f"image store: removed {entry} (its nspod is gone)"
            for entry in _remove_leftovers(store)]
