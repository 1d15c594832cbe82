"""Lab 2: why the infra container: the sandbox outlives its containers, not pause."""
import os
import signal

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab

TEXT = """\
Why does every pod have a pause process that does nothing? Because a namespace lives as
long as something holds it: a process in it, an open /proc/PID/ns file, or a bind mount
of one (ip-netns(8) keeps /run/netns/NAME that way). pause holds the pod's net, ipc and
uts namespaces, so the containers can come and go.

You will:
  1. Start a pod of two containers under restartPolicy: Always (with a short
     --restart-backoff so that the lab does not wait ten seconds).
  2. Make a System V shared memory segment in it (ipcmk), note the pod IP and hostname.
  3. kill(2) one container's process with SIGKILL from the host. The monitor sees the
     exit (waitpid), restarts the container, which setns(2)s into pause's namespaces
     again: the /proc/PID/ns/net inode, the IP, the hostname and the segment (ipcs) stay.
  4. kill pause itself. Now the namespaces die with their last holder: the monitor
     kills the containers, builds a new sandbox (new pause, new inodes, the IP lease
     kept where free) and restarts every container in it. The IPC segment is gone: it
     lived in the old ipc namespace.

nsfs inode numbers are reused once a namespace is freed, so to compare old and new the
lab holds the old ipc and uts namespaces open (an open(2) of /proc/PID/ns/ipc) while it
kills pause: held, they cannot die, and the new ones must get other numbers.

This is the kubelet's rule too: a dead sandbox means "kill the pod's containers, make a
new sandbox, start them again", each counted in restartCount.

(`nspod explain POD` shows the pause pid and inodes before and after;
`nspod --trace restart POD C` narrates a restart's setns steps.)
"""

OBSERVATIONS = {
    "container-restarted": "the killed container came back (restartCount 1, a new pid)",
    "sandbox-kept": "after that, pause and the pod's net/ipc/uts inodes are unchanged",
    "identity-kept": "the IP, hostname and the IPC segment are still there",
    "sandbox-rebuilt": "after pause was killed: a new pause with new ipc and uts inodes",
    "containers-rejoined": "every container was restarted into the new namespaces",
    "ipc-lost": "the IPC segment went with the old ipc namespace",
}

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 0
  containers:
    - {{name: app, command: [sleep, "1000"]}}
    - {{name: peer, command: [sleep, "1000"]}}
"""
KINDS = ("net", "ipc", "uts")
# Not net: a held network namespace would keep the pod's veth (and its name) alive.
HELD = ("ipc", "uts")


def steps(s):
    s.extra_global["--restart-backoff"] = "1s:2s"
    pod = s.pod()
    s.say("A pod of two containers, restartPolicy Always")
    s.nspod("run", "--wait", s.file("pod.yaml", MANIFEST.format(pod=pod)))
    before = s.wait(lambda: running(s, pod, {"app": 0, "peer": 0}), "both containers to run")
    pause = before["runtime"]["pausePid"]
    ip = before["status"].get("podIP")
    inodes = {k: s.readlink(f"/proc/{pause}/ns/{k}") for k in KINDS}
    hostname = s.nspod("exec", pod, "-c", "peer", "--", "hostname").stdout.strip()
    shmid = s.nspod("exec", pod, "-c", "peer", "--", "ipcmk", "-M", "4096").stdout.split()[-1]

    s.say("Kill the app container's process from the host")
    app = before["runtime"]["containers"]["app"]["pid"]
    s.kill(app, before["runtime"]["containers"]["app"]["cgroup"], signal.SIGKILL)
    after = s.wait(lambda: running(s, pod, {"app": 1, "peer": 0}), "app to be restarted")
    new_app = after["runtime"]["containers"]["app"]["pid"]
    s.check("container-restarted", new_app != app, f"pid {app} -> {new_app}")
    s.nspod("ns", pod)
    same = after["runtime"]["pausePid"] == pause and \
        all(kernel_view.ns_links(new_app).get(k) == inodes[k] for k in KINDS)
    s.check("sandbox-kept", same, f"app now {kernel_view.ns_links(new_app)}, pause {inodes}")
    seen = s.nspod("exec", pod, "-c", "app", "--", "ipcs", "-m").stdout
    kept = after["status"].get("podIP") == ip and has_segment(seen, shmid) and \
        s.nspod("exec", pod, "-c", "app", "--", "hostname").stdout.strip() == hostname
    s.check("identity-kept", kept, f"ip {ip} -> {after['status'].get('podIP')}, shm {shmid}")

    s.say("Kill pause: the sandbox dies with it")
    # Held open, the old ipc and uts namespaces keep their inode numbers from being reused.
    held = {k: os.open(f"/proc/{pause}/ns/{k}", os.O_RDONLY) for k in HELD}
    s.cleanups.append(lambda: [os.close(fd) for fd in held.values()])
    s.show(f"   (the lab holds /proc/{pause}/ns/ipc and uts open)")
    s.kill(pause, f"{before['runtime']['cgroup']}/_pause", signal.SIGKILL)
    rebuilt = s.wait(lambda: running(s, pod, {"app": 2, "peer": 1}, not_pause=pause),
                     "a new sandbox and both containers restarted", timeout=90)
    new_pause = rebuilt["runtime"]["pausePid"]
    new_inodes = {k: s.readlink(f"/proc/{new_pause}/ns/{k}") for k in KINDS}
    s.check("sandbox-rebuilt", new_pause != pause and
            all(new_inodes[k] != inodes[k] for k in HELD), f"{inodes} -> {new_inodes}")
    s.nspod("ns", pod)
    pids = [c["pid"] for c in rebuilt["runtime"]["containers"].values()]
    s.check("containers-rejoined",
            all(kernel_view.ns_links(p).get(k) == new_inodes[k] for p in pids for k in KINDS),
            str({p: kernel_view.ns_links(p) for p in pids}))
    seen = s.nspod("exec", pod, "-c", "app", "--", "ipcs", "-m").stdout
    s.check("ipc-lost", not has_segment(seen, shmid), seen)
    s.show(f"   pod IP before {ip}, now {rebuilt['status'].get('podIP')} (the lease is kept "
           "where free)")
    s.note(f"`nspod explain {pod}` shows the new pause and its inodes")


def running(s, pod, restarts, not_pause=None):
    """The pod once each named container runs with at least that restartCount."""
    obj = s.inspect(pod)
    runtime = obj["runtime"]
    if not_pause is not None and runtime.get("pausePid") in (None, not_pause):
        return None
    by_name = {c["name"]: c for c in obj["status"].get("containerStatuses", [])}
    for name, count in restarts.items():
        c = by_name.get(name)
        if not c or "running" not in c["state"] or c["restartCount"] < count or \
                not runtime.get("containers", {}).get(name, {}).get("pid"):
            return None
    return obj


def has_segment(ipcs_output, shmid):
    return any(line.split()[1:2] == [shmid] for line in ipcs_output.splitlines())


LAB = Lab(number=2, name="infra-container", title="Why the infra container (pause)",
          text=TEXT, interfaces=("/proc/PID/ns", "kill(2)", "waitpid", "setns(2)", "ipcs"),
          observations=OBSERVATIONS, steps=steps, needs=("ipcmk", "ipcs"))
