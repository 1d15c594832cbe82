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
"""
import errno
import fcntl
import json
import os
import time

from nsPod.errors import PodExists, PodNotFound, StateError

POD_FILE = "pod.json"
STATE_FILE = "state.json"
LOCK_FILE = "monitor.lock"
CONTROL_SOCKET = "control.sock"

TERMINAL_PHASES = ("Succeeded", "Failed")


def pods_dir(root):
    return os.path.join(root, "pods")


def pod_dir(root, name):
    return os.path.join(pods_dir(root), name)


def write_json(path, data):
    """temp + fsync + rename: a reader sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_text(path, text, mode=0o644):
    """temp + rename, like write_json (a container may be reading the file)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
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
        start = process_start_time(self.pid)
        return start is not None and start == self.start_time and not _is_zombie(self.pid)

    def kill(self, sig):
        """Signal the process if it is still ours; 'already gone' is success."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rindex(b")") + 2:data.rindex(b")") + 3] == b"Z"


class PodDir:
    """One pod's directory and the files in it."""

    def __init__(self, root, name):
        self.root = root
        self.name = name
        self.path = pod_dir(root, name)

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    def exists(self):
        return os.path.isdir(self.path)

    def create(self):
        """mkdir is the atomic claim on the name: of two concurrent runs, one gets it."""
        os.makedirs(pods_dir(self.root), mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            raise PodExists(self.name) from None

    def remove(self):
        remove_tree(self.path)

    def read_pod(self):
        return self._read(POD_FILE)

    def write_pod(self, data):
        write_json(self.file(POD_FILE), data)

    def read_state(self):
        try:
            return self._read(STATE_FILE)
        except PodNotFound:
            if self.exists():
                return None
            raise

    def write_state(self, data):
        write_json(self.file(STATE_FILE), data)

    def _read(self, name):
        try:
            return read_json(self.file(name))
        except FileNotFoundError:
            raise PodNotFound(self.name) from None
        except (ValueError, OSError) as e:
            raise StateError(f"pod {self.name}: cannot read {self.file(name)}: {e}") from e

    def lock_monitor(self, blocking=False):
        """Take monitor.lock; returns the fd, or None when someone (a monitor) holds it."""
        fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def monitor_alive(self):
        if not os.path.exists(self.file(LOCK_FILE)):
            return False
        fd = self.lock_monitor()
        if fd is None:
            return True
        os.close(fd)
        return False


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
    try:
        names = sorted(os.listdir(pods_dir(root)))
    except FileNotFoundError:
        return []
    return [PodDir(root, n) for n in names if os.path.isdir(pod_dir(root, n))]
