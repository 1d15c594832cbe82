"""Mount helpers for a container's child side, and mount-table queries for teardown.

Paths a container or an image controls are never resolved twice: a volume's subPath and a
mount's target are opened once, as file descriptors, inside their root (open_beneath,
open_in_root), and mounted as /proc/self/fd/N (bind_fd), as runc and the kubelet do. A
path checked and then mounted by its name again can be swapped for a symlink in between
(CVE-2017-1002101, CVE-2021-25741).
"""
import errno
import os
import stat

from nsPod.errors import SetupError
from nsPod.kernel import tracing
from nsPod.kernel.syscalls import (MNT_DETACH, MountFlag, ResolveFlag, flag_names, mount, openat2,
                                   umount2)

MAX_SYMLINKS = 40
# openat2's RESOLVE_BENEATH/IN_ROOT answer EAGAIN when a rename ran anywhere while they
# resolved '..': retried this often, then the O_NOFOLLOW walk (slower, never EAGAIN) decides.
OPENAT2_RETRIES = 8
O_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC


class PathEscapeError(SetupError):
    """A path inside a root (a volume, a container's root) leads out of it."""


def secure_join(root, path):
    """Resolve `path` as if `root` were `/`: symlinks, absolute or relative, stay inside root.

    A container's mount targets and a volume's subPath are written by the user; resolving them
    with the host's view would let a symlink like /data -> /etc place a mount on the host's
    /etc (the classic escape). Components that do not exist yet are kept as given.
    """
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p and p != "."]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                raise
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {path}", root)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)


def make_mountpoint(root, path, directory=True):
    """Create the mount point for `path` inside root (in the container's own upper layer);
    returns its host path, free of symlinks (read back from the fd that made it)."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root_fd, path, create="dir" if directory else "file")
    finally:
        os.close(root_fd)
    try:
        return fd_path(fd)
    finally:
        os.close(fd)


def fd_path(fd):
    """Where the kernel says the file open as fd is now (its path in this mount namespace)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def proc_fd(fd):
    """The magic link naming fd: mount(2) given it acts on the very file opened, whatever
    the path the file was reached by has become since."""
    return f"/proc/self/fd/{fd}"


def _parts(path):
    return [p for p in path.split("/") if p and p != "."]


def open_in_root(root_fd, path, create=None, mode=None):
    """An O_PATH fd for `path` resolved as if root_fd were `/` (runc's rule for mount targets):
    absolute symlinks restart at root_fd and '..' stops there, so a symlink planted by an
    image or a volume (/data -> /etc, -> ../../..) still lands inside the root.

    create: "dir" or "file" makes what is missing (directories on the way; the last
    component as said), each with mkdirat/openat on the fd of its parent, never by path.
    """
    return _open(root_fd, path, ResolveFlag.RESOLVE_IN_ROOT, create, mode, None, "the root")


def open_beneath(root_fd, path, root_path, create=None, mode=None, what="the volume"):
    """An O_PATH fd for `path` inside root_fd that never leaves it: the kubelet's rule for a
    volume's subPath. A symlink pointing inside is followed; one whose target leaves the
    root ('..' above it, or an absolute target) raises PathEscapeError, except an absolute
    target under root_path (the root's own resolved host path), which is followed inside.
    Missing directories are made (create="dir") with mkdirat on their parent's fd, with the
    root's permission bits (chmod'ed past the umask), as the kubelet's SafeMakeDir does.
    """
    return _open(root_fd, path, ResolveFlag.RESOLVE_BENEATH, create, mode, root_path, what)


def _open(root_fd, path, resolve, create, mode, root_path, what):
    flags = O_PATH_FLAGS
    resolve |= ResolveFlag.RESOLVE_NO_MAGICLINKS
    for _ in range(OPENAT2_RETRIES):
        try:
            return openat2(root_fd, "/".join(_parts(path)) or ".", flags, resolve)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                continue
            # ENOSYS: a kernel before 5.6 (or a filter refusing openat2). EXDEV: the path
            # left the root by a symlink: the walk tells which, and follows an absolute
            # link into the root's own host path. ENOENT: something is to be made.
            if e.errno in (errno.ENOSYS, errno.EXDEV, errno.EPERM) or \
                    (e.errno == errno.ENOENT and create):
                break
            raise
    return walk(root_fd, path, clamp=resolve & ResolveFlag.RESOLVE_IN_ROOT, create=create,
                mode=mode, root_path=root_path, what=what)


def walk(root_fd, path, clamp, create=None, mode=None, root_path=None, what="the root"):
    """Resolve `path` under root_fd one component at a time with O_PATH|O_NOFOLLOW, the way
    the kernel would, but with every symlink read and judged here; '..' pops our own stack
    of directory fds, so a directory moved elsewhere meanwhile cannot lead out.

    clamp: '..' at the root stays there and absolute targets restart at the root
    (RESOLVE_IN_ROOT); else both raise PathEscapeError (RESOLVE_BENEATH), but for an
    absolute target under root_path. Returns a new fd (the caller closes it).
    """
    stack = [root_fd]       # stack[0] is the caller's; the rest are ours
    parts = _parts(path)
    seen = []               # the components walked, for messages
    link = None             # the last symlink followed (name, target), for messages
    hops = made = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                elif not clamp:
                    if link:
                        raise PathEscapeError(f"{link[0]!r} is a symlink to {link[1]!r}, which "
                                              f"leads outside {what}")
                    raise PathEscapeError(f"{path!r} leads outside {what}")
                seen.append(name)
                continue
            try:
                fd = os.open(name, O_PATH_FLAGS | os.O_NOFOLLOW, dir_fd=stack[-1])
            except FileNotFoundError:
                if not create or made > MAX_SYMLINKS + len(_parts(path)):
                    raise
                made += 1
                _make(stack[-1], name, "file" if create == "file" and not parts else "dir",
                      mode)
                parts.insert(0, name)     # opened (and judged) like any other, next round
                continue
            st = os.fstat(fd)
            if not stat.S_ISLNK(st.st_mode):
                stack.append(fd)
                seen.append(name)
                continue
            try:
                target = os.readlink("", dir_fd=fd)
            finally:
                os.close(fd)
            hops += 1
            link = ("/".join(seen + [name]), target)
            if hops > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path!r}")
            if target.startswith("/"):
                rest = _parts(target)
                if not clamp:
                    inside = _parts(root_path or "")
                    if not root_path or rest[:len(inside)] != inside:
                        raise PathEscapeError(
                            f"{'/'.join(seen + [name])!r} is a symlink to {target!r}, "
                            f"outside {what}")
                    rest = rest[len(inside):]
                for extra in stack[1:]:
                    os.close(extra)
                del stack[1:]
                parts = rest + parts
            else:
                parts = _parts(target) + parts
        return os.dup(root_fd) if len(stack) == 1 else stack.pop()
    finally:
        for extra in stack[1:]:
            os.close(extra)


def _make(parent_fd, name, kind, mode):
    """Make `name` in the directory open as parent_fd; already there (a race) is fine."""
    try:
        if kind == "dir":
            os.mkdir(name, 0o755 if mode is None else mode, dir_fd=parent_fd)
        else:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644 if mode is None else mode,
                             dir_fd=parent_fd))
    except FileExistsError:
        return
    shown = "default" if mode is None else oct(mode)
    tracing.note("mkdirat" if kind == "dir" else "openat", [name, f"mode={shown}"], result=0,
                 text=f"made {kind} {name} (mode {shown})")
    if mode is not None:
        # The mode without the umask: opened anew without following, so a symlink swapped
        # in for what was just made cannot redirect the chmod.
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                         | (os.O_DIRECTORY if kind == "dir" else 0), dir_fd=parent_fd)
        except OSError:
            return      # replaced meanwhile: the walk judges what is there now
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def bind(source, target, read_only=False, recursive=True, extra_flags=0):
    """Bind source at target; read_only and extra_flags (e.g. MS_NODEV) are per-mount flags
    of the new mount only, on top of those the source's mount already has."""
    flags = MountFlag.MS_BIND | (MountFlag.MS_REC if recursive else 0)
    mount(source, target, None, flags)
    if read_only:
        extra_flags |= MountFlag.MS_RDONLY
    if extra_flags:
        # A bind mount takes its flags only in a second, remount call.
        remount(target, extra_flags)


def bind_fd(source_fd, target_fd, recursive=True):
    """Bind the file open as source_fd onto the one open as target_fd (both O_PATH): the
    mount acts on those very files, not on whatever their paths lead to by now. Per-mount
    flags are for remount_fd on the target opened again (it then names the new mount)."""
    flags = MountFlag.MS_BIND | (MountFlag.MS_REC if recursive else 0)
    try:
        mount(proc_fd(source_fd), proc_fd(target_fd), None, flags)
    except OSError as e:
        # /proc/self/fd/N means nothing to a reader: name the files as the kernel sees them.
        raise OSError(e.errno, f"mount({fd_path(source_fd)} on {fd_path(target_fd)}, "
                               f"{flag_names(flags, MountFlag)}): {os.strerror(e.errno)}") from None


MS_NOATIME, MS_NODIRATIME = 1024, 2048  # <sys/mount.h>; only ever read back and kept
# statvfs's f_flag bits and the per-mount flags they stand for.
_STATVFS_FLAGS = {
    os.ST_RDONLY: MountFlag.MS_RDONLY, os.ST_NOSUID: MountFlag.MS_NOSUID,
    os.ST_NODEV: MountFlag.MS_NODEV, os.ST_NOEXEC: MountFlag.MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MountFlag.MS_RELATIME,
}


def remount(target, add_flags):
    """Add per-mount flags to the mount at target (MS_REMOUNT|MS_BIND).

    Such a remount sets the flags to exactly those given: the ones the mount already has
    (nosuid, noexec of a host path...) are read back and kept, as runc does, or making a
    volume read-only would quietly make it exec-able too.
    """
    _remount(target, os.statvfs(target).f_flag, add_flags)


def remount_fd(fd, add_flags):
    """remount() of the mount whose root is open as fd (read back and changed by fd)."""
    _remount(proc_fd(fd), os.fstatvfs(fd).f_flag, add_flags)


def _remount(target, current, add_flags):
    flags = MountFlag(0)
    for bit, flag in _STATVFS_FLAGS.items():
        if current & bit:
            flags |= flag
    mount(None, target, None, MountFlag.MS_BIND | MountFlag.MS_REMOUNT | flags | add_flags)


def mask(path):
    """Make path unreadable as runc's maskedPaths do: /dev/null over a file, an empty
    read-only tmpfs over a directory; a path this kernel lacks needs nothing."""
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MountFlag.MS_RDONLY | MountFlag.MS_NOSUID
              | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC, "size=0,mode=0555")
    elif os.path.lexists(path):
        mount("/dev/null", path, None, MountFlag.MS_BIND)


def make_read_only(path):
    """runc's readonlyPaths: path bound onto itself, read-only (if this kernel has it)."""
    if os.path.lexists(path):
        bind(path, path, read_only=True)


def mount_tmpfs(target, options, flags=0):
    mount("tmpfs", target, "tmpfs", flags, options)


def detach(target):
    """Lazy unmount; 'not mounted' and 'no such path' are success."""
    try:
        umount2(target, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def _unescape(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_points(mountinfo="/proc/self/mountinfo"):
    with open(mountinfo) as f:
        return [_unescape(line.split()[4]) for line in f]


def mounts_under(path, mountinfo="/proc/self/mountinfo"):
    """Mount points at or below path, deepest first (the order to unmount them)."""
    path = os.path.abspath(path)
    found = [m for m in mount_points(mountinfo) if m == path or m.startswith(path + "/")]
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)
