"""Where pulled images live: content-addressed, every layer unpacked once and shared.

Under <root>/images/ (beside the images `nspod image import` makes, images.py):
  .blobs/sha256/<hex>            manifests and image configs, as the registry sent them
  .layers/sha256-<hex>/          one layer (by its compressed digest, as manifests name it),
                                 unpacked once, its whiteouts kept as .wh.* files
  .roots/sha256-<hex>/rootfs/    an image's root filesystem (by its manifest digest): the
                                 layers applied in order, every file a hard link into its
                                 layer's directory; directories and whiteouts applied
  <name>/config.json             an image by name: its reference, manifest digest, root,
                                 layers, and what the container start reads (images.configs)
  .pull-<pid>.<start>-<rand>/    a pull at work; removed by it, or by a later pull or gc
                                 when its nspod is gone
  .lock                          pulls hold it shared, gc exclusive

Why hard links, not an overlay stack: the container start takes one directory as its
overlay's lower layer (images.configs' "rootfs"), and keeps doing so unchanged; a file's data
is on disk once however many images have its layer, and a second image with a shared layer
costs only its directory entries. Nothing writes into a root once it is made (a container
writes into its overlay's upper layer), so the shared inodes never change.
"""
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat

from nsPod.kernel import mounts
from nsPod.store import state
from nsPod.errors import describe

BLOBS = ".blobs"
LAYERS = ".layers"
ROOTS = ".roots"
LOCK = ".lock"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_ID = re.compile(r"sha256-[a-f0-9]{64}")


def digest_id(digest):
    """sha256:<hex> -> sha256-<hex>, one path component."""
    return digest.replace(":", "-", 1)


def valid_id(name):
    return isinstance(name, str) and bool(_ID.fullmatch(name))


def blob_path(store, digest):
    algorithm, _, hex_digest = digest.partition(":")
    return os.path.join(store, BLOBS, algorithm, hex_digest)


def layer_dir(store, digest):
    return os.path.join(store, LAYERS, digest_id(digest))


def root_dir(store, manifest_digest):
    return os.path.join(store, ROOTS, digest_id(manifest_digest))


def ensure_dirs(store):
    for sub in (BLOBS, os.path.join(BLOBS, "sha256"), LAYERS, ROOTS):
        os.makedirs(os.path.join(store, sub), mode=0o700, exist_ok=True)


@contextlib.contextmanager
def locked(store, exclusive):
    os.makedirs(store, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(store, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                 | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def read_blob(store, digest):
    """A stored blob's bytes if it is there and still matches its digest, else None."""
    try:
        with open(blob_path(store, digest), "rb") as f:
            data = f.read()
    except OSError:
        return None
    algorithm, _, hex_digest = digest.partition(":")
    return data if hashlib.new(algorithm, data).hexdigest() == hex_digest else None


def put_blob(store, digest, data, work):
    """Store verified bytes under their digest (temp file in `work`, then renamed)."""
    final = blob_path(store, digest)
    if os.path.exists(final):
        return
    tmp = os.path.join(work, "blob-" + digest_id(digest))
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)


# --- making a root from layers ----------------------------------------------------------------

def compose(layer_dirs, rootfs):
    """Apply unpacked layers, lowest first, onto the empty directory rootfs with hard links."""
    for layer in layer_dirs:
        _whiteouts(layer, rootfs)
        _link_entries(layer, rootfs)


def _whiteouts(layer, rootfs):
    for directory, dirs, files in os.walk(layer):
        rel = os.path.relpath(directory, layer)
        for name in sorted(files):
            if not name.startswith(WHITEOUT):
                continue
            parent = mounts.secure_join(rootfs, "" if rel == "." else rel)
            if name == OPAQUE:
                if os.path.isdir(parent) and not os.path.islink(parent):
                    for entry in os.listdir(parent):
                        _remove(os.path.join(parent, entry))
            else:
                target = name[len(WHITEOUT):]
                if target in ("", ".", ".."):
                    continue    # names no entry; never the directory or its parent
                _remove(os.path.join(parent, target))


def _link_entries(layer, rootfs):
    for directory, dirs, files in os.walk(layer):
        rel = os.path.relpath(directory, layer)
        parent = mounts.secure_join(rootfs, "" if rel == "." else rel)
        if not os.path.isdir(parent) or os.path.islink(parent):
            # A lower entry in the way of this layer's directory was replaced by it when
            # the directory itself was linked (below); anything else is a broken layer.
            continue
        for name in sorted(dirs + files):
            if name.startswith(WHITEOUT):
                continue
            source = os.path.join(directory, name)
            target = os.path.join(parent, name)
            st = os.lstat(source)
            if stat.S_ISDIR(st.st_mode):
                if not (os.path.isdir(target) and not os.path.islink(target)):
                    _remove(target)
                    os.mkdir(target)
                os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
                os.chmod(target, stat.S_IMODE(st.st_mode))
            else:
                _remove(target)
                # A hard link to the entry itself (a symlink stays a symlink): the data stays
                # in the layer's directory, on disk once.
                os.link(source, target, follow_symlinks=False)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def tree_size(path):
    total, seen = 0, set()
    for directory, dirs, files in os.walk(path):
        for name in files + dirs:
            st = os.lstat(os.path.join(directory, name))
            if stat.S_ISDIR(st.st_mode):
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# --- garbage ----------------------------------------------------------------------------------

def collect(store, image_configs, pod_rootfs):
    """Remove roots no image names and no pod uses, then layers and blobs no remaining root
    needs. `image_configs`: the stored images' configs; `pod_rootfs`: realpaths of the root
    filesystems of every pod's containers. Call with the lock held exclusively. Returns
    (roots, layers, blobs) removed."""
    keep_roots, keep_layers, keep_blobs = set(), set(), set()
    for c in image_configs:
        if valid_id(c.get("root")):
            keep_roots.add(c["root"])
    removed = [0, 0, 0]
    roots = os.path.join(store, ROOTS)
    for name in _listdir(roots):
        path = os.path.join(roots, name)
        if name in keep_roots or os.path.realpath(os.path.join(path, "rootfs")) in pod_rootfs:
            keep_roots.add(name)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed[0] += 1
    for name in keep_roots:
        try:
            meta = state.read_json(os.path.join(roots, name, "root.json"))
        except (OSError, ValueError):
            continue
        keep_layers.update(digest_id(d) for d in meta.get("layers", []) if isinstance(d, str))
        keep_blobs.update(d for d in meta.get("blobs", []) if isinstance(d, str))
    layers = os.path.join(store, LAYERS)
    for name in _listdir(layers):
        if name not in keep_layers:
            shutil.rmtree(os.path.join(layers, name), ignore_errors=True)
            removed[1] += 1
    blobs = os.path.join(store, BLOBS, "sha256")
    for name in _listdir(blobs):
        if f"sha256:{name}" not in keep_blobs:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(blobs, name))
                removed[2] += 1
    return tuple(removed)


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise OSError(e.errno, f"list {path}: {describe(e)}") from None
