"""The pod's state on disk, written atomically and believed only when the kernel agrees.

Layout of one pod, under <root>/pods/<name>/:
  pod.json       what was asked for: the manifest, the plan, the config (written once by the
                 CLI, extended by the monitor on `add`)
  state.json     what is: phase, pids with start times, every resource made (monitor-owned
                 while the monitor lives; the CLI writes it only holding monitor.lock)
  monitor.lock   flock held by the monitor for its whole life: the monitor is alive exactly
                 when this lock is taken, whatever pids have been reused since
  control.sock   the monitor's root-only control socket
  logs/<container>/<n>.log    CRI-format logs of run n of each container
  volumes/<name> emptyDir volumes (a directory, or a tmpfs mounted there)

Field names, one rule at the boundary: Python attributes are snake_case; JSON keys are
camelCase, as the Kubernetes API spells them (state.json, `inspect`, the manifest, netd's and
the monitor's requests, leases, dicts inside the plan such as security's runAsNonRoot). The
one exception is pod.json's "plan": PodPlan.to_json() of the plan records, keyed by their
attribute names (init_containers, memory_need), written and read back only by nspod and never
shown, so read it as attributes (PodPlan.from_json) or by those names. Renaming either side
would change files that existing pods hold. state.json's schema is store/podstate.py's
records, whose attributes are the file's keys as they are spelled there (camelCase): the
record is the file, field for field.
"""
import contextlib
import errno
import fcntl
import json
import os
import stat
import time

from nsPod.kernel import paths
# Atomic writes live in kernel.paths (cgroups/parents.py needs them too); named here as before.
from nsPod.kernel.paths import write_json, write_text  # noqa: F401
from nsPod.errors import PodExists, PodNotFound, StateError

POD_FILE = "pod.json"
STATE_FILE = "state.json"
LOCK_FILE = "monitor.lock"
CONTROL_SOCKET = "control.sock"

TERMINAL_PHASES = ("Succeeded", "Failed")


def pods_dir(root):
    return paths.join(root, "pods")


def pod_dir(root, name):
    """<root>/pods/<name>, for a name that passed the pod name check (else InputError)."""
    return paths.join(pods_dir(root), paths.check_pod_name(name))


def read_json(path, dir_fd=None):
    """A JSON file; with dir_fd, `path` is one name in it and must not be a symlink."""
    if dir_fd is None:
        with open(path) as f:
            return json.load(f)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(fd, closefd=True) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return json.load(f)


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def process_start_time(pid):
    """Start time of pid in clock ticks since boot (field 22 of /proc/pid/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


class ProcessRef:
    """A pid together with its start time: a reused pid is not mistaken for ours."""

    def __init__(self, pid, start_time):
        self.pid = pid
        self.start_time = start_time

    @classmethod
    def of(cls, pid):
        return cls(pid, process_start_time(pid))

    @classmethod
    def from_json(cls, data):
        if not data or not data.get("pid"):
            return None
        return cls(data["pid"], data.get("startTime"))

    def to_json(self):
        return {"pid": self.pid, "startTime": self.start_time}

    def alive(self):
        """The pid runs (not a zombie) and started when recorded: one read of its stat."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return False
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0] != b"Z" and int(fields[19]) == self.start_time

    def kill(self, sig):
        """Signal the process if it is still ours; 'already gone' is success."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


class PodDir:
    """One pod's directory and the files in it.

    The name is checked (a DNS-1123 subdomain) before any path is formed, and the directory
    is reached from the checked state root without following a symlink (paths.open_beneath):
    `nspod rm ../../x` or a planted `pods -> /` cannot point nspod at host paths.
    """

    def __init__(self, root, name):
        self.root = root
        self.name = paths.check_pod_name(name)
        self.path = pod_dir(root, name)

    @classmethod
    def listed(cls, root, name, pods_path):
        """A pod found in pods_path = pods_dir(root), its name already checked by the lister
        (paths.subdomain_problem): no second check of the name and the path per pod."""
        self = cls.__new__(cls)
        self.root, self.name, self.path = root, name, os.path.join(pods_path, name)
        return self

    def file(self, *parts):
        """A path in the pod's directory; each part may be a relative path ("logs/c/0.log"),
        every component of which is checked (no '..', '.', empty, or absolute part)."""
        return paths.join(self.path, *(c for p in parts for c in p.split("/")))

    def open(self, path_only=False):
        """An fd of this pod's directory, reached without following any symlink; raises
        PodNotFound when it is not there."""
        root_fd = paths.open_root(self.root)
        if root_fd is None:
            raise PodNotFound(self.name)
        try:
            return paths.open_dir(root_fd, "pods", self.name, path_only=path_only)
        except (FileNotFoundError, NotADirectoryError):
            raise PodNotFound(self.name) from None
        finally:
            os.close(root_fd)

    def exists(self):
        try:
            os.close(self.open(path_only=True))
        except PodNotFound:
            return False
        return True

    def create(self):
        """mkdir is the atomic claim on the name: of two concurrent runs, one gets it."""
        root_fd = paths.open_root(self.root, create=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir("pods", 0o700, dir_fd=root_fd)
            with paths.fd_of(paths.open_dir(root_fd, "pods")) as pods_fd:
                try:
                    os.mkdir(self.name, 0o700, dir_fd=pods_fd)
                except FileExistsError:
                    raise PodExists(self.name) from None
        finally:
            os.close(root_fd)

    def remove(self):
        """Remove the directory tree without following a symlink or entering another file
        system: the caller detached the pod's mounts, so one still there is not ours to
        empty (a tmpfs made since, a planted bind mount of a host directory)."""
        root_fd = paths.open_root(self.root)
        if root_fd is None:
            return
        try:
            with paths.fd_of(paths.open_dir(root_fd, "pods")) as pods_fd:
                try:
                    # A symlink in place of the pod's directory is refused here (StateError).
                    with paths.fd_of(paths.open_dir(pods_fd, self.name, path_only=True)) as fd:
                        dev = os.fstat(fd).st_dev
                except FileNotFoundError:
                    return
                try:
                    _remove_tree(pods_fd, self.name, dev, self.path, _mount_points())
                except RecursionError:
                    # Deeper than Python recurses (a container can nest an emptyDir thousands
                    # deep): the directory is checked above; rm finishes without following
                    # a symlink or leaving this file system.
                    remove_tree(self.path)
        finally:
            os.close(root_fd)

    def read_pod(self):
        return self._read(POD_FILE)

    def write_pod(self, data):
        with paths.fd_of(self.open()) as fd:
            write_json(POD_FILE, data, dir_fd=fd)

    def read_state(self):
        try:
            return self._read(STATE_FILE)
        except PodNotFound:
            if self.exists():
                return None
            raise

    def write_state(self, data):
        with paths.fd_of(self.open()) as fd:
            write_json(STATE_FILE, data, dir_fd=fd)

    def _read(self, name):
        try:
            with paths.fd_of(self.open()) as fd:
                return read_json(name, dir_fd=fd)
        except FileNotFoundError:
            raise PodNotFound(self.name) from None
        except (ValueError, OSError) as e:
            raise StateError(f"pod {self.name}: cannot read {self.file(name)}: "
                             f"{getattr(e, 'strerror', None) or e}") from e

    def lock_monitor(self, blocking=False):
        """Take monitor.lock; returns the fd, or None when someone (a monitor) holds it."""
        with paths.fd_of(self.open(path_only=True)) as dir_fd:
            fd = open_lock(LOCK_FILE, dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def monitor_alive(self):
        try:
            with paths.fd_of(self.open(path_only=True)) as dir_fd:
                try:
                    os.stat(LOCK_FILE, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    return False
        except PodNotFound:
            return False
        fd = self.lock_monitor()
        if fd is None:
            return True
        os.close(fd)
        return False

    def socket_address(self, name=CONTROL_SOCKET, existing=False):
        """Context manager: an address for the unix socket `name` in this directory that
        bind/connect take whatever the path's length: /proc/self/fd/<O_PATH fd of the
        directory>/<name> (sun_path holds 108 bytes; a 253-character pod name is valid).
        existing: the socket must be there, and a socket, not a symlink to one elsewhere."""
        return _SocketAddress(self, name, existing)


class _SocketAddress:
    def __init__(self, pod_dir, name, existing):
        self.pod_dir = pod_dir
        self.name = paths.check_component(name)
        self.existing = existing
        self.fd = None

    def __enter__(self):
        self.fd = self.pod_dir.open(path_only=True)
        if self.existing:
            try:
                mode = os.stat(self.name, dir_fd=self.fd, follow_symlinks=False).st_mode
            except BaseException:
                self.__exit__()
                raise
            if not stat.S_ISSOCK(mode):
                self.__exit__()
                raise StateError(f"pod {self.pod_dir.name}: {self.pod_dir.file(self.name)} is "
                                 "not a socket; refusing to connect through it")
        return f"/proc/self/fd/{self.fd}/{self.name}"

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_lock(name, dir_fd):
    try:
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StateError(f"refusing {name}: a symlink where nspod keeps its lock") from None
        raise


def _mount_points():
    from nsPod.kernel.mounts import mount_points
    return set(mount_points())


def _remove_tree(parent_fd, name, dev, path, mount_points):
    """rm -r of parent_fd/name by file descriptors: a symlink is unlinked, never followed; a
    directory on another device or that is a mount point is refused, never emptied."""
    if path in mount_points or _st_dev_of(parent_fd, name) != dev:
        raise StateError(f"refusing to remove {path}: a file system is mounted there")
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=parent_fd)
    try:
        for entry in os.scandir(fd):
            try:
                if entry.is_dir(follow_symlinks=False):
                    _remove_tree(fd, entry.name, dev, os.path.join(path, entry.name),
                                 mount_points)
                else:
                    os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=parent_fd)


def _st_dev_of(dir_fd, name):
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_dev

def remove_tree(path, ignore_errors=False):
    """rm -rf for trees a container or an image made (an emptyDir's contents, an unpacked
    layer): of any depth. shutil.rmtree recurses and holds a descriptor per level, so a tree
    some thousand directories deep ends it in RecursionError or EMFILE; then coreutils' rm,
    which has no such limit, finishes the job. Neither follows a symlink."""
    import shutil
    try:
        if ignore_errors:
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                return
        else:
            shutil.rmtree(path, onerror=_ignore_missing)
            return
    except RecursionError:
        pass
    except OSError as e:
        if e.errno not in (errno.EMFILE, errno.ENFILE):
            raise
    import subprocess
    result = subprocess.run(["rm", "-rf", "--one-file-system", "--", path],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0 and not ignore_errors:
        lines = result.stderr.strip().splitlines()
        raise OSError(errno.ENOTEMPTY, f"rm -rf: {lines[-1] if lines else 'failed'}", path)


def _ignore_missing(func, path, exc_info):
    if not (isinstance(exc_info[1], OSError) and exc_info[1].errno == errno.ENOENT):
        raise exc_info[1]


def list_pods(root):
    """The pods under root: directories in <root>/pods whose names are valid pod names (a
    planted entry with another name is no pod of nspod's and is skipped)."""
    root_fd = paths.open_root(root)
    if root_fd is None:
        return []
    try:
        try:
            pods_fd = paths.open_dir(root_fd, "pods")
        except FileNotFoundError:
            return []
        with paths.fd_of(pods_fd):
            found = []
            for entry in sorted(os.listdir(pods_fd)):
                if paths.subdomain_problem(entry) is not None:
                    continue
                try:
                    mode = os.stat(entry, dir_fd=pods_fd, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue  # removed meanwhile by a concurrent rm
                if stat.S_ISDIR(mode):
                    found.append(PodDir(root, entry))
            return found
    finally:
        os.close(root_fd)

