"""The cgroup driver interface that v1.py and v2.py implement, and the kubelet's CPU
arithmetic they share (the package's __init__ picks a driver; see it for the layout)."""
import os
import signal
import time
from abc import ABC, abstractmethod

from nsPod.kernel.cgroups import files
from nsPod.errors import CgroupError

DEFAULT_PARENT = "nspod"

# the kubelet's constants (pkg/kubelet/cm/helpers_linux.go)
CPU_PERIOD_US = 100000
MIN_QUOTA_US = 1000
MIN_SHARES = 2
MAX_SHARES = 262144
KILL_TIMEOUT = 5.0
_KILL_PAUSE = 0.01


def cpu_shares(millis):
    """The kubelet's MilliCPUToShares."""
    return min(max(millis * 1024 // 1000, MIN_SHARES), MAX_SHARES)


def cpu_weight(shares):
    """runc's conversion of v1 shares [2, 262144] to a v2 weight [1, 10000]."""
    return 1 + (shares - 2) * 9999 // 262142


def cpu_quota(millis, period=CPU_PERIOD_US):
    """The kubelet's MilliCPUToQuota: the kernel refuses quotas under 1 ms."""
    return max(millis * period // 1000, MIN_QUOTA_US)


class CgroupExists(CgroupError):
    """The pod's cgroup is there already: someone else's, never adopted."""


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
