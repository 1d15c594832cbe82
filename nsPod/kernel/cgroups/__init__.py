"""cgroups for pods and their containers: one interface, a v1 and a v2 driver.

Layout: <hierarchy>/<parent>/pod<uid>/ctr-<container>, `parent` being --cgroup-parent
(default `nspod`) relative to each hierarchy's root. The pod's level is named by its UID, as
the kubelet's cgroupfs driver names it (`pod<uid>`), so two pods of one name (two state
roots under one parent) never share a cgroup; a container's leaf has a fixed prefix, so no
container name (`tasks` is a valid one) can collide with a cgroup interface file such as
v1's `tasks`. Drivers are told paths relative to the parent ("pod<uid>",
"pod<uid>/ctr-app"); they never write above the parent except in levels they made.

Never adopted: the pod's level is made with create(..., exclusive=True), which refuses
(CgroupExists) when the directory is already there, so a cgroup nspod did not make is never
configured, killed or removed. Levels below it are inside nspod's own cgroup.

Which levels a driver removes:
  - remove(rel) removes rel and everything below it.
  - remove_parent_if_empty() removes, when empty, the parent levels nspod made, bottom-up:
    those in `driver.made` (what create() made, plus the `made` it was opened with), and
    the default top-level `nspod` whoever made it (it is nspod's by name). A level that
    existed before, e.g. a user's --cgroup-parent, is never removed.
  The driver keeps no files of its own: `made` lives in memory. A caller whose pods are
  created and removed by different processes persists `driver.made` in a record shared by
  every pod under that parent (pods share parent levels, so a per-pod record would lose a
  level made by a pod removed first), and opens the remover with it. `driver.remember` is
  called with `made` BEFORE each parent level's mkdir (and again when a mkdir found the
  level there already), so a crash between the record and the mkdir leaves only a record
  of a level that does not exist, which removal treats as gone.

detect() decides by what is in `root`, which works the same for the kernel's layout and a
fake tree in the unit tests: cgroup2 has `cgroup.controllers` in every cgroup including
its root, while a v1/hybrid root is a tmpfs holding one directory per hierarchy.
"""
import os

from nsPod.kernel.cgroups import files
# The interface and the kubelet's numbers live in driver.py, which v1/v2 import (so this
# package's open_driver can import them without a circle); named here as before.
from nsPod.kernel.cgroups.driver import (  # noqa: F401
    CPU_PERIOD_US, DEFAULT_PARENT, KILL_TIMEOUT, MAX_SHARES, MIN_QUOTA_US, MIN_SHARES,
    CgroupExists, Driver, cpu_quota, cpu_shares, cpu_weight, split_path)
from nsPod.plan.records import record
from nsPod.errors import CgroupError

POD_PREFIX = "pod"
# Every cgroup interface file has a dot in its name except v1's `tasks`, `notify_on_release`
# and `release_agent`; none of them starts with this prefix.
CONTAINER_PREFIX = "ctr-"

DEFAULT_ROOT = "/sys/fs/cgroup"


@record
class Limits:
    """What one cgroup may use; None leaves the current value (a new cgroup's is unlimited)."""

    memory: int | None = None  # bytes
    cpu_millis: int | None = None  # CFS quota over a 100 ms period
    cpu_request_millis: int | None = None  # cpu.shares (v1) / cpu.weight (v2)
    pids: int | None = None
    # v2 memory.oom.group: an OOM kill takes every process of the cgroup. The kubelet sets
    # it on containers; at pod level it would let one container's OOM kill the others.
    # Ignored on v1, which has no such knob; False leaves the current value.
    oom_group: bool = False


def detect(root=DEFAULT_ROOT):
    if files.exists(os.path.join(root, "cgroup.controllers")):
        return "v2"
    if files.exists(os.path.join(root, "memory")):
        return "v1"
    raise CgroupError(
        f"no cgroup hierarchy at {root}: neither cgroup2 (cgroup.controllers) "
        f"nor a cgroup v1 memory hierarchy (memory/)")


def open_driver(parent=DEFAULT_PARENT, root=DEFAULT_ROOT, made=()):
    """A driver for the host's cgroup version; `made`: a persisted `driver.made`."""
    # imported here: most commands need only one of them
    if detect(root) == "v2":
        from nsPod.kernel.cgroups.v2 import V2Driver
        return V2Driver(parent, root, made)
    from nsPod.kernel.cgroups.v1 import V1Driver
    return V1Driver(parent, root, made)


def pod_cgroup_name(uid):
    """The pod's level under the parent: `pod<uid>`, the kubelet's cgroupfs name."""
    if not uid or not all(c in "0123456789abcdef-" for c in uid):
        raise CgroupError(f"pod uid {uid!r}: expected lowercase hex digits and dashes")
    return f"{POD_PREFIX}{uid}"


def container_cgroup_name(name):
    """A container's leaf under its pod's cgroup."""
    return f"{CONTAINER_PREFIX}{name}"


def rel_in_parent(recorded, parent):
    """The path relative to `parent` of a cgroup recorded as "<parent>/<rel>"."""
    head = "/".join(split_path(parent, "cgroup parent"))
    parts = "/".join(split_path(recorded, "cgroup"))
    if not parts.startswith(head + "/"):
        raise CgroupError(f"cgroup {recorded!r} is not under the cgroup parent {parent!r}")
    return parts[len(head) + 1:]
