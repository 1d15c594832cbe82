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
import signal
import time
from abc import ABC, abstractmethod

from nsPod.cgroups import files
from nsPod.record import record
from nsPod.errors import CgroupError

POD_PREFIX = "pod"
# Every cgroup interface file has a dot in its name except v1's `tasks`, `notify_on_release`
# and `release_agent`; none of them starts with this prefix.
CONTAINER_PREFIX = "ctr-"

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "nspod"

# the kubelet's constants (pkg/kubelet/cm/helpers_linux.go)
CPU_PERIOD_US = 100000
MIN_QUOTA_US = 1000
MIN_SHARES = 2
MAX_SHARES = 262144
KILL_TIMEOUT = 5.0
_KILL_PAUSE = 0.01


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


def cpu_shares(millis):
    """The kubelet's MilliCPUToShares."""
    return min(max(millis * 1024 // 1000, MIN_SHARES), MAX_SHARES)


def cpu_weight(shares):
    """runc's conversion of v1 shares [2, 262144] to a v2 weight [1, 10000]."""
    return 1 + (shares - 2) * 9999 // 262142


def cpu_quota(millis, period=CPU_PERIOD_US):
    """The kubelet's MilliCPUToQuota: the kernel refuses quotas under 1 ms."""
    return max(millis * period // 1000, MIN_QUOTA_US)


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
    # imported here: v1/v2 import this module, and most commands need only one of them
    if detect(root) == "v2":
        from nsPod.cgroups.v2 import V2Driver
        return V2Driver(parent, root, made)
    from nsPod.cgroups.v1 import V1Driver
    return V1Driver(parent, root, made)


class CgroupExists(CgroupError):
    """The pod's cgroup is there already: someone else's, never adopted."""


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


def split_path(path, what):
    """Components of a cgroup path; '.', '..' would let a name escape its parent."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise CgroupError(f"{what} {path!r}: '.' and '..' are not allowed in a cgroup path")
    return parts


class Driver(ABC):
    """What both drivers share; subclasses name their hierarchies and set the limits.

    `hierarchies` maps a name ("memory", "pids", "cpu", ... on v1; "" on v2) to the
    directory holding the parent; co-mounted controllers (v1 `cpu,cpuacct`) share one.
    `procs_hierarchy` is the one whose cgroup.procs files are read for procs() and kill().
    `made`: the parent levels (absolute directories) that nspod made and may remove.
    """

    version = ""
    procs_hierarchy = ""

    def __init__(self, parent, root, made=()):
        parts = split_path(parent, "cgroup parent")
        if not parts:
            raise CgroupError(f"cgroup parent {parent!r}: pods cannot go in the root cgroup")
        self.parent = "/".join(parts)
        self.root = root
        self.hierarchies = self._find_hierarchies()
        self.made = set(made)
        self.remember = lambda made: None  # persists `made`; see the module's docstring

    @abstractmethod
    def _find_hierarchies(self):
        """{name: directory holding the parent} for every hierarchy the driver uses."""

    @abstractmethod
    def create(self, rel, limits, exclusive=False):
        """Make rel (and missing levels above it, the parent's included) and apply limits.

        exclusive: rel itself must not exist yet in any hierarchy (CgroupExists otherwise,
        after removing what this call made of it): the pod's own level.
        """

    @abstractmethod
    def set_limits(self, rel, limits):
        """Write the limits that are not None."""

    @abstractmethod
    def oom_kills(self, rel):
        """Processes OOM-killed in rel's subtree."""

    @abstractmethod
    def limit_files(self, rel):
        """The control files set_limits may write, in an order restore_limits can write."""

    def save_limits(self, rel):
        """What restore_limits needs to undo a set_limits on rel: the files' current text."""
        saved = {}
        for path in self.limit_files(rel):
            text = files.read_optional(path)
            if text is not None:
                saved[path] = text.strip()
        return saved

    def restore_limits(self, rel, saved):
        for path, text in saved.items():
            files.write(path, text)

    @abstractmethod
    def stats(self, rel):
        """{"memory": {...}, "pids": {...}, "cpu": {...}}; None where a file is missing."""

    @abstractmethod
    def restrict_devices(self, rel, rules):
        """Let rel's processes use only the devices `rules` allow (cgroups.devices), None:
        every device. Called before any process joins rel."""

    @abstractmethod
    def path(self, rel, controller="memory"):
        """The absolute directory of rel in the hierarchy holding `controller`."""

    def _bases(self):
        return list(dict.fromkeys(self.hierarchies.values()))

    def _in(self, base, rel=""):
        return os.path.join(base, self.parent, *split_path(rel, "cgroup"))

    def _dir(self, hierarchy, rel=""):
        base = self.hierarchies.get(hierarchy)
        if base is None:
            raise CgroupError(f"no cgroup {hierarchy} hierarchy under {self.root}")
        return self._in(base, rel)

    def _levels(self, base, rel):
        """Every directory from the parent's top level down to rel, ancestors first."""
        parts = self.parent.split("/") + split_path(rel, "cgroup")
        return [os.path.join(base, *parts[:i]) for i in range(1, len(parts) + 1)]

    def _make_all(self, rel, exclusive):
        """mkdir rel in every hierarchy; exclusive: refuse (and undo) when it exists."""
        made_here = []
        for base in self._bases():
            if self._make(base, rel, exclusive):
                made_here.append(self._in(base, rel))
            elif exclusive:
                for d in reversed(made_here):  # just made, empty: ours to take back
                    files.rmdir(d)
                raise CgroupExists(
                    f"cgroup {self._in(base, rel)} already exists: nspod makes a new cgroup "
                    f"for each pod and never adopts one it did not make; remove it or "
                    f"choose another --cgroup-parent")

    def _make(self, base, rel, exclusive=False):
        """Missing levels from the parent's top down to rel; True when rel was made here.

        Another nspod removing an empty shared level (e.g. `nspod`) between our seeing it and
        making our child in it shows up as ENOENT: walking the chain again recreates it.
        """
        levels = self._levels(base, rel)
        parent_levels = levels[:len(self.parent.split("/"))]
        for _ in range(3):
            try:
                made = False
                for level in levels:
                    if level in parent_levels:
                        self._make_parent_level(level)
                    else:
                        made = files.mkdir_new(level)
                return made
            except FileNotFoundError as e:
                lost = e
        raise CgroupError(f"mkdir {lost.filename}: {lost.strerror}") from lost

    def _make_parent_level(self, level):
        if files.exists(level):
            return
        known = level in self.made
        if not known:
            self.made.add(level)
            self.remember(self.made)  # before the mkdir: a crash after it cannot lose it
        try:
            made = files.mkdir_new(level)
        except BaseException:
            if not known:
                self.made.discard(level)
            raise
        if not made and not known:  # someone else made it meanwhile: theirs
            self.made.discard(level)
            self.remember(self.made)

    def attach(self, rel, pid):
        for base in self._bases():
            files.write(os.path.join(self._in(base, rel), "cgroup.procs"), pid)

    def procs(self, rel):
        pids = set()
        for d in files.subtree(self._dir(self.procs_hierarchy, rel)):
            text = files.read_optional(os.path.join(d, "cgroup.procs")) or ""
            pids.update(int(p) for p in text.split())
        return sorted(pids)

    def kill(self, rel):
        self._kill_until_empty(rel)

    def _kill_until_empty(self, rel, resignal=True):
        deadline = time.monotonic() + KILL_TIMEOUT
        while pids := self.procs(rel):
            if time.monotonic() >= deadline:
                raise CgroupError(
                    f"kill {self.path(rel)}: {len(pids)} processes still there after "
                    f"{KILL_TIMEOUT:g}s: {' '.join(map(str, pids[:10]))}")
            if resignal:
                self._sigkill(rel, pids)
            time.sleep(_KILL_PAUSE)

    def _sigkill(self, rel, pids):
        # A pid read from cgroup.procs may exit and be reused by an unrelated process
        # before we signal it. A pidfd pins the process it was opened on, so signal
        # through pidfds, and only those whose pid is still in the cgroup after opening.
        fds = {}
        try:
            for pid in pids:
                try:
                    fds[pid] = os.pidfd_open(pid)
                except ProcessLookupError:
                    pass
            still_there = set(self.procs(rel))
            for pid, fd in fds.items():
                if pid in still_there:
                    try:
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        finally:
            for fd in fds.values():
                os.close(fd)

    def remove(self, rel):
        for base in self._bases():
            for d in reversed(files.subtree(self._in(base, rel))):
                files.rmdir(d)

    def remove_parent_if_empty(self):
        for base in self._bases():
            for level in reversed(self._levels(base, "")):
                if not self._owns(base, level) or not files.rmdir_if_empty(level):
                    break
                self.made.discard(level)

    def _owns(self, base, level):
        return level in self.made or level == os.path.join(base, DEFAULT_PARENT)
