"""Every pod of a state root read at once, for `ps` and admission: one descriptor of the pods
directory and one per pod, not PodDir's reads (each opens and checks the state root again),
which at a thousand pods were most of `nspod ps`.
"""
import errno
import fcntl
import os

from nsPod.errors import StateError
from nsPod.kernel import paths
from nsPod.store.state import LOCK_FILE, POD_FILE, STATE_FILE, PodDir, pods_dir, read_json


def scan_pods(root):
    """[(PodDir, pod.json, state.json or None, monitor alive)] of each pod with a pod.json,
    by name: what `ps` shows, read through one fd of the pods directory and one per pod (not
    PodDir's reads, which open and check the root once per file). Invalid names, symlinks,
    and pods whose files cannot be read (being made or removed, not JSON) are skipped."""
    root_fd = paths.open_root(root)
    if root_fd is None:
        return []
    try:
        try:
            pods_fd = paths.open_dir(root_fd, "pods")
        except FileNotFoundError:
            return []
    finally:
        os.close(root_fd)
    found = []
    pods_path = pods_dir(root)
    with paths.fd_of(pods_fd):
        for entry in sorted(os.listdir(pods_fd)):
            if paths.subdomain_problem(entry) is not None:
                continue
            try:
                # One component and O_NOFOLLOW: a symlink planted as a pod is not followed.
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=pods_fd)
            except OSError:
                continue   # removed meanwhile, not a directory, or a symlink (ELOOP/ENOTDIR)
            with paths.fd_of(fd):
                try:
                    doc = read_json(POD_FILE, dir_fd=fd)
                    try:
                        data = read_json(STATE_FILE, dir_fd=fd)
                    except FileNotFoundError:
                        data = None   # the monitor has not written it yet
                    alive = _lock_held(fd)
                except (OSError, ValueError, StateError):
                    continue
            found.append((PodDir.listed(root, entry, pods_path), doc, data, alive))
    return found


def _lock_held(dir_fd):
    """Whether a monitor holds the pod's monitor.lock (PodDir.monitor_alive, from an fd of
    the pod's directory; a missing lock file is not made here)."""
    try:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StateError(f"refusing {LOCK_FILE}: a symlink where nspod keeps its lock") \
                from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
