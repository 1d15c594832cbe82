"""Lab 10: cgroups v1 and v2 side by side: the same pod's limits in either layout."""
import os

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab

TEXT = """\
Limits are cgroups: a directory per group in a cgroup file system, control files in it,
and a process belongs to a group when its pid is written to cgroup.procs. Linux has two
layouts, and nspod (like the kubelet) drives both:

  - cgroup v1: one hierarchy per controller, /sys/fs/cgroup/memory, /sys/fs/cgroup/cpu,
    ... each with its own tree. A "hybrid" host (this lab's first host, maybe yours) has
    them plus a v2 tree without controllers at /sys/fs/cgroup/unified (it only groups).
    /proc/PID/cgroup then has one line per hierarchy ("4:memory:/path") and a "0::" line.
  - cgroup v2: one unified tree at /sys/fs/cgroup (it has cgroup.controllers), every
    controller in it, and /proc/PID/cgroup holds a single "0::/path" line.

The same pod, the same limits, other files:

  what                      v1 file                       v2 file
  memory limit (64Mi)       memory.limit_in_bytes         memory.max
  memory in use             memory.usage_in_bytes         memory.current
  OOM kills                 memory.oom_control            memory.events
  cpu limit (500m)          cpu.cfs_quota_us / _period_us cpu.max ("50000 100000")
  cpu request (share)       cpu.shares (512)              cpu.weight (20)
  members                   cgroup.procs (and tasks)      cgroup.procs

cpu.weight is runc's conversion of shares: 1 + (shares - 2) * 9999 / 262142.

The lab reads the pod's files in whichever layout this kernel has, and says what the
other layout would show. The test suite runs it twice: on the hybrid host, and on a pure
v2 kernel in a User-Mode-Linux guest (tests/vm/run-tier.sh).

(`nspod explain POD` shows each container's cgroup path and limits.)
"""

OBSERVATIONS = {
    "layout": "/proc/PID/cgroup has the layout's lines: one per v1 hierarchy, or only 0::",
    "member": "the container's pid is in its cgroup's cgroup.procs",
    "memory": "memory 64Mi is in memory.limit_in_bytes (v1) or memory.max (v2)",
    "cpu-max": "cpu 500m is a 50000 us quota per 100000 us period",
    "cpu-share": "the cpu request is cpu.shares 512 (v1) or cpu.weight 20 (v2)",
}

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
    - name: app
      command: [sleep, "1000"]
      resources: {{limits: {{memory: 64Mi, cpu: 500m}}}}
"""
# (what, v1 controller, v1 file, v2 file)
PAIRS = (("memory limit", "memory", "memory.limit_in_bytes", "memory.max"),
         ("memory in use", "memory", "memory.usage_in_bytes", "memory.current"),
         ("OOM kills", "memory", "memory.oom_control", "memory.events"),
         ("cpu quota", "cpu", "cpu.cfs_quota_us", "cpu.max"),
         ("cpu period", "cpu", "cpu.cfs_period_us", "cpu.max"),
         ("cpu share", "cpu", "cpu.shares", "cpu.weight"))


def steps(s):
    v2 = kernel_view.cgroup_v2()
    hybrid = not v2 and os.path.isdir("/sys/fs/cgroup/unified")
    s.say(f"This kernel: cgroup {'v2 (unified)' if v2 else 'v1' + (' (hybrid)' if hybrid else '')}")
    s.host("ls", "/sys/fs/cgroup", ok=False)
    pod = s.pod()
    s.nspod("run", "--wait", s.file("pod.yaml", MANIFEST.format(pod=pod)))
    app = s.inspect(pod)["runtime"]["containers"]["app"]
    pid, rel = app["pid"], app["cgroup"]
    s.read(f"/proc/{pid}/cgroup")
    lines = kernel_view.proc_cgroups(pid)
    unified = [line for line in lines if line[0] == "0"]
    memory_line = [line for line in lines if "memory" in line[1].split(",")]
    if v2:
        layout = len(lines) == 1 and unified and unified[0][2].endswith(rel.strip("/"))
    else:
        layout = bool(memory_line) and memory_line[0][2].endswith(rel.strip("/")) and \
            (bool(unified) or not hybrid)
    s.check("layout", layout, str(lines))

    s.say(f"The container's cgroup: {rel}")
    procs = s.read(os.path.join(kernel_view.cgroup_dir(rel, "memory"), "cgroup.procs")) or ""
    s.check("member", str(pid) in procs.split(), procs)
    values = {}
    for what, controller, v1_name, v2_name in PAIRS:
        mine, other = (v2_name, v1_name) if v2 else (v1_name, v2_name)
        path = os.path.join(kernel_view.cgroup_dir(rel, controller), mine)
        s.show(f"\n   {what}: {mine} here, {other} on cgroup v{1 if v2 else 2}")
        if mine not in values:
            values[mine] = (s.read(path) or "").strip()
    if v2:
        memory, quota = values["memory.max"], values["cpu.max"]
        share_ok = values["cpu.weight"] == "20"
    else:
        memory = values["memory.limit_in_bytes"]
        quota = f"{values['cpu.cfs_quota_us']} {values['cpu.cfs_period_us']}"
        share_ok = values["cpu.shares"] == "512"
    s.check("memory", memory == str(64 * 2**20), memory)
    s.check("cpu-max", quota == "50000 100000", quota)
    s.check("cpu-share", share_ok, str(values))
    s.note(f"`nspod explain {pod}` shows the cgroup and its limits")


LAB = Lab(number=10, name="cgroups", title="cgroups v1 and v2 side by side",
          text=TEXT, interfaces=("cgroup.procs", "/proc/PID/cgroup", "cgroup.controllers",
                                 "memory.limit_in_bytes", "memory.max", "cpu.cfs_quota_us",
                                 "cpu.max", "cpu.shares", "cpu.weight", "memory.events"),
          observations=OBSERVATIONS, steps=steps)
