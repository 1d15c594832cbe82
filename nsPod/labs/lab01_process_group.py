"""Lab 1: a pod is a process group: pause first, then containers join its namespaces."""
import os
import shutil

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab

TEXT = """\
A pod is not a thing the kernel knows. It is a group of processes that share some
namespaces. nspod makes it the way the kubelet and CRI runtimes do:

  1. `nspod create POD` starts one tiny process, pause (the "infra container"). Before
     it execs pause, its process calls unshare(2) with CLONE_NEWNET | CLONE_NEWIPC |
     CLONE_NEWUTS: the pod's network, System V IPC and hostname now exist, held by pause.
  2. `nspod add POD NAME -- CMD` forks a container process that calls setns(2) on
     pause's /proc/PID/ns/net, ipc and uts, then unshares a mount namespace (its own
     root filesystem) and a pid namespace of its own, and execs CMD.

What you will see:
  - /proc/PID/ns/* links: a namespace is an inode on the nsfs file system; two processes
    are in the same namespace exactly when their links name the same inode.
  - `nspod ns POD`: the same inodes as a table, one row per process.
  - lsns(8): the kernel's own list, with the process that holds each namespace.

Why it matters: containers of one pod can be started, crash and be restarted while the
namespaces stay, because pause holds them. Lab 2 kills processes to show it.

(`nspod --trace add` narrates the setns/unshare/mount steps as the container is made;
`nspod explain POD` draws this pod, its namespaces and cgroups.)
"""

OBSERVATIONS = {
    "pause-new": "pause's net, ipc and uts namespaces are new (not the host's)",
    "joined": "each container's net, ipc and uts links name pause's inodes",
    "own-mnt": "each container has a mount namespace of its own",
    "own-pid": "each container is in a pid namespace of its own (no pid sharing asked)",
    "table": "`nspod ns` shows pause's NET inode on every row",
}


def steps(s):
    pod = s.pod()
    s.say("Make the pod: only its pause process exists")
    s.nspod("create", pod)
    pause = s.inspect(pod)["runtime"]["pausePid"]
    s.show(f"   pause is host pid {pause}")
    host = kernel_view.ns_links(os.getpid())
    mine = {kind: s.readlink(f"/proc/{pause}/ns/{kind}") for kind in ("net", "ipc", "uts")}
    s.readlink("/proc/self/ns/net")
    s.check("pause-new", all(mine[k] and mine[k] != host[k] for k in mine),
            f"pause {mine}, host {host}")

    s.say("Add two containers: each joins pause's namespaces with setns(2)")
    s.nspod("add", pod, "app", "--", "sleep", "1000")
    s.nspod("add", pod, "helper", "--", "sleep", "1000")
    s.note(f"`nspod --trace add {pod} NAME -- CMD` narrates each setns as it happens")
    runtime = s.wait(lambda: pids_known(s.inspect(pod)["runtime"]), "the containers' pids")
    pids = {name: c["pid"] for name, c in runtime["containers"].items()}
    links = {}
    for name, pid in pids.items():
        s.show(f"\n   container {name} is host pid {pid}:")
        links[name] = {kind: s.readlink(f"/proc/{pid}/ns/{kind}")
                       for kind in ("net", "ipc", "uts", "mnt", "pid")}
    s.check("joined", all(links[n][k] == mine[k] for n in links for k in mine), str(links))
    mnts = {links[n]["mnt"] for n in links} | {host["mnt"]}
    s.check("own-mnt", len(mnts) == len(links) + 1, str(mnts))
    pid_ns = {links[n]["pid"] for n in links} | {kernel_view.ns_links(pause)["pid"]}
    s.check("own-pid", len(pid_ns) == len(links) + 1, str(pid_ns))

    s.say("The same, as nspod's table and as the kernel's list")
    table = s.nspod("ns", pod).stdout.splitlines()
    net_inode = mine["net"].split("[")[1].rstrip("]")
    header = table[0].split()
    column = header.index("NET")
    rows = [row.split() for row in table[1:]]
    s.check("table", len(rows) == 3 and all(r[column] == net_inode for r in rows),
            f"NET column {[r[column] for r in rows]}, pause's {net_inode}")
    if shutil.which("lsns"):
        s.host("lsns", "-t", "net", "-t", "uts", "-t", "ipc", "-p", str(pause), ok=False)
    s.note(f"`nspod explain {pod}` draws pause, the containers and what each shares")


def pids_known(runtime):
    containers = runtime.get("containers", {})
    return runtime if len(containers) == 2 and all(c.get("pid") for c in containers.values()) \
        else None


LAB = Lab(number=1, name="process-group", title="A pod is a process group",
          text=TEXT, interfaces=("unshare(2)", "CLONE_NEWNET", "setns(2)", "/proc/PID/ns", "nsfs", "lsns(8)"),
          observations=OBSERVATIONS, steps=steps, needs=())
