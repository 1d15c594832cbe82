"""Which levels of a --cgroup-parent nspod made, shared by every pod under a state root.

Pods share their parent levels, and are made and removed by different processes: the record
lives in <root>/cgroup-parents.json, changed under <root>/cgroup-parents.lock, so the pod
removed last (whichever it is) removes the levels the first one made.
"""
import contextlib
import fcntl
import json
import os

from nsPod.kernel.cgroups import CgroupExists, open_driver
from nsPod.kernel.paths import write_json

RECORD = "cgroup-parents.json"
LOCK = "cgroup-parents.lock"


@contextlib.contextmanager
def _locked(root, parent):
    """The driver for `parent`, opened with the levels recorded as made, under the lock.

    The record is written whenever the driver reports a level it is about to make (before
    the mkdir) and, in a `finally`, once more with what the body leaves: a create that
    fails half-way (a limit the kernel refuses) still records the levels it made.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(root, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = os.path.join(root, RECORD)
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            record = {}

        def remember(made):
            if made:
                record[parent] = sorted(made)
            else:
                record.pop(parent, None)
            write_json(path, record)

        driver = open_driver(parent, made=record.get(parent, ()))
        driver.remember = remember
        try:
            yield driver
        finally:
            remember(driver.made)
            # The caller keeps the driver; past the lock it must not write the record
            # (its pod's cgroup keeps the parent levels from being removed meanwhile).
            driver.remember = lambda made: None
    finally:
        os.close(fd)


def create(root, parent, rel, limits, exclusive=False):
    """Make the cgroup rel under parent; the levels made on the way are recorded first.

    exclusive: rel must be new (the pod's level); when it exists, CgroupExists, and the
    parent levels this call made are taken back once empty.
    """
    with _locked(root, parent) as driver:
        try:
            driver.create(rel, limits, exclusive=exclusive)
        except CgroupExists:
            driver.remove_parent_if_empty()
            raise
    return driver


def remove(root, parent, rel):
    """Kill what is left in rel, remove it, and the parent levels nspod made once empty."""
    with _locked(root, parent) as driver:
        driver.kill(rel)
        driver.remove(rel)
        driver.remove_parent_if_empty()
