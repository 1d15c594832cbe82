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
import errno
import hashlib
import json
import lzma
import os
import platform
import posixpath
import stat
import subprocess
import tarfile
import uuid
import zlib

from nsPod.kernel import mounts
from nsPod.store import state
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
# What reading a damaged or hostile archive raises besides TarError: truncated or corrupt
# compression, a hard link to a member the archive does not hold (KeyError), odd headers.
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, KeyError,
               ValueError)
# An OCI layout is hostile input too: its indexes may fan out (50 references each, 4 deep:
# 6 million descriptors in 32 KB), its JSON blobs may be huge. Limits far above real images.
MAX_DESCRIPTORS = 1000       # descriptors the walk of the indexes may visit, in all
MAX_JSON_BLOB = 4 << 20      # an index, manifest or config (registries refuse > 4 MiB too)
MAX_INDEX_DEPTH = 4
# Directories an archive member may be nested in. Real root filesystems stay far below (a
# deep node_modules: ~50); resolving each member inside the image costs its depth squared, so
# a small archive of a few thousand nested directories took minutes.
MAX_MEMBER_DEPTH = 256


class ImageError(NspodError):
    """An image cannot be imported, found or removed."""


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


def _source_kind(source):
    """("oci" | "dir" | "tar", the archive opened or None). Only a directory or a regular file
    is read: a FIFO would block the import forever, a device would never end."""
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise InputError(f"FILE|DIR: {source!r} does not exist") from None
    except OSError as e:
        raise InputError(f"FILE|DIR: cannot read {source!r}: {describe(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        is_oci = all(os.path.exists(os.path.join(source, f)) for f in ("index.json", "blobs"))
        return ("oci" if is_oci else "dir"), None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"FILE|DIR: {source!r} is {_file_kind(st.st_mode)}, not a tar archive "
                         "or a directory")
    try:
        archive = _open_regular(source, follow=True)
    except OSError as e:
        raise InputError(f"FILE|DIR: cannot read {source!r}: {describe(e)}") from None
    try:
        if tarfile.is_tarfile(archive):
            archive.seek(0)
            return "tar", archive
    except _TAR_ERRORS as e:
        archive.close()
        raise InputError(f"FILE|DIR: cannot read {source!r}: {describe(e)}") from None
    archive.close()
    raise InputError(f"FILE|DIR: {source!r} is neither a tar archive (.tar, .tar.gz...), "
                     "a directory, nor an OCI image layout")


def _file_kind(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path, follow=False, dir_fd=None):
    """A regular file opened for reading, or OSError: never blocks at the open (O_NONBLOCK:
    a FIFO opens at once, then is refused) and, unless `follow`, not through a symlink."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_file_kind(st.st_mode)}, not a regular file", path)
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
        f.label = path   # for messages: the file object's name is the fd
        return f
    except BaseException:
        os.close(fd)
        raise


def _open_tar(source):
    """A tar reader over an open regular file (rewound) or a path in our own work tree."""
    try:
        if isinstance(source, str):
            tar = tarfile.open(source, "r:*")
        else:
            source.seek(0)
            tar = tarfile.open(fileobj=source, mode="r:*")
        tar.label = _label(source)
        return tar
    except _TAR_ERRORS as e:
        raise ImageError(f"{_label(source)}: cannot read it as a tar archive: "
                         f"{describe(e)}") from None


def _label(source):
    return source if isinstance(source, str) else getattr(source, "label", "the archive")


def _is_oci_archive(archive):
    """A tarball of an OCI layout (index.json and oci-layout at its top) rather than of a root
    filesystem."""
    top = set()
    with _open_tar(archive) as tar:
        for member in _members(tar):
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
    """Bytes of the regular files under path, hard links once. Iterative: an image's tree
    may be deeper than Python's recursion (os.walk recurses), and deeper than PATH_MAX: then
    du, which walks by descriptors, counts it (its figure includes the directories)."""
    total, seen = 0, set()
    stack = [path]
    try:
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_size
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        result = subprocess.run(["du", "-s", "-b", "-x", "--", path], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL)
        try:
            return int(result.stdout.split()[0])
        except (IndexError, ValueError):
            raise ImageError(f"size of {path}: du: {result.stderr.strip()}") from None
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
    for member in _members(tar):
        parent_rel, base = posixpath.split(member.name.strip("/"))
        if base in ("", ".", ".."):
            continue  # the archive's root entry: dest is made already
        if layer and base.startswith(WHITEOUT):
            continue  # applied before (_apply_whiteouts)
        _check_depth(member)
        try:
            target = os.path.join(mounts.secure_join(dest, parent_rel), base)
            _make_room(target, member)
        except OSError as e:
            raise ImageError(f"unpack {member.name}: {describe(e)}") from None
        member = copy.copy(member)
        member.name = os.path.relpath(target, dest)
        if member.islnk():
            member.linkname = os.path.relpath(mounts.secure_join(dest, member.linkname), dest)
            if not os.path.lexists(os.path.join(dest, member.linkname)):
                # tarfile would look for it among the members and raise a bare KeyError.
                raise ImageError(f"unpack {member.name}: a hard link to {member.linkname}, "
                                 "which the archive does not hold before it")
        try:
            tar.extract(member, dest, set_attrs=True, numeric_owner=True, **_TRUSTED)
        except _TAR_ERRORS as e:
            raise ImageError(f"unpack {member.name}: {describe(e)}") from None


def _check_depth(member):
    for what, path in (("", member.name), (" hard link target", member.linkname)):
        if path and path.count("/") > MAX_MEMBER_DEPTH:
            raise ImageError(f"unpack {member.name[:100]}...: its{what} is more than "
                             f"{MAX_MEMBER_DEPTH} directories deep")


def _members(tar):
    """The archive's members; a damaged archive is an ImageError, not zlib's or lzma's."""
    iterator = iter(tar)
    while True:
        try:
            member = next(iterator)
        except StopIteration:
            return
        except _TAR_ERRORS as e:
            raise ImageError(f"{getattr(tar, 'label', 'the archive')}: cannot read it as a "
                             f"tar archive: {describe(e)}") from None
        yield member


def _make_room(target, member):
    if not os.path.lexists(target):
        return
    if member.isdir() and os.path.isdir(target) and not os.path.islink(target):
        return  # a directory stays; its new contents are added
    if os.path.isdir(target) and not os.path.islink(target):
        state.remove_tree(target)
    else:
        os.unlink(target)


def _apply_whiteouts(tar, rootfs):
    """An OCI layer's deletions, applied to the layers below before its own files land:
    .wh.NAME removes NAME, .wh..wh..opq empties its directory (of what lower layers put
    there; this layer's own entries come after)."""
    for member in _members(tar):
        parent_rel, base = posixpath.split(member.name.strip("/"))
        if not base.startswith(WHITEOUT):
            continue
        _check_depth(member)
        parent = mounts.secure_join(rootfs, parent_rel)
        if base == OPAQUE:
            if os.path.isdir(parent) and not os.path.islink(parent):
                for entry in os.listdir(parent):
                    _remove(os.path.join(parent, entry))
        elif base[len(WHITEOUT):] not in ("", ".", ".."):   # never the directory or its parent
            _remove(os.path.join(parent, base[len(WHITEOUT):]))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        state.remove_tree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# --- OCI image layouts ----------------------------------------------------------------------

def _import_oci(layout, rootfs):
    """Apply the image's layers in order; return what its config gives a container."""
    with _Layout(layout) as oci:
        index = oci.json_file("index.json")
        manifest = _pick_manifest(oci, index)
        config = oci.blob_json(manifest.get("config"), "the image config")
        layers = manifest.get("layers") or []
        if not isinstance(layers, list):
            raise ImageError("OCI layout: the image manifest's layers are not a list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise ImageError(f"OCI layout: layer {i} is not a descriptor")
            media_type = str(layer.get("mediaType", ""))
            if "zstd" in media_type:
                raise ImageError(f"layer {i} ({layer.get('digest')}) is zstd-compressed, which "
                                 "nspod cannot unpack; export the image with gzip layers")
            with oci.blob(layer, f"layer {i}") as blob:
                with _open_tar(blob) as tar:
                    _apply_whiteouts(tar, rootfs)
                with _open_tar(blob) as tar:
                    _extract(tar, rootfs, layer=True)
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
