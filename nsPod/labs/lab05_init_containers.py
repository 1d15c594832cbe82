"""Lab 5: init containers: in order, each to completion, and a failing one in backoff."""
from nsPod.labs.model import Lab

TEXT = """\
Init containers run before the app containers, one at a time, in the order the
manifest lists them; each must exit 0 before the next starts. They prepare what the app
needs (a schema migrated, a config rendered into a shared volume, a dependency waited for).

For the kernel each is just a process: the monitor clone(2)s it into the pod's
namespaces, it execve(2)s its command, and the monitor's wait4(2) collects its exit
status. Exit 0 is "Completed"; anything else is a failure. The pod's conditions say
where it is: Initialized turns True only when every init container has completed.

A failing init container blocks the pod: under restartPolicy Always or OnFailure it is
restarted, with the kubelet's crash-loop backoff: the first restart at once, then BASE,
2 x BASE, ... up to MAX (nspod's --restart-backoff BASE:MAX; 10s:300s by default, as the
kubelet's; this lab uses 2s:4s). Between attempts its state is waiting with reason
CrashLoopBackOff; the app containers wait with reason PodInitializing and never start.

You will see:
  1. init-1 and init-2 append to a file in a shared emptyDir; the app prints it:
     "init-1" then "init-2", and only then does the app run.
  2. A pod whose init container always exits 1: its restartCount climbs, CrashLoopBackOff
     shows between attempts, the app container is never started.

(`nspod --trace add POD C --init -- CMD` narrates an init container's setup;
`nspod explain POD` shows which containers run now.)
"""

OBSERVATIONS = {
    "order": "the init containers ran one after the other, in order, before the app",
    "completed": "each init container ended Completed (exit 0) and the pod is Initialized",
    "backoff": "the failing init container is restarted with backoff (CrashLoopBackOff)",
    "blocked": "meanwhile the app container waits (PodInitializing) and never starts",
}

ORDERED = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
    - name: init-1
      command: [sh, -c, "echo init-1 >> /w/order"]
      volumeMounts: [{{name: work, mountPath: /w}}]
    - name: init-2
      command: [sh, -c, "echo init-2 >> /w/order"]
      volumeMounts: [{{name: work, mountPath: /w}}]
  containers:
    - name: app
      command: [sh, -c, "cat /w/order; exec sleep 1000"]
      volumeMounts: [{{name: work, mountPath: /w}}]
"""
FAILING = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 0
  initContainers:
    - {{name: migrate, command: [sh, -c, "echo migrating; echo database not reachable; exit 1"]}}
  containers:
    - {{name: app, command: [sleep, "1000"]}}
"""


def steps(s):
    s.extra_global["--restart-backoff"] = "2s:4s"
    pod = s.pod("ordered")
    s.say("Two init containers, then the app")
    s.nspod("run", "--wait", s.file("ordered.yaml", ORDERED.format(pod=pod)))
    out = s.wait(lambda: s.quiet("logs", pod, "app").stdout, "the app's log")
    s.nspod("logs", pod, "app")
    s.check("order", out.split() == ["init-1", "init-2"], repr(out))
    obj = s.inspect(pod)
    inits = obj["status"].get("initContainerStatuses", [])
    for c in inits:
        end = c["state"].get("terminated", {})
        s.show(f"   {c['name']}: {end.get('reason')} exit {end.get('exitCode')} "
               f"{end.get('startedAt')} .. {end.get('finishedAt')}")
    initialized = [c for c in obj["status"]["conditions"] if c["type"] == "Initialized"]
    s.show(f"   condition Initialized: {initialized[0]['status'] if initialized else '?'}")
    s.check("completed", len(inits) == 2 and all(
        c["state"].get("terminated", {}).get("reason") == "Completed" for c in inits)
        and initialized and initialized[0]["status"] == "True", str(inits))

    pod = s.pod("failing")
    s.say("An init container that always fails, under restartPolicy Always")
    s.nspod("run", s.file("failing.yaml", FAILING.format(pod=pod)))
    seen = set()

    def restarted_twice():
        obj = s.inspect(pod)
        init = obj["status"]["initContainerStatuses"][0]
        seen.add(init["state"].get("waiting", {}).get("reason"))
        app = obj["status"]["containerStatuses"][0]
        seen.add(("app", app["state"].get("waiting", {}).get("reason"),
                  "running" in app["state"] or app["restartCount"] > 0))
        return obj if init["restartCount"] >= 2 and "CrashLoopBackOff" in seen else None
    obj = s.wait(restarted_twice, "two restarts of the init container", timeout=60)
    init, app = obj["status"]["initContainerStatuses"][0], obj["status"]["containerStatuses"][0]
    s.show(f"   migrate: restartCount {init['restartCount']}, state {init['state']}, "
           f"lastState {init['lastState']}")
    s.nspod("logs", pod, "migrate")
    s.check("backoff", init["restartCount"] >= 2 and "CrashLoopBackOff" in seen and
            init["lastState"].get("terminated", {}).get("exitCode") == 1, str(init))
    s.show(f"   app: {app['state']}")
    s.check("blocked", {x for x in seen if isinstance(x, tuple)} ==
            {("app", "PodInitializing", False)} and "running" not in app["state"], str(seen))
    s.note(f"`nspod explain {pod}` shows the init container's restarts")


LAB = Lab(number=5, name="init-containers", title="Init containers: order and backoff",
          text=TEXT, interfaces=("clone(2)", "execve(2)", "wait4(2)"),
          observations=OBSERVATIONS, steps=steps)
