"""Lab 7: co-scheduling and memory: a pod is placed whole, and killed a container at a time."""
import json
import os

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab
from nsPod.labs.runner import StepFailed

TEXT = """\
The seed's example: App needs 1 GiB, LogCollector 0.5 GiB, and Node_A has 1.25 GiB free.
Each would fit alone, but a pod is scheduled as one unit: its containers share
namespaces and volumes, so they must run on one machine. The pod needs 1.5 GiB and is
refused whole; on a node with 2 GiB free it is admitted.

nspod admits a pod against this host's memory: MemAvailable of /proc/meminfo minus a
reserve (NSPOD_MEMORY_RESERVE, 256Mi by default) minus what other pods' limits hold. The
lab makes the host look like Node_A by setting the reserve to MemAvailable - 1.25 GiB,
then like a 2 GiB node (in a state root where no other pod holds memory). Refused,
nothing of the pod is made.

Admitted, each container's limit is a memory cgroup: memory.limit_in_bytes on cgroup
v1 (this lab's host may be hybrid), memory.max on cgroup v2 (lab 10 compares them).

Then a container that allocates past its limit: the kernel's OOM killer, confined to that
cgroup, sends SIGKILL to a process in it. The container ends with exit code 137 (128 + 9)
and reason OOMKilled; its sibling, in another cgroup, runs on. The kernel counts the kill:
  - cgroup v1: memory.oom_control ("oom_kill N"), memory.failcnt (limit hits);
  - cgroup v2: memory.events ("oom N", "oom_kill N"); with memory.oom.group set, the
    whole container's cgroup is killed together, as the kubelet asks.
`nspod stats POD` shows the same counts.

(`nspod explain POD` shows each container's cgroup and limit.)
"""

OBSERVATIONS = {
    "refused": "on a 1.25 GiB node the 1.5 GiB pod is refused whole, nothing made",
    "admitted": "on a 2 GiB node it is admitted, each limit in its container's cgroup",
    "oom-killed": "the container past its limit ends OOMKilled with exit code 137",
    "sibling-runs": "its sibling keeps running",
    "oom-counted": "the kernel counted the kill (oom_kill in memory.oom_control/events)",
}

GIB = 2**30
SEED = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
    - name: app
      command: [sleep, "1000"]
      resources: {{limits: {{memory: 1Gi}}}}
    - name: logcollector
      command: [sleep, "1000"]
      resources: {{limits: {{memory: 512Mi}}}}
"""
# The shell keeps a 256 MiB command substitution in its own memory: past 64Mi it is killed.
HOG = 'x=$(head -c 268435456 /dev/zero | tr "\\\\0" a); echo survived'
OOM = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
    - name: hog
      command: [sh, -c, '{hog}']
      resources: {{limits: {{memory: 64Mi}}}}
    - name: sibling
      command: [sleep, "1000"]
      resources: {{limits: {{memory: 64Mi}}}}
"""


def steps(s):
    pod = s.pod("seed")
    manifest = s.file("seed.yaml", SEED.format(pod=pod))
    s.say("Node_A: 1.25 GiB free. The pod needs 1 GiB + 0.5 GiB")
    if kernel_view.meminfo_available() < 3 * GIB:
        raise StepFailed("this lab plays a 2 GiB node: it needs MemAvailable over 3 GiB")
    holding = pods_holding_memory(s)
    if holding:
        raise StepFailed(f"pods of this state root hold memory ({', '.join(holding[:5])}), "
                         "which admission counts: run this lab in a state root of its own "
                         "(nspod --root DIR lab run memory)")
    reserve = kernel_view.meminfo_available() - GIB - GIB // 4
    s.show(f"   NSPOD_MEMORY_RESERVE={reserve} (MemAvailable - 1.25 GiB)")
    refused = s.nspod("run", manifest, ok=False, env={"NSPOD_MEMORY_RESERVE": str(reserve)})
    gone = s.quiet("inspect", pod).returncode != 0
    s.check("refused", refused.returncode == 1 and "needs 1.5Gi" in refused.stderr and gone,
            refused.stderr)

    s.say("A 2 GiB node: the same pod is admitted")
    reserve = kernel_view.meminfo_available() - 2 * GIB
    s.show(f"   NSPOD_MEMORY_RESERVE={reserve} (MemAvailable - 2 GiB)")
    s.nspod("run", manifest, env={"NSPOD_MEMORY_RESERVE": str(reserve)})
    runtime = s.inspect(pod)["runtime"]
    limit_file = "memory.max" if kernel_view.cgroup_v2() else "memory.limit_in_bytes"
    limits = {}
    for name in ("app", "logcollector"):
        text = s.read(os.path.join(kernel_view.cgroup_dir(runtime["containers"][name]["cgroup"]),
                                   limit_file))
        limits[name] = int(text) if text and text.strip().isdigit() else None
    s.check("admitted", limits == {"app": GIB, "logcollector": GIB // 2}, str(limits))
    s.nspod("rm", "-f", "--timeout", "0", pod)

    pod = s.pod("oom")
    s.say("Two containers with 64Mi each; one allocates 256 MiB")
    s.nspod("run", s.file("oom.yaml", OOM.format(pod=pod, hog=HOG)))
    end = s.wait(lambda: terminated(s, pod, "hog"), "the hog to be killed", timeout=60)
    obj = s.inspect(pod)
    s.show(f"   hog: {end}")
    s.check("oom-killed", (end.get("exitCode"), end.get("reason")) == (137, "OOMKilled"),
            str(end))
    sibling = [c for c in obj["status"]["containerStatuses"] if c["name"] == "sibling"][0]
    s.show(f"   sibling: {sibling['state']}")
    s.check("sibling-runs", "running" in sibling["state"], str(sibling["state"]))
    s.nspod("stats", pod)
    s.check("oom-counted", oom_kills(s, obj["runtime"]["cgroup"]) >= 1, "no oom_kill counted")
    s.note(f"`nspod explain {pod}` shows each container's cgroup and limit")


def pods_holding_memory(s):
    """Running pods of the state root with a memory limit or request (admission holds it)."""
    listed = json.loads(s.quiet("ps", "-o", "json").stdout or '{"items": []}')
    names = []
    for pod in listed.get("items", []):
        spec = pod.get("spec", {})
        parts = [spec.get("resources") or {}] + [c.get("resources") or {} for c in
                                                 spec.get("containers", []) +
                                                 spec.get("initContainers", [])]
        if any("memory" in (r.get("limits") or {}) or "memory" in (r.get("requests") or {})
               for r in parts):
            names.append(pod["metadata"]["name"])
    return names


def terminated(s, pod, name):
    for c in s.inspect(pod)["status"]["containerStatuses"]:
        if c["name"] == name and "terminated" in c["state"]:
            return c["state"]["terminated"]
    return None


def oom_kills(s, pod_cgroup):
    """oom_kill summed over the pod's memory cgroups, shown file by file."""
    name = "memory.events" if kernel_view.cgroup_v2() else "memory.oom_control"
    total = 0
    top = kernel_view.cgroup_dir(pod_cgroup)
    for d, _, _ in os.walk(top):
        text = s.read(os.path.join(d, name)) or ""
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        if d == top and kernel_view.cgroup_v2():
            continue    # v2's memory.events counts its subtree: the leaves say it already
        total += int(counts.get("oom_kill", 0))
    if not kernel_view.cgroup_v2():   # how often the hog's usage hit its limit
        s.read(os.path.join(top, "ctr-hog", "memory.failcnt"))
    return total


LAB = Lab(number=7, name="memory", title="Co-scheduling and memory: placed whole, OOM alone",
          text=TEXT, interfaces=("/proc/meminfo", "memory.limit_in_bytes", "memory.max",
                                 "memory.oom_control", "memory.events", "memory.failcnt",
                                 "memory.oom.group", "SIGKILL"),
          observations=OBSERVATIONS, steps=steps)
