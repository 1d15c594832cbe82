"""Namespace kinds, and joining a running process's namespaces.

A pod's plan says, per kind, where each namespace comes from (runc's idea of a kind plus a
path): "pod" (pause's, made new), "host", or "container" (each container makes its own).
"""
import os

from nsPod.kernel import tracing
from nsPod.kernel.syscalls import CloneFlag, setns

# /proc/<pid>/ns/<name> -> clone flag
FLAGS = {
    "ipc": CloneFlag.CLONE_NEWIPC,
    "uts": CloneFlag.CLONE_NEWUTS,
    "net": CloneFlag.CLONE_NEWNET,
    "pid": CloneFlag.CLONE_NEWPID,
    "mnt": CloneFlag.CLONE_NEWNS,
    "cgroup": CloneFlag.CLONE_NEWCGROUP,
}

# Join order: mnt last, because after joining a mount namespace /proc may no longer show
# what the remaining paths name (the fds are opened up front for the same reason); pid
# only affects children and so can go anywhere before the fork that follows it.
JOIN_ORDER = ("ipc", "uts", "net", "pid", "cgroup", "mnt")

# The kinds `nspod ns` shows, in its column order.
KINDS = ("net", "ipc", "uts", "pid", "mnt", "cgroup")


def ns_path(pid, kind):
    return f"/proc/{pid}/ns/{kind}"


def ns_id(pid, kind):
    """'net:[4026531840]', or None when the process is gone."""
    try:
        return os.readlink(ns_path(pid, kind))
    except OSError:
        return None


def ns_ids(pid, kinds=KINDS):
    return {k: ns_id(pid, k) for k in kinds}


def open_all(pid, kinds):
    """Open every namespace first, then join: see JOIN_ORDER."""
    fds = {}
    try:
        for kind in kinds:
            fds[kind] = os.open(ns_path(pid, kind), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        close_all(fds)
        raise
    return fds


def close_all(fds):
    for fd in fds.values():
        os.close(fd)


def join_all(fds, source="?"):
    for kind in JOIN_ORDER:
        if kind in fds:
            setns(fds[kind], FLAGS[kind], f"/proc/{source}/ns/{kind}")


def join(pid, kinds):
    """setns into pid's namespaces of the given kinds (pid takes effect for children)."""
    tracing.note("join namespaces", [",".join(kinds), f"pid={pid}"],
                 text=f"join namespaces {','.join(kinds)} of pid {pid}")
    fds = open_all(pid, kinds)
    try:
        join_all(fds, pid)
    finally:
        close_all(fds)
