"""cgroup v1 (legacy and hybrid hosts): one hierarchy per controller, same path in each.

A pod's processes go into the memory, pids, cpu and devices hierarchies (cpuacct comes along
when it is co-mounted with cpu, as `cpu,cpuacct`), and, on hybrid hosts, into the
cgroup2 hierarchy mounted at <root>/unified, as runc does: there systemd and other tools
find a process's cgroup by its `0::` line. Joining it needs only levels under the parent,
which nspod makes itself, so no one else's cgroup is written to.
"""
import errno
import os

from nsPod.kernel.cgroups import devices, files
from nsPod.kernel.cgroups.driver import CPU_PERIOD_US, Driver, cpu_quota, cpu_shares
from nsPod.errors import CgroupError

# devices: the device allowlist of non-privileged containers (cgroups.devices)
CONTROLLERS = ("memory", "pids", "cpu", "devices")
# "No limit" reads back as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 with
# 4 KiB pages); nothing that large is a limit anyone set.
UNLIMITED_FROM = 1 << 62


def _limit(text):
    value = files.number(text)
    return None if value is None or value >= UNLIMITED_FROM else value


class V1Driver(Driver):
    version = "v1"
    procs_hierarchy = "memory"

    def _find_hierarchies(self):
        found = {c: os.path.realpath(os.path.join(self.root, c)) for c in CONTROLLERS
                 if files.exists(os.path.join(self.root, c))}
        cpuacct = os.path.realpath(os.path.join(self.root, "cpuacct"))
        if cpuacct == found.get("cpu"):
            found["cpuacct"] = cpuacct
        unified = os.path.join(self.root, "unified")
        if files.exists(os.path.join(unified, "cgroup.controllers")):
            found["unified"] = unified
        return found

    def path(self, rel, controller="memory"):
        return self._dir(controller, rel)

    def create(self, rel, limits, exclusive=False):
        self._make_all(rel, exclusive)
        self.set_limits(rel, limits)

    def limit_files(self, rel):
        found = []
        if "memory" in self.hierarchies:
            d = self._dir("memory", rel)
            found += [os.path.join(d, "memory.limit_in_bytes"),
                      os.path.join(d, "memory.memsw.limit_in_bytes")]
        if "cpu" in self.hierarchies:
            d = self._dir("cpu", rel)
            # nspod never changes the period, so the quota alone restores the limit
            found += [os.path.join(d, "cpu.cfs_quota_us"), os.path.join(d, "cpu.shares")]
        if "pids" in self.hierarchies:
            found.append(os.path.join(self._dir("pids", rel), "pids.max"))
        return found

    def restore_limits(self, rel, saved):
        saved = dict(saved)
        d = self._dir("memory", rel) if "memory" in self.hierarchies else None
        limit = saved.pop(os.path.join(d, "memory.limit_in_bytes"), None) if d else None
        memsw = saved.pop(os.path.join(d, "memory.memsw.limit_in_bytes"), None) if d else None
        if limit is not None:
            # memsw >= limit at every step: raise memsw first when the limit goes up
            current = int(files.read(os.path.join(d, "memory.limit_in_bytes")))
            steps = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", memsw)]
            if int(limit) > current:
                steps.reverse()
            for name, value in steps:
                if value is not None:
                    files.write(os.path.join(d, name), value)
        super().restore_limits(rel, saved)

    def restrict_devices(self, rel, rules):
        devices.apply_v1(self._dir("devices", rel), rules)

    def set_limits(self, rel, limits):
        # oom_group has no v1 counterpart: a v1 OOM kill always takes one process
        if limits.memory is not None:
            self._set_memory(self._dir("memory", rel), limits.memory)
        if limits.cpu_millis is not None:
            d = self._dir("cpu", rel)
            files.write(os.path.join(d, "cpu.cfs_period_us"), CPU_PERIOD_US)
            files.write(os.path.join(d, "cpu.cfs_quota_us"), cpu_quota(limits.cpu_millis))
        if limits.cpu_request_millis is not None:
            files.write(os.path.join(self._dir("cpu", rel), "cpu.shares"),
                        cpu_shares(limits.cpu_request_millis))
        if limits.pids is not None:
            files.write(os.path.join(self._dir("pids", rel), "pids.max"), limits.pids)

    def _set_memory(self, d, limit):
        # memory.memsw.limit_in_bytes (memory + swap) must never be below
        # memory.limit_in_bytes, so when the limit grows, memsw goes first; otherwise
        # the limit goes first. memsw = limit means no swap at all. memsw exists only
        # when the kernel accounts swap.
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
        limit_file = os.path.join(d, "memory.limit_in_bytes")
        if not files.exists(memsw):
            self._write_limit(d, limit)
        elif limit > int(files.read(limit_file)):
            files.write(memsw, limit)
            self._write_limit(d, limit)
        else:
            self._write_limit(d, limit)
            files.write(memsw, limit)

    def _write_limit(self, d, limit):
        try:
            files.write(os.path.join(d, "memory.limit_in_bytes"), limit)
        except CgroupError as e:
            if e.__cause__ is None or e.__cause__.errno != errno.EBUSY:
                raise
            usage = files.number(files.read(os.path.join(d, "memory.usage_in_bytes")))
            raise CgroupError(f"{e} (the cgroup already uses {usage} bytes "
                              f"and the kernel could not reclaim enough)") from e.__cause__

    def oom_kills(self, rel):
        """OOM kills of processes in rel's subtree (v1 counts each cgroup's own only)."""
        return sum(_oom_kill(files.read_optional(os.path.join(d, "memory.oom_control")))
                   for d in files.subtree(self._dir("memory", rel)))

    def stats(self, rel):
        def read(hierarchy, name):
            if hierarchy not in self.hierarchies:
                return None
            return files.read_optional(os.path.join(self._dir(hierarchy, rel), name))

        cpu = files.keyed(read("cpu", "cpu.stat") or "")
        usage_ns = files.number(read("cpuacct", "cpuacct.usage"))
        throttled_ns = cpu.get("throttled_time")
        return {
            "memory": {"usage": files.number(read("memory", "memory.usage_in_bytes")),
                       "limit": _limit(read("memory", "memory.limit_in_bytes")),
                       "peak": files.number(read("memory", "memory.max_usage_in_bytes")),
                       "oomKills": self.oom_kills(rel),
                       "failcnt": files.number(read("memory", "memory.failcnt"))},
            "pids": {"current": files.number(read("pids", "pids.current")),
                     "max": files.number(read("pids", "pids.max"))},
            "cpu": {"usageUsec": None if usage_ns is None else usage_ns // 1000,
                    "nrThrottled": cpu.get("nr_throttled"),
                    "throttledUsec": None if throttled_ns is None else throttled_ns // 1000},
        }


def _oom_kill(oom_control_text):
    return files.keyed(oom_control_text or "").get("oom_kill", 0)
