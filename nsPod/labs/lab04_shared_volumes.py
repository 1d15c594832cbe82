"""Lab 4: shared volumes: the seed's App + LogCollector through a tmpfs emptyDir."""
import os

from nsPod.labs.model import Lab

TEXT = """\
Containers of a pod have separate root filesystems (each its own mount namespace, lab
1), so sharing files takes a volume: one file system mounted into several containers.

The seed's pair: App writes its log into an emptyDir volume with medium: Memory, a
tmpfs(5); LogCollector mounts the same tmpfs read-only at another path and reads it.

  - nspod mounts the tmpfs once, on the host, under the pod's state directory
    (findmnt(8) -T shows it: fstype tmpfs, size= from sizeLimit, mode=777), then
    bind-mounts it with mount(2) MS_BIND into each container's root before pivot_root.
  - readOnly: true is a bind mount remounted MS_RDONLY: a write fails with EROFS.
  - sizeLimit is the tmpfs size= option: the kernel refuses the write that would go past
    it with ENOSPC ("No space left on device"). (The pages are also charged to the pod's
    memory cgroup: lab 7.)
  - A hostPath volume is a directory of the host, bind-mounted: what a container writes
    there is on the host, the only way out of a container besides the network.
  - /proc/PID/mountinfo of a container lists each of these mounts as it sees them.

The emptyDir lives as long as the pod: it survives container restarts and goes with
`nspod rm`.

(`nspod explain POD` lists each container's mounts: volumes and overlay.)
"""

OBSERVATIONS = {
    "shared": "LogCollector prints the lines App wrote into the shared tmpfs",
    "read-only": "LogCollector cannot write to its read-only mount (EROFS)",
    "size-limit": "writing past sizeLimit fails with ENOSPC",
    "on-host": "findmnt on the host shows the tmpfs under the pod's directory, size=1024k",
    "mountinfo": "the container's mountinfo shows the tmpfs at /var/log/app",
    "host-path": "a file written to the hostPath volume is on the host",
}

APP = ("i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo request $i >> /var/log/app/app.log; done;"
       " echo from-the-app > /host/app.txt; exec sleep 1000")
COLLECTOR = ("while [ ! -e /logs/app.log ]; do sleep 0.1; done;"
             " tail -n +1 -f /logs/app.log | sed -u 's/^/collected: /'")
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  volumes:
    - {{name: logs, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
    - {{name: host, hostPath: {{path: "{host}", type: Directory}}}}
  containers:
    - name: app
      command: [sh, -c, "{app}"]
      volumeMounts:
        - {{name: logs, mountPath: /var/log/app}}
        - {{name: host, mountPath: /host}}
    - name: logcollector
      command: [sh, -c, "{collector}"]
      volumeMounts:
        - {{name: logs, mountPath: /logs, readOnly: true}}
"""


def steps(s):
    pod = s.pod()
    host_dir = s.directory("hostpath")
    s.say("App writes its log into a tmpfs emptyDir; LogCollector reads it")
    s.nspod("run", "--wait", s.file("pod.yaml", MANIFEST.format(
        pod=pod, host=host_dir, app=APP, collector=COLLECTOR)))
    log = s.wait(lambda: "collected: request 5" in logs(s, pod) and logs(s, pod),
                 "LogCollector to print the log", timeout=30)
    s.nspod("logs", pod, "logcollector")
    s.check("shared", "collected: request 1" in log, log)

    s.say("The collector's mount is read-only")
    wrote = s.nspod("exec", pod, "-c", "logcollector", "--", "touch", "/logs/x", ok=False)
    s.check("read-only", wrote.returncode != 0 and "Read-only" in wrote.stderr, wrote.stderr)

    s.say("sizeLimit: 1Mi is the tmpfs's size; write 4 MiB into it")
    full = s.nspod("exec", pod, "-c", "app", "--", "dd", "if=/dev/zero",
                   "of=/var/log/app/big", "bs=64k", "count=64", ok=False)
    s.check("size-limit", full.returncode != 0 and "No space left" in full.stderr, full.stderr)
    s.nspod("exec", pod, "-c", "app", "--", "rm", "-f", "/var/log/app/big")

    s.say("Where the tmpfs lives on the host, and what the container sees")
    state_dir = s.inspect(pod)["runtime"]["stateDir"]
    found = s.host("findmnt", "-n", "-o", "TARGET,FSTYPE,OPTIONS", "-T",
                   os.path.join(state_dir, "volumes", "logs"))
    s.check("on-host", found.stdout.startswith(state_dir) and " tmpfs " in found.stdout
            and "size=1024k" in found.stdout, found.stdout)
    pid = s.inspect(pod)["runtime"]["containers"]["app"]["pid"]
    info = s.read(f"/proc/{pid}/mountinfo", f"grep -E ' /var/log/app | /host ' /proc/{pid}/mountinfo",
                  only=(" /var/log/app ", " /host "))
    rows = [l for l in (info or "").splitlines() if " /var/log/app " in l]
    s.check("mountinfo", bool(rows) and " - tmpfs " in rows[0], str(rows))

    s.say("hostPath: the container's write is on the host")
    text = s.read(os.path.join(host_dir, "app.txt"))
    s.check("host-path", text == "from-the-app\n", repr(text))
    s.note(f"`nspod explain {pod}` lists the volumes and where each is mounted")


def logs(s, pod):
    return s.quiet("logs", pod, "logcollector").stdout


LAB = Lab(number=4, name="shared-volumes", title="Shared volumes: App + LogCollector",
          text=TEXT, interfaces=("tmpfs(5)", "findmnt(8)", "mount(2)", "MS_BIND", "MS_RDONLY",
                                 "EROFS", "ENOSPC", "/proc/PID/mountinfo"),
          observations=OBSERVATIONS, steps=steps, needs=("findmnt",))
