"""Every read, write, mkdir and rmdir nspod does in cgroupfs goes through here.

One place means one error format: a failure names the file and, for writes, the value,
e.g. `write "52428800" to /sys/fs/cgroup/memory/nspod/web/app/memory.limit_in_bytes:
Device or resource busy`, chained from the OSError so callers can still match errno.

The four primitives (_read, _write, _mkdir, _rmdir) are the seam the unit tests replace
with a fake kernel; nothing else in the drivers touches the file system.
"""
import errno
import os
import time

from nsPod.errors import CgroupError
from nsPod.kernel import tracing

RMDIR_BUSY_TIMEOUT = 2.0
_RETRY_PAUSE = 0.01


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, data):
    # No O_CREAT: a missing control file means a controller is not there, and creating a
    # regular file in its place would hide that. O_TRUNC is a no-op on cgroupfs.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _mkdir(path):
    os.mkdir(path, 0o755)


def _rmdir(path):
    os.rmdir(path)


def read(path):
    try:
        return _read(path)
    except OSError as e:
        raise CgroupError(f"read {path}: {e.strerror}") from e


def read_optional(path):
    """The file's text, or None when the file (or its cgroup) does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupError(f"read {path}: {e.strerror}") from e


def write(path, value):
    data = str(value)
    try:
        with tracing.traced("write", [path, data], text=f"write {path} {data}"):
            _write(path, data)
    except OSError as e:
        raise CgroupError(f'write "{data}" to {path}: {e.strerror}') from e


def exists(path):
    return os.path.exists(path)


def keyed(text):
    """'key value' lines (memory.events, memory.oom_control, cpu.stat) as a dict of ints."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2}


def number(text):
    """A one-number file's value; None for a missing file and for "max" (no limit)."""
    if text is None or text.strip() == "max":
        return None
    return int(text)


def subtree(path):
    """`path` and every cgroup below it, parents before children; [] when it is gone."""
    return [top for top, _, _ in os.walk(path)]


def mkdir_new(path):
    """mkdir; True when made here, False when it was there already.

    ENOENT (a level above vanished) is raised as is, for the caller to walk the chain again.
    """
    try:
        with tracing.traced("mkdir", [path, "0755"]):
            _mkdir(path)
        return True
    except FileExistsError:
        if not os.path.isdir(path):  # e.g. v1's `tasks` file: never a cgroup to write into
            raise CgroupError(f"mkdir {path}: a file of that name exists, not a cgroup") \
                from None
        return False
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CgroupError(f"mkdir {path}: {e.strerror}") from e


def rmdir(path):
    """Remove an empty cgroup; already gone is success.

    EBUSY is retried for RMDIR_BUSY_TIMEOUT: after its last task exits, the kernel still
    counts a cgroup as populated until that task is fully released.
    """
    deadline = time.monotonic() + RMDIR_BUSY_TIMEOUT
    step = tracing.begin("rmdir", [path])
    while True:
        try:
            _rmdir(path)
            tracing.end(step)
            return
        except FileNotFoundError as e:
            tracing.end(step, e.errno)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                tracing.end(step, e.errno)
                raise CgroupError(f"rmdir {path}: {e.strerror}") from e
        time.sleep(_RETRY_PAUSE)


def rmdir_if_empty(path):
    """Remove `path` if nothing (cgroup or task) is in it; True when it is gone now."""
    try:
        _rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise CgroupError(f"rmdir {path}: {e.strerror}") from e
