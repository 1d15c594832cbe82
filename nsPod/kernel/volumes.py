"""Pod-level volumes: they belong to the pod, made before its containers and removed after.

emptyDir is a directory under the pod's state, or one tmpfs per volume with medium Memory
(mode 0777, as the kubelet makes it, so any uid in any container can write); hostPath is the
host's own path, checked (and made, for the ...OrCreate types) before anything else.

A container's mount of a volume starts from open_source: the volume's directory and its
subPath opened as one file descriptor, resolved inside the volume (see mounts.open_beneath).
"""
import os
import stat

from nsPod.errors import InputError
from nsPod.kernel.mounts import PathEscapeError, detach, fd_path, mount_tmpfs, open_beneath
from nsPod.kernel.syscalls import MountFlag

HOST_PATH_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
}


def check_host_path(volume, field, state_root=None):
    """Before anything is created: the path is not nspod's own state, and exists as its type
    says (or may be created)."""
    check_not_state(volume.path, field, state_root)
    try:
        mode = os.stat(volume.path).st_mode
    except FileNotFoundError:
        if volume.host_type == "DirectoryOrCreate":
            return
        if volume.host_type == "FileOrCreate":
            if not os.path.isdir(os.path.dirname(volume.path)):
                raise InputError(f"{field}: {volume.path!r}: its directory does not exist") from None
            return
        raise InputError(f"{field}: {volume.path!r} does not exist on this host "
                         "(type DirectoryOrCreate or FileOrCreate would create it)") from None
    check = HOST_PATH_CHECKS.get(volume.host_type)
    if check and not check[0](mode):
        raise InputError(f"{field}: {volume.path!r} is not {check[1]} (type {volume.host_type})")


def check_not_state(path, field, state_root=None):
    """A hostPath inside a state root (or the registry of them) would hand a container other
    pods' control sockets, Secrets and monitor locks: refused. Paths that merely contain a
    root (`/`, `/var`) stay the admin's choice, as in Kubernetes; the real path is compared,
    so a symlink to a root is refused too."""
    from nsPod.kernel import root_registry
    real = os.path.realpath(path)
    guarded = set(root_registry.registered_roots()) | {root_registry.REGISTRY}
    if state_root:
        guarded.add(state_root)
    for guarded_path in sorted(guarded):
        real_guarded = os.path.realpath(guarded_path)
        if real == real_guarded or real.startswith(real_guarded.rstrip("/") + "/"):
            raise InputError(f"{field}: {path!r} is inside nspod's state ({guarded_path}): "
                             "a container must not reach it")


def create(volume):
    if volume.kind == "claim":
        # A claim's volume outlives its pods: made on first use, never removed by `rm`.
        if not os.path.isdir(volume.path):
            os.makedirs(os.path.dirname(volume.path), mode=0o700, exist_ok=True)
            try:
                os.mkdir(volume.path, 0o777)
                os.chmod(volume.path, 0o777)
            except FileExistsError:
                pass
        return
    if volume.kind in FILE_KINDS:
        os.makedirs(volume.path, mode=0o755, exist_ok=True)
        os.chmod(volume.path, 0o755)
        if volume.kind == "secret":
            # A Secret's data is never written to disk: the volume is its own tmpfs.
            mount_tmpfs(volume.path, "mode=0755",
                        MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC)
        write_layout(volume.path, volume.files, group=volume.group)
        return
    if volume.kind == "host":
        if volume.host_type == "DirectoryOrCreate":
            os.makedirs(volume.path, mode=0o755, exist_ok=True)
        elif volume.host_type == "FileOrCreate" and not os.path.exists(volume.path):
            os.close(os.open(volume.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        return
    os.makedirs(volume.path, exist_ok=True)
    os.chmod(volume.path, 0o777)
    if volume.kind == "tmpfs":
        options = "mode=0777" + (f",size={volume.size}" if volume.size else "")
        mount_tmpfs(volume.path, options, MountFlag.MS_NOSUID | MountFlag.MS_NODEV)


def remove(volume):
    """Unmount a tmpfs volume; the directory goes with the pod's state directory."""
    if volume.kind in ("tmpfs", "secret"):
        detach(volume.path)


# nspod's own directories: opened without following a symlink, subPaths kept on their device.
EMPTY_DIR_KINDS = ("dir", "tmpfs", "files", "secret", "claim")
FILE_KINDS = ("files", "secret")
DATA_LINK = "..data"
# What a made subPath directory takes from its volume's: the permissions, and setgid (an
# fsGroup emptyDir's, which a plain chmod would clear) and sticky; never setuid.
SUBPATH_MODE = 0o3777


def open_source(kind, path, sub_path, name):
    """An O_PATH fd for what a container mounts: the volume at `path`, or its sub_path.

    kind: the VolumePlan's ("dir", "tmpfs", "host"), or None for nspod's own files (hosts,
    termination log). An emptyDir's directory is nspod's and is opened without following a
    symlink; a hostPath's is the admin's choice and may be one (as in Kubernetes). The
    subPath, written by a user into a volume a container may write, is resolved inside the
    volume: a symlink pointing inside is followed, one leading out refuses the start; a
    missing subPath is made as a directory with the volume's permission bits (the kubelet's
    SafeMakeDir). The fd is then checked again: on the volume's file system (emptyDir) and,
    by the kernel's own account of where it is, under the volume's directory.
    """
    empty_dir = kind in EMPTY_DIR_KINDS
    flags = os.O_PATH | os.O_CLOEXEC
    if empty_dir:
        flags |= os.O_DIRECTORY | os.O_NOFOLLOW
    elif sub_path:
        flags |= os.O_DIRECTORY
    root_fd = os.open(path, flags)
    if not sub_path:
        return root_fd
    try:
        root_path = fd_path(root_fd)
        root_st = os.fstat(root_fd)
        what = f"volume {name}"
        try:
            fd = open_beneath(root_fd, sub_path, root_path, create="dir",
                              mode=stat.S_IMODE(root_st.st_mode) & SUBPATH_MODE, what=what)
        except PathEscapeError as e:
            raise PathEscapeError(f"subPath {sub_path!r}: {e}") from None
        try:
            st = os.fstat(fd)
            where = fd_path(fd)
            if empty_dir and st.st_dev != root_st.st_dev:
                raise PathEscapeError(f"subPath {sub_path!r} is on another file system than "
                                      f"{what}")
            if where != root_path and not where.startswith(root_path.rstrip("/") + "/"):
                raise PathEscapeError(f"subPath {sub_path!r} resolved to {where!r}, outside "
                                      f"{what} ({root_path})")
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(root_fd)


def write_layout(path, files, stamp=None, group=None):
    """The kubelet's AtomicWriter: every file in a new `..<timestamp>` directory, then the
    `..data` symlink swapped to it by rename(2) (a reader sees the old set or the new one,
    never a mix), each top-level name a symlink `name -> ..data/name`, then the old
    directory and the names no longer given removed. Used to make a volume and to update it
    (`nspod apply` of a changed ConfigMap) while containers read it.

    files: [[relative path, base64 content, mode]], already checked (plan/files.py). All of it
    is done through a descriptor of `path` opened without following a symlink, each step
    with dir_fd, never following one. `group` (the pod's fsGroup): every file, directory and
    link is group-owned by it, files get group read and directories group r-x and setgid, as
    the kubelet's SetVolumeOwnership does for these read-only volumes.
    """
    import base64
    import time
    root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        old_target = _read_link(root, DATA_LINK)
        stamp = stamp or time.strftime("%Y_%m_%d_%H_%M_%S.", time.gmtime()) + \
            f"{time.time_ns() % 1_000_000_000:09d}"
        new_dir = f"..{stamp}"
        while new_dir == old_target or _exists(root, new_dir):
            new_dir += "_"
        os.mkdir(new_dir, 0o755, dir_fd=root)
        base = os.open(new_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=root)
        try:
            _own_dir(base, group)
            for rel, content, mode in files:
                _write_file(base, rel, base64.b64decode(content), mode, group)
        finally:
            os.close(base)
        _own_dir(root, group)
        tmp = DATA_LINK + "_tmp"
        if _exists(root, tmp):
            os.unlink(tmp, dir_fd=root)
        os.symlink(new_dir, tmp, dir_fd=root)
        _own_link(root, tmp, group)
        os.rename(tmp, DATA_LINK, src_dir_fd=root, dst_dir_fd=root)
        tops = {rel.split("/")[0] for rel, _, _ in files}
        for name in sorted(tops):
            if not _exists(root, name):
                os.symlink(f"{DATA_LINK}/{name}", name, dir_fd=root)
                _own_link(root, name, group)
        for name in os.listdir(root):
            if name.startswith("..") or name in tops:
                continue
            if _read_link(root, name) == f"{DATA_LINK}/{name}":
                os.unlink(name, dir_fd=root)
        if old_target and old_target.startswith("..") and "/" not in old_target:
            _remove_tree(root, old_target)
    finally:
        os.close(root)


def _exists(dir_fd, name):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _read_link(dir_fd, name):
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except (FileNotFoundError, OSError):
        return None


def _own_dir(fd, group):
    """An fsGroup volume's directory: group-owned, group r-x, setgid (kubelet: 0o2550 mask)."""
    if group is not None:
        os.fchown(fd, -1, group)
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o2550)


def _own_link(dir_fd, name, group):
    if group is not None:
        os.chown(name, -1, group, dir_fd=dir_fd, follow_symlinks=False)


def _write_file(base, rel, data, mode, group=None):
    parts = rel.split("/")
    fd = os.dup(base)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
            if made:
                _own_dir(fd, group)
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                      os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            if group is not None:
                # The kubelet's read-only mask: defaultMode/mode plus group read.
                os.fchown(out, -1, group)
                mode |= 0o440
            os.fchmod(out, mode)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _remove_tree(dir_fd, name):
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_tree(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
