"""/run/netns/<name>: a pod's network namespace named as `ip netns` names them, a bind
mount made and removed only when its inode is the pod's. Plain mount calls: no pyroute2.
"""
import errno
import os

from nsPod.errors import NetworkError
from nsPod.kernel import syscalls, tracing
from nsPod.kernel.syscalls import MNT_DETACH, MountFlag
from nsPod.net.links import NETNS_DIR, netns_path


def _nsfs_dev():
    return os.stat("/proc/self/ns/net").st_dev


def netns_inode_at(path):
    """The inode of the netns bind-mounted at `path` (its top mount); None when `path` holds
    no netns (absent, a plain file, a symlink: never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NetworkError(f"stat {path}: {e.strerror} (errno {e.errno})") from e
    return st.st_ino if st.st_dev == _nsfs_dev() else None


def netns_attach(root, pod_name, pause_pid, netns_fd=None, replace=()):
    """Bind-mount pause's netns at /run/netns/<the pod's name>; returns the path.

    Already bound to this netns: nothing to do. Bound to a netns in `replace` (an earlier
    sandbox of this pod, as the pod's records say): replaced. Anything else at that path (a
    user's `ip netns add`, another pod's, a file, a symlink) is refused, never replaced or
    removed. With `netns_fd` the mount is made from that fd, so it names exactly the netns the
    veth went into even if the pid has been reused since.
    """
    path = netns_path(root, pod_name)
    try:
        if not os.path.isdir(NETNS_DIR):
            os.makedirs(NETNS_DIR, exist_ok=True)
            os.chmod(NETNS_DIR, 0o755)      # as iproute2 makes it, whatever our umask
    except OSError as e:
        raise NetworkError(f"netns for pod {pod_name}: mkdir {NETNS_DIR}: {e.strerror}") from e
    if netns_fd is not None:
        wanted = os.fstat(netns_fd).st_ino
        source = f"/proc/self/fd/{netns_fd}"
    else:
        source = f"/proc/{int(pause_pid)}/ns/net"
        try:
            wanted = os.stat(source).st_ino
        except OSError as e:
            raise NetworkError(f"netns for pod {pod_name}: stat {source}: {e.strerror}") from e
    current = netns_inode_at(path)
    if current == wanted:
        return path
    if current is not None and current in replace:
        netns_detach(root, pod_name, [current])
    elif os.path.lexists(path):
        raise NetworkError(
            f"netns for pod {pod_name}: {path} exists and is not this pod's network namespace "
            f"(nspod root {os.path.normpath(root)}): remove it or give the pod another name")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o444)
    except OSError as e:
        raise NetworkError(f"netns for pod {pod_name}: create {path}: {e.strerror} "
                           f"(errno {e.errno}): it is not this pod's") from e
    try:
        # Onto the file just made, through its fd: a name swapped for a symlink meanwhile
        # is not followed.
        tracing.note("bind netns", [wanted, path, f"fd={fd}"],
                     text=f"bind netns {wanted} at {path} (fd {fd})")
        syscalls.mount(source, f"/proc/self/fd/{fd}", None, MountFlag.MS_BIND)
    except OSError as e:
        _unlink(path)
        raise NetworkError(f"netns for pod {pod_name}: bind {source} at {path}: "
                           f"{e.strerror} (errno {e.errno})") from e
    finally:
        os.close(fd)
    return path


def netns_detach(root, pod_name, inodes):
    """Unmount and remove /run/netns/<the pod's name> when it holds one of the netns `inodes`
    (the pod's, as its records say); True when something was removed.

    What holds another netns, or is not a netns at all, is left where it is: a foreign file
    is never removed, and the file under the mount is removed only once the pod's own bind
    mount has been taken off it.
    """
    path = netns_path(root, pod_name)
    inodes = {int(i) for i in inodes or ()}
    found = False
    for _ in range(16):   # stacked binds of the pod's netns: peel them all
        current = netns_inode_at(path)
        if current is None or current not in inodes:
            break
        try:
            syscalls.umount2(path, MNT_DETACH)
            found = True
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                break
            raise NetworkError(f"unmount {path}: {e.strerror} (errno {e.errno})") from e
    if not found or netns_inode_at(path) is not None:
        return found       # not the pod's, or somebody else's netns is bound there too
    _unlink(path)
    return True


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise NetworkError(f"remove {path}: {e.strerror} (errno {e.errno})") from e
