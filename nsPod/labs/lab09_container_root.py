"""Lab 9: a container's root: overlay, pivot_root, masked /proc, capabilities, seccomp."""
import os
import secrets

from nsPod.labs import kernel_view
from nsPod.labs.model import Lab

TEXT = """\
What makes a process "in a container" beyond namespaces? Its root file system and what
it is allowed to do. For a container without an image, nspod does what runc does:

  - overlayfs: the host's / is the read-only lowerdir, the container's writes go to an
    upperdir on a tmpfs of its own, mounted in the container's new mount namespace only
    (charged to its memory cgroup, gone with it); mount(2) of type overlay merges them.
  - pivot_root(2) makes that mount the process's root and the old root is unmounted: the
    host's file systems are no longer reachable by path. /proc/PID/mountinfo of the
    container shows "/" as the overlay; /proc/PID/root leads to another file system.
  - A fresh /proc, with runc's masked paths: /proc/keys, /proc/timer_list ... hidden
    under /dev/null or an empty tmpfs, /proc/sys, /proc/bus, /proc/fs, /proc/irq
    re-mounted read-only; /sys read-only.
  - capabilities(7): root in a container keeps only the default set (CHOWN, KILL,
    NET_BIND_SERVICE, SETUID ...); CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE are gone.
    /proc/PID/status shows the mask as CapEff; the lab decodes it (as capsh --decode).
  - seccomp(2): with seccompProfile RuntimeDefault a BPF filter refuses syscalls such
    as unshare, mount, keyctl, init_module; /proc/PID/status shows "Seccomp: 2" (filter
    mode) and NoNewPrivs.

You will see the container's mountinfo, a file it writes (seen from the host through
/proc/PID/root, not in the host's /), its masks, its capabilities and its seccomp mode,
against the host shell's own.

(`nspod --trace add` narrates the overlay mount and pivot_root; `nspod explain POD` shows
the overlay's layers.)
"""

OBSERVATIONS = {
    "overlay": "the container's / is an overlay: lowerdir=/, an upperdir of its own",
    "pivot-root": "/proc/PID/root is another file system than the host's /",
    "writes-stay": "a file the container writes is in its root, not in the host's /",
    "masked": "/proc/keys is masked and /proc/sys is read-only",
    "caps": "CapEff decodes to the default set: no CAP_SYS_ADMIN, CAP_NET_BIND_SERVICE in",
    "seccomp": "/proc/PID/status shows Seccomp: 2 (a filter) with RuntimeDefault",
}

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
    - name: box
      command: [sleep, "1000"]
      securityContext: {{seccompProfile: {{type: RuntimeDefault}}}}
"""


def steps(s):
    pod = s.pod()
    s.say("A container on the host's root, with the runtime's default seccomp profile")
    s.nspod("run", "--wait", s.file("pod.yaml", MANIFEST.format(pod=pod)))
    pid = s.inspect(pod)["runtime"]["containers"]["box"]["pid"]
    s.read(f"/proc/{pid}/mountinfo", f"grep -E ' / | /proc' /proc/{pid}/mountinfo",
           only=(" / / ", " /proc"))
    mounts = {m[0]: m for m in kernel_view.mounts(pid)}
    root = mounts.get("/", ("", "", "", ""))
    options = dict(o.split("=", 1) for o in root[3].split(",") if "=" in o)
    s.check("overlay", root[1] == "overlay" and options.get("lowerdir") == "/" and
            "upperdir" in options, str(root))

    s.say("pivot_root: the container's root is not the host's")
    theirs, ours = os.stat(f"/proc/{pid}/root/"), os.stat("/")
    s.show(f"# stat -c '%d' /proc/{pid}/root/ /\n   {theirs.st_dev}\n   {ours.st_dev}")
    s.check("pivot-root", theirs.st_dev != ours.st_dev, f"{theirs.st_dev} vs {ours.st_dev}")

    name = f"lab-{secrets.token_hex(4)}"
    s.nspod("exec", pod, "--", "sh", "-c", f"echo written-inside > /{name}; cat /{name}")
    inside = f"/proc/{pid}/root/{name}"
    s.host("ls", "-l", inside, ok=False)
    s.host("ls", "-l", f"/{name}", ok=False)
    s.check("writes-stay", os.path.isfile(inside) and not os.path.lexists(f"/{name}"), inside)

    s.say("Masked and read-only parts of /proc")
    tried = s.nspod("exec", pod, "--", "sh", "-c",
                    "wc -c /proc/keys; echo 1 > /proc/sys/kernel/shm_rmid_forced", ok=False)
    keys, sysctl = mounts.get("/proc/keys"), mounts.get("/proc/sys")
    s.check("masked", keys is not None and tried.stdout.startswith("0 ") and
            "ro" in mount_options(pid, "/proc/sys") and "Read-only" in tried.stderr,
            f"{keys} {sysctl} {tried.stdout} {tried.stderr}")

    s.say("Capabilities and seccomp: the container's PID 1 and this shell")
    mine, box = kernel_view.status(os.getpid()), kernel_view.status(pid)
    s.read(f"/proc/{pid}/status", f"grep -E 'Cap|Seccomp|NoNewPrivs' /proc/{pid}/status",
           only=("Cap", "Seccomp", "NoNewPrivs"))
    caps = kernel_view.decode_caps(box.get("CapEff", "0"))
    s.show(f"   CapEff decoded: {' '.join(caps)}")
    s.show(f"   this shell's CapEff: {mine.get('CapEff')} "
           f"({len(kernel_view.decode_caps(mine.get('CapEff', '0')))} capabilities), "
           f"Seccomp: {mine.get('Seccomp')}")
    s.check("caps", "CAP_SYS_ADMIN" not in caps and "CAP_NET_BIND_SERVICE" in caps, str(caps))
    s.check("seccomp", box.get("Seccomp") == "2", str(box.get("Seccomp")))
    s.note(f"`nspod explain {pod}` shows the overlay; `nspod --trace add` its pivot_root")


def mount_options(pid, where):
    """The per-mount options (ro/rw, nosuid...) of a mount point in /proc/PID/mountinfo."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if kernel_view.unescape(fields[4]) == where:
                return fields[5].split(",")
    return []


LAB = Lab(number=9, name="container-root", title="A container's root: overlay to seccomp",
          text=TEXT, interfaces=("overlayfs", "mount(2)", "pivot_root(2)", "/proc/PID/mountinfo",
                                 "/proc/PID/root", "capabilities(7)", "CapEff", "seccomp(2)",
                                 "NoNewPrivs"),
          observations=OBSERVATIONS, steps=steps)
