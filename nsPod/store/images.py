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

This module is the store (names, import, list, remove, clean-up); store/unpack.py reads the
archives and directories safely, store/oci.py walks an OCI layout. ImageError is in errors.py.
"""
import contextlib
import os
import uuid

from nsPod.store import state
from nsPod.errors import ImageError, InputError, NspodError
from nsPod.store.oci import _import_oci
from nsPod.store.unpack import (_copy_tree, _extract, _is_oci_archive, _open_tar,
                                _source_kind, _tree_size)

CONFIG_FILE = "config.json"
ROOTFS = "rootfs"


def store_dir(root):
    return os.path.join(root, "images")


def reference(name, argument="NAME"):
    """The store's name:tag for NAME, or InputError naming the argument."""
    from nsPod.manifest.spec import image_is_path, image_name_problem, image_reference
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
    """A pulled image's root is shared by digest (store/layers.py); an imported one's is
    its own."""
    from nsPod.store.layers import ROOTS, valid_id
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
    kind, archive = _source_kind(source)
    with contextlib.ExitStack() as stack:
        if archive is not None:
            stack.enter_context(archive)
        return _import(config, ref, source, kind, archive)


def _import(config, ref, source, kind, archive):
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
        if kind == "tar" and _is_oci_archive(archive):
            layout = os.path.join(work, "layout")
            os.mkdir(layout, 0o700)
            with _open_tar(archive) as tar:
                _extract(tar, layout)
            source, kind = layout, "oci"
        if kind == "oci":
            image = _import_oci(source, rootfs)
        elif kind == "tar":
            with _open_tar(archive) as tar:
                _extract(tar, rootfs)
            image = {}
        else:
            _copy_tree(source, rootfs)
            image = {}
        state.remove_tree(os.path.join(work, "layout"), ignore_errors=True)
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
        state.remove_tree(work, ignore_errors=True)
        raise
    return stored


# --- removal --------------------------------------------------------------------------------

def remove(config, name):
    """Remove an image no pod under this root uses."""
    from nsPod.store.locks import admission_lock
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
    state.remove_tree(doomed, ignore_errors=True)
    collect(config)
    return ref


def _config_of(path):
    try:
        return state.read_json(os.path.join(path, CONFIG_FILE))
    except (OSError, ValueError):
        return {}


def collect(config):
    """Remove the shared roots, layers and blobs (store/layers.py) that no image names and
    no pod uses. Returns (roots, layers, blobs) removed."""
    from nsPod.store import layers
    from nsPod.store.locks import admission_lock
    store_path = store_dir(config.root)
    if not os.path.isdir(os.path.join(store_path, layers.ROOTS)):
        return (0, 0, 0)
    with admission_lock(config), layers.locked(store_path, exclusive=True):
        _remove_leftovers(store_path)
        return layers.collect(store_path, configs(config.root).values(), _pod_roots(config.root))


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
    """Work directories of imports, pulls and removals whose nspod died before finishing (killed,
    even by SIGKILL: the pid and start time in the name tell a live owner from a dead one).
    Returns their names."""
    removed = []
    try:
        entries = os.listdir(store)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.startswith((".import-", ".remove-", ".pull-")):
            continue
        owner = entry.split("-", 2)[1]
        pid, _, start = owner.partition(".")
        with contextlib.suppress(ValueError):
            if str(state.process_start_time(int(pid))) == start:
                continue  # its nspod is still at work
        state.remove_tree(os.path.join(store, entry), ignore_errors=True)
        removed.append(entry)
    return removed


def gc(root):
    """`nspod gc`: what killed imports, pulls and removals left in the store."""
    return [f"images: removed {entry}, left by a killed nspod"
            for entry in _remove_leftovers(store_dir(root))]
