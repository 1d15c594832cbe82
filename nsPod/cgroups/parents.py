"""Which levels of a --cgroup-parent nspod made, shared by every pod under a state root.

Pods share their parent levels, and are made and removed by different processes: the record
lives in <root>/cgroup-parents.json, changed under <root>/cgroup-parents.lock, so the pod
removed last (whichever it is) removes the levels the first one made.
"""
import contextlib
import fcntl
import json
import os

from nsPod.cgroups import open_driver
from nsPod.state import write_json

RECORD = "cgroup-parents.json"
LOCK = "cgroup-parents.lock"


@contextlib.contextmanager
def _locked(root):
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
        yield record
        write_json(path, record)
    finally:
        os.close(fd)


def create(root, parent, rel, limits):
    """Make the cgroup rel under parent; the levels made on the way are recorded first."""
    with _locked(root) as record:
        driver = open_driver(parent, made=record.get(parent, ()))
        try:
            driver.create(rel, limits)
        finally:
            record[parent] = sorted(driver.made)
    return driver


def remove(root, parent, rel):
    """Kill what is left in rel, remove it, and the parent levels nspod made once empty."""
    with _locked(root) as record:
        driver = open_driver(parent, made=record.get(parent, ()))
        driver.kill(rel)
        driver.remove(rel)
        driver.remove_parent_if_empty()
        remaining = sorted(driver.made)
        if remaining:
            record[parent] = remaining
        else:
            record.pop(parent, None)
