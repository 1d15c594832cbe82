"""The host-wide registry of state roots: one file per root nspod has used, so that the
host-root containers of any root hide all of them, not only their own (kernel/container.py).

Root's alone (a 0700 directory owned by uid 0, refused otherwise); entries are written
atomically and the ones of roots that no longer exist are dropped as new ones come.
Pure standard library: the monitor imports this module.
"""
import contextlib
import errno
import hashlib
import os
import stat

from nsPod.errors import StateError

# A host-wide directory, one file per state root nspod has used: persistent, because a state
# root on disk (and its emptyDir volumes) outlives a reboot.
REGISTRY = "/var/lib/nspod-roots"
REGISTRY_ENTRY_MAX = 4096


def _entry_name(root):
    return hashlib.sha256(os.fsencode(root)).hexdigest()[:32]


def _open_registry(registry, create):
    if create:
        os.makedirs(os.path.dirname(registry), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(registry, 0o700)
    try:
        fd = os.open(registry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateError(f"registry of state roots {registry} is a symlink or not a "
                             "directory: refusing it") from None
        raise
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o022:
        os.close(fd)
        raise StateError(f"registry of state roots {registry} is not root's alone (uid "
                         f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): refusing it")
    return fd


def register(root, registry=None):
    """Record `root` in the host-wide registry (once; atomically). Entries of roots that no
    longer exist are dropped on the way, so the registry stays as small as the roots."""
    if os.geteuid() != 0:
        return  # only root makes containers, the registry's readers; it is root's
    name = _entry_name(root)
    fd = _open_registry(registry or REGISTRY, create=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=fd, follow_symlinks=False)
            return
        tmp = f".{name}.{os.getpid()}"
        wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=fd)
        try:
            os.write(wfd, os.fsencode(root) + b"\n")
            os.fsync(wfd)
        finally:
            os.close(wfd)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        for other, path in _entries(fd):
            if other != name and not os.path.isdir(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(other, dir_fd=fd)
    finally:
        os.close(fd)


def _entries(fd):
    for entry in os.listdir(fd):
        if entry.startswith("."):
            continue
        try:
            efd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(efd).st_mode):
                continue
            data = os.read(efd, REGISTRY_ENTRY_MAX)
        finally:
            os.close(efd)
        path = os.fsdecode(data.rstrip(b"\n"))
        if path.startswith("/") and path != "/" and "\0" not in path and "\n" not in path \
                and os.path.normpath(path) == path:
            yield entry, path


def registered_roots(registry=None):
    """Every state root in the registry (existing or not), sorted."""
    try:
        fd = _open_registry(registry or REGISTRY, create=False)
    except (StateError, OSError):
        return []
    if fd is None:
        return []
    try:
        return sorted({path for _, path in _entries(fd)})
    finally:
        os.close(fd)
