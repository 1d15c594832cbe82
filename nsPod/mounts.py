"""Mount helpers for a container's child side, and mount-table queries for teardown."""
import errno
import os

from nsPod.syscalls import MNT_DETACH, MountFlag, mount, umount2

MAX_SYMLINKS = 40


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
    """Create the mount point for `path` inside root (in the container's own upper layer)."""
    target = secure_join(root, path)
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    return target


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
    current = os.statvfs(target).f_flag
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
