"""cgroup v2: one hierarchy; controllers are handed down level by level.

A cgroup can only use a controller its parent lists in cgroup.subtree_control, and a
parent can only list controllers its own parent handed to it (its cgroup.controllers).
So controllers are enabled top-down, from the parent (or the highest level we made)
to the pod, and a controller missing above that is an error for the host's owner to fix,
not something nspod may change. Processes live only in leaves ("no internal processes"):
a pod's own processes (pause) need a child cgroup of their own, next to the containers.
"""
import os

from nsPod.kernel.cgroups import devices, files
from nsPod.kernel.cgroups.driver import CPU_PERIOD_US, Driver, cpu_quota, cpu_shares, cpu_weight
from nsPod.errors import CgroupError

# memory always: OOM kills are counted per container in memory.events(.local), which
# exists only where the memory controller is enabled. pids whenever the host offers it:
# it costs nothing and gives stats a process count.
ALWAYS = {"memory"}
WHEN_AVAILABLE = {"pids"}


def _needed(limits):
    needed = set(ALWAYS)
    if limits.cpu_millis is not None or limits.cpu_request_millis is not None:
        needed.add("cpu")
    if limits.pids is not None:
        needed.add("pids")
    return needed


class V2Driver(Driver):
    version = "v2"
    procs_hierarchy = ""

    def _find_hierarchies(self):
        return {"": self.root}

    def path(self, rel, controller="memory"):
        return self._in(self.root, rel)

    def create(self, rel, limits, exclusive=False):
        top, grantor = self._top()
        wanted = self._controllers(limits, grantor)
        levels = self._levels(self.root, rel)
        self._make_all(rel, exclusive)
        for level in levels[levels.index(top):-1]:
            self._enable(level, wanted)
        self.set_limits(rel, limits)

    def _top(self):
        """The highest level nspod may configure, and the existing cgroup above it.

        That is the parent, or the first missing level above it when the parent does not
        exist yet (nspod makes it, so it is ours to configure).
        """
        levels = self._levels(self.root, "")
        top = next((lv for lv in levels if not files.exists(lv)), levels[-1])
        return top, os.path.dirname(top)

    def _controllers(self, limits, grantor):
        # read only: the grantor is above what nspod may change
        granted_file = os.path.join(grantor, "cgroup.subtree_control")
        granted = set(files.read(granted_file).split())
        missing = _needed(limits) - granted
        if missing:
            names = " ".join(sorted(missing))
            raise CgroupError(
                f"cgroup v2 controller {names} is not enabled in {granted_file}, so "
                f"{self.path('')} cannot use it: enable it there or choose another cgroup parent")
        return _needed(limits) | (WHEN_AVAILABLE & granted)

    def _enable(self, level, wanted):
        control = os.path.join(level, "cgroup.subtree_control")
        missing = wanted - set(files.read(control).split())
        if missing:
            files.write(control, " ".join(f"+{c}" for c in sorted(missing)))

    def restrict_devices(self, rel, rules):
        devices.apply_v2(self.path(rel), rules)

    def set_limits(self, rel, limits):
        d = self.path(rel)
        if limits.memory is not None:
            files.write(os.path.join(d, "memory.max"), limits.memory)
            self._no_swap(d)
        if limits.oom_group:
            files.write(os.path.join(d, "memory.oom.group"), 1)
        if limits.cpu_millis is not None:
            files.write(os.path.join(d, "cpu.max"),
                        f"{cpu_quota(limits.cpu_millis)} {CPU_PERIOD_US}")
        if limits.cpu_request_millis is not None:
            files.write(os.path.join(d, "cpu.weight"),
                        cpu_weight(cpu_shares(limits.cpu_request_millis)))
        if limits.pids is not None:
            files.write(os.path.join(d, "pids.max"), limits.pids)

    def limit_files(self, rel):
        d = self.path(rel)
        return [os.path.join(d, name) for name in
                ("memory.max", "memory.swap.max", "memory.oom.group", "cpu.max", "cpu.weight",
                 "pids.max")]

    def _no_swap(self, d):
        # without this, a memory limit only moves the excess to swap; the file is there
        # only when the kernel accounts swap
        swap = os.path.join(d, "memory.swap.max")
        if files.exists(swap):
            files.write(swap, 0)

    def kill(self, rel):
        # cgroup.kill (Linux 5.14) kills the whole subtree, forks in flight included
        kill_file = os.path.join(self.path(rel), "cgroup.kill")
        has_kill = files.exists(kill_file)
        if has_kill:
            files.write(kill_file, 1)
        self._kill_until_empty(rel, resignal=not has_kill)

    def oom_kills(self, rel):
        """OOM kills of processes in rel's subtree.

        memory.events.local counts kills in that cgroup only, whatever the mount options
        (memory_localevents makes memory.events local too), so summing it over the subtree
        gives the same answer as v1. Before Linux 5.2 there is no .local; memory.events is
        then always hierarchical.
        """
        top = self.path(rel)
        if files.read_optional(os.path.join(top, "memory.events.local")) is None:
            return _oom_kill(files.read_optional(os.path.join(top, "memory.events")))
        return sum(_oom_kill(files.read_optional(os.path.join(d, "memory.events.local")))
                   for d in files.subtree(top))

    def stats(self, rel):
        d = self.path(rel)

        def number(name):
            return files.number(files.read_optional(os.path.join(d, name)))

        cpu = files.keyed(files.read_optional(os.path.join(d, "cpu.stat")) or "")
        return {
            "memory": {"usage": number("memory.current"), "limit": number("memory.max"),
                       "peak": number("memory.peak"), "oomKills": self.oom_kills(rel)},
            "pids": {"current": number("pids.current"), "max": number("pids.max")},
            "cpu": {"usageUsec": cpu.get("usage_usec"), "nrThrottled": cpu.get("nr_throttled"),
                    "throttledUsec": cpu.get("throttled_usec")},
        }


def _oom_kill(events_text):
    """Processes OOM-killed, from memory.events(.local).

    A group kill (memory.oom.group=1) kills the victim, then every member of the group
    including the victim again, and each of those counts in oom_kill: one process alone
    shows oom_kill 2, two show 3 (measured on 6.1). oom_group_kill (Linux 5.16) counts the
    group kills, so it is subtracted; before 5.16 a group kill over-counts by one.
    """
    events = files.keyed(events_text or "")
    return events.get("oom_kill", 0) - events.get("oom_group_kill", 0)
