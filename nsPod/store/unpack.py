"""Unpacking an image's files safely: a tarball's members or a directory's tree written
under a new root filesystem without following anything out of it, whiteouts applied, sizes
counted. The archive is hostile input (store/images.py imports it; store/oci.py's layers too).
"""
import copy
import errno
import lzma
import os
import posixpath
import stat
import subprocess
import tarfile
import zlib

from nsPod.kernel import mounts
from nsPod.store import state, unpack_limits
from nsPod.errors import ImageError, InputError, describe

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# tarfile's extraction filters (3.11.4+): the checks are ours (_safe_target), so tarfile must
# not redo them (its realpath checks follow the image's absolute symlinks on the host).
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
# What reading a damaged or hostile archive raises besides TarError: truncated or corrupt
# compression, a hard link to a member the archive does not hold (KeyError), odd headers.
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, KeyError,
               ValueError)
# Directories an archive member may be nested in. Real root filesystems stay far below (a
# deep node_modules: ~50); resolving each member inside the image costs its depth squared, so
# a small archive of a few thousand nested directories took minutes.
MAX_MEMBER_DEPTH = 256



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

def _extract(tar, dest, layer=False, budget=None):
    """Every member of `tar` into dest, which it can never leave.

    A member's directories are resolved as the container will see them, inside dest
    (mounts.secure_join): a symlink the archive made earlier, even an absolute one such as
    lib -> /usr/lib, leads inside the image, never onto the host, and so does a hard link's
    target. Whatever is in a member's way (a file, a symlink, a directory a layer replaces)
    is removed first, as tar does, and never written through. Owners are numeric, as a root
    filesystem's are; modes, setuid bits and device nodes are kept. Every member is charged
    to `budget` (unpack_limits.Budget; a fresh one with the default limits when none is
    given) before it is written.
    """
    budget = budget or unpack_limits.Budget().layer(_label(tar))
    for member in _members(tar):
        budget.charge(member)
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


def _apply_whiteouts(tar, rootfs, budget=None):
    """An OCI layer's deletions, applied to the layers below before its own files land:
    .wh.NAME removes NAME, .wh..wh..opq empties its directory (of what lower layers put
    there; this layer's own entries come after)."""
    budget = budget or unpack_limits.Budget().layer(_label(tar))
    for n, member in enumerate(_members(tar), 1):
        budget.count_only(n)
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
