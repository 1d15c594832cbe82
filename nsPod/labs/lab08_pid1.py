"""Lab 8: the PID 1 problem: zombies, and a SIGTERM that does nothing."""
import signal

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab

TEXT = """\
Each container is, by default, PID 1 of its own pid namespace (CLONE_NEWPID). PID 1 has
two duties a normal program does not know about (pid_namespaces(7)):

  - Orphans are re-parented to it. When they exit they stay zombies (state Z in
    /proc/PID/stat) until their parent calls wait4(2). `sleep` or a server never does:
    the zombies pile up, each holding a pid, until the pid cgroup's limit is hit.
  - The kernel shields it: a signal whose action is the default is dropped for a
    namespace's init (SIGNAL_UNKILLABLE), whoever sends it. SIGTERM with no handler does
    nothing; only SIGKILL (from an ancestor namespace) always works. /proc/PID/status
    shows the handlers: SigCgt is the mask of caught signals (SIGTERM is bit 15 - 1).

With shareProcessNamespace: true, the pod's containers share pause's pid namespace and
pause is PID 1: it reaps every orphan (it loops on waitpid), and a container's own
process is no longer an init, so SIGTERM's default action (exit) applies.

You will see:
  1. A container whose PID 1 is `sleep` after its shell left three orphans: three
     zombies, children of the container's PID 1 (ps in the container shows them too).
  2. SIGTERM sent to two PID 1s: a shell with `trap ... TERM` exits; `sleep` ignores it.
     `nspod stop` then waits the grace period and sends SIGKILL: exit 137.
  3. The orphaner again in a pod sharing its pid namespace: pause adopts the orphans and
     reaps them; none is left.

(`nspod explain POD` shows which containers share pause's pid namespace.)
"""

OBSERVATIONS = {
    "zombies": "without a shared pid namespace, the orphans become zombies under PID 1",
    "sigcgt": "SigCgt: the shell with a trap catches SIGTERM, sleep catches nothing",
    "term-ignored": "SIGTERM: the trapping PID 1 exits 0, sleep as PID 1 runs on",
    "sigkill": "`nspod stop` kills the one that ignored SIGTERM with SIGKILL (137)",
    "reaped": "with shareProcessNamespace, pause (PID 1) adopts the orphans and reaps them",
}

# The orphans live 3 s: long enough to be seen adopted by pause on a busy host.
ORPHANER = "(sleep 3 &); (sleep 3 &); (sleep 3 &); exec sleep 1000"
POLITE = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: {share}
  containers:
    - {{name: orphaner, command: [sh, -c, "{orphaner}"]}}
{more}"""
MORE = """\
    - {{name: polite, command: [sh, -c, "{polite}"]}}
    - {{name: stubborn, command: [sleep, "1000"]}}
""".format(polite=POLITE)
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def steps(s):
    pod = s.pod("own")
    s.say("Each container its own PID 1; the orphaner leaves three orphans, then execs sleep")
    s.nspod("run", "--wait", s.file("own.yaml", MANIFEST.format(
        pod=pod, share="false", orphaner=ORPHANER, more=MORE)))
    pids = s.wait(lambda: all_pids(s, pod, 3), "the containers' pids")
    zombies = s.wait(lambda: [c for c in kernel_view.children(pids["orphaner"]) if c[1] == "Z"]
                     if len(zombie_children(pids["orphaner"])) == 3 else None,
                     "three zombies", timeout=30)
    s.show(f"   children of the orphaner's PID 1 (host pid {pids['orphaner']}): {zombies}")
    s.nspod("exec", pod, "-c", "orphaner", "--", "ps", "-eo", "pid,ppid,stat,comm")
    s.check("zombies", len(zombies) == 3, str(zombies))

    s.say("SIGTERM to two PID 1s: one has a handler")
    masks = {}
    for name in ("polite", "stubborn"):
        s.read(f"/proc/{pids[name]}/status", f"grep SigCgt /proc/{pids[name]}/status",
               only=("SigCgt",))
        masks[name] = int(kernel_view.status(pids[name]).get("SigCgt", "0"), 16)
        s.show(f"   {name}: SIGTERM caught: {bool(masks[name] & SIGTERM_BIT)}")
    s.check("sigcgt", masks["polite"] & SIGTERM_BIT and not masks["stubborn"] & SIGTERM_BIT,
            str(masks))
    cgroups = {name: c["cgroup"] for name, c in
               s.inspect(pod)["runtime"]["containers"].items()}
    for name in ("polite", "stubborn"):
        s.kill(pids[name], cgroups[name], signal.SIGTERM)
    polite = s.wait(lambda: terminated(s, pod, "polite"), "polite to exit", timeout=30)
    s.show(f"   polite: {polite}")
    stubborn_alive = kernel_view.alive(pids["stubborn"])
    s.show(f"   stubborn (pid {pids['stubborn']}) alive: {stubborn_alive}")
    s.check("term-ignored", polite.get("exitCode") == 0 and stubborn_alive, str(polite))

    s.say("nspod stop: SIGTERM, the grace period (1s here), then SIGKILL")
    s.nspod("stop", pod)
    stubborn = s.wait(lambda: terminated(s, pod, "stubborn"), "stubborn to end", timeout=30)
    s.show(f"   stubborn: {stubborn}")
    s.check("sigkill", stubborn.get("exitCode") == 137 and stubborn.get("signal") == 9,
            str(stubborn))

    pod = s.pod("shared")
    s.say("The same orphaner with shareProcessNamespace: true")
    s.nspod("run", "--wait", s.file("shared.yaml", MANIFEST.format(
        pod=pod, share="true", orphaner=ORPHANER, more="")))
    pause = s.inspect(pod)["runtime"]["pausePid"]
    adopted = s.wait(lambda: kernel_view.children(pause), "pause to adopt the orphans")
    s.show(f"   children of pause (host pid {pause}): {adopted}")
    s.nspod("exec", pod, "--", "ps", "-eo", "pid,ppid,stat,comm")
    left = s.wait(lambda: not kernel_view.children(pause) and [True], "the orphans to end")
    s.show(f"   children of pause now: {kernel_view.children(pause)}")
    s.nspod("exec", pod, "--", "ps", "-eo", "pid,ppid,stat,comm")
    s.check("reaped", adopted and left, str(adopted))
    s.note(f"`nspod explain {pod}` shows the containers in pause's pid namespace")


def zombie_children(pid):
    return [c for c in kernel_view.children(pid) if c[1] == "Z"]


def all_pids(s, pod, count):
    containers = s.inspect(pod)["runtime"].get("containers", {})
    pids = {name: c.get("pid") for name, c in containers.items()}
    return pids if len(pids) == count and all(pids.values()) else None


def terminated(s, pod, name):
    for c in s.inspect(pod)["status"]["containerStatuses"]:
        if c["name"] == name and "terminated" in c["state"]:
            return c["state"]["terminated"]
    return None


LAB = Lab(number=8, name="pid1", title="The PID 1 problem: zombies and SIGTERM",
          text=TEXT, interfaces=("CLONE_NEWPID", "pid_namespaces(7)", "/proc/PID/stat",
                                 "wait4(2)", "SIGNAL_UNKILLABLE", "SigCgt", "waitpid"),
          observations=OBSERVATIONS, steps=steps, needs=("ps",))
