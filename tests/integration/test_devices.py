"""The device allowlist, on the real kernel: the devices cgroup on v1 (this host), a
BPF_CGROUP_DEVICE program on v2 (tests/vm/run-tier.sh runs this file in a cgroup v2 guest).

The kubelet's runtimes (runc, crun under containerd or CRI-O) refuse every device that is
not in their default allowlist to a non-privileged container, whatever its capabilities:
runc's AllowedDevices (libcontainer/specconv) through the devices cgroup (v1) or its
devicefilter program (v2). nspod's nodev mounts alone are not enough: a container given
CAP_SYS_ADMIN mounts a tmpfs of its own without nodev and mknods devices there.
"""
import json
import os
import subprocess

import pytest

from busybox import make_rootfs
from helpers import guest_env, pod_yaml, wait_for
from nsPod.kernel.cgroups import detect, devices

ROOT = "/sys/fs/cgroup"
VERSION = detect(ROOT)
SYS_ADMIN = {"capabilities": {"add": ["SYS_ADMIN"]}}
EPERM = "Operation not permitted"
# Each line: name, then a shell command run in a tmpfs the container mounted itself (no nodev,
# so the kernel's nodev check is out of the way and only the allowlist decides). `: < f` opens
# the node (read only) and does nothing else with it: no ioctl on a real device.
# `made` tells a refused open from a refused mknod.
PROBES = """\
loop-control: mknod n c 10 237 && echo made && : < n
fuse: mknod n c 10 229 && echo made && : < n
loop0: mknod n b 7 0 && echo made && : < n
null: mknod n c 1 3 && echo made && echo x > n
zero: mknod n c 1 5 && echo made && head -c 4 n | wc -c
urandom: mknod n c 1 9 && echo made && head -c 4 n | wc -c
"""
DENIED = ("loop-control", "fuse", "loop0")
ALLOWED = ("null", "zero", "urandom")


def probe_script():
    """Mount a tmpfs without nodev on /mnt, try each probe there, print 'PROBE name rc output'
    lines; every probe in a fresh node, so one result cannot hide another. Output goes to
    stdout, not a file: read through `logs` and `exec`, whatever root an exec lands in."""
    lines = ["mount -t tmpfs -o mode=755 none /mnt || exit 1"]
    for line in PROBES.strip().splitlines():
        name, command = line.split(": ", 1)
        # $(echo $r): the output on one line
        lines.append(f"r=$(cd /mnt && rm -f n && {{ {command}; }} 2>&1); rc=$?; "
                     f"echo \"PROBE {name} $rc $(echo $r)\"")
    lines.append("umount /mnt")
    return "\n".join(lines)


def parse(text):
    results = {}
    for line in text.splitlines():
        if line.startswith("PROBE "):
            name, rc, *rest = line.split(" ", 3)[1:]
            results[name] = (int(rc), rest[0] if rest else "")
    return results


def container(name, rootfs, command, security):
    return (f"    - name: {name}\n      image: {json.dumps(rootfs)}\n"
            f"      command: [\"sh\", \"-c\", {json.dumps(command)}]\n"
            f"      securityContext: {json.dumps(security)}\n" + guest_env())


def cgroup_dir(nspod, pod, name):
    """The container's cgroup in the hierarchy that holds the device rules."""
    rel = nspod.inspect(pod)["runtime"]["containers"][name]["cgroup"].strip("/")
    return os.path.join(ROOT, "devices", rel) if VERSION == "v1" else os.path.join(ROOT, rel)


def kernel_rules(path):
    """What the kernel holds for a cgroup: v1 its devices.list, v2 its device programs."""
    if VERSION == "v1":
        with open(os.path.join(path, "devices.list")) as f:
            return f.read().splitlines()
    return devices.attached_programs(path)


def unrestricted():
    return ["a *:* rwm"] if VERSION == "v1" else []


def run_probes(nspod, pod, name):
    """The probes run by exec (a process that joins the container's cgroup)."""
    r = nspod("exec", pod, "-c", name, "--", "sh", "-c", probe_script(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return parse(r.stdout)


def test_a_container_with_sys_admin_opens_only_allowlisted_devices(nspod, tmp_path):
    """runc's AllowedDevices for a non-privileged container: mknod of any node, open of
    null/zero/full/random/urandom/tty/console/ptmx/pts/tun only; EPERM for the rest (the
    kubelet's runtimes apply it whatever capabilities the container was given). The
    container's own process and an exec'd one are both covered."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    start = probe_script() + "\necho PROBES-DONE\nsleep 1000"
    nspod.run_yaml(pod_yaml("dev", container("a", rootfs, start, SYS_ADMIN)))
    out = wait_for(lambda: "PROBES-DONE" in (text := nspod("logs", "dev", "a").stdout) and text,
                   timeout=60, what="the container's probes")
    for who, results in (("container", parse(out)), ("exec", run_probes(nspod, "dev", "a"))):
        # mknod itself is allowed (c *:* m, b *:* m), as runc allows it; opening is refused
        for name in DENIED:
            code, text = results[name]
            assert code != 0 and text.startswith("made ") and EPERM in text, \
                (who, name, results[name])
        for name in ALLOWED:
            assert results[name][0] == 0, (who, name, results[name])
        assert results["zero"][1] == "made 4" and results["urandom"][1] == "made 4", results
    rules = kernel_rules(cgroup_dir(nspod, "dev", "a"))
    if VERSION == "v1":
        assert rules == [r.v1_line() for r in devices.DEFAULT_ALLOWLIST], rules
    else:
        assert len(rules) == 1, rules


def test_a_privileged_container_opens_any_device(nspod, tmp_path):
    """Privileged containers get every device, as in Kubernetes (no devices cgroup rule, no
    device program). Where the kernel has no driver for a node (the v2 guest may lack loop
    and fuse), opening it fails with ENXIO/ENODEV, never EPERM."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("priv", container("p", rootfs, "sleep 1000", {"privileged": True})))
    assert kernel_rules(cgroup_dir(nspod, "priv", "p")) == unrestricted()
    results = run_probes(nspod, "priv", "p")
    for name in DENIED + ALLOWED:
        assert results[name][1].startswith("made") and EPERM not in results[name][1], \
            (name, results[name])
    for name in ALLOWED:
        assert results[name][0] == 0, (name, results[name])
    if os.path.exists("/dev/loop-control"):
        assert results["loop-control"][0] == 0, results["loop-control"]


def test_the_allowlist_survives_restarts_and_covers_debug_containers(nspod, tmp_path):
    """A restarted container gets the allowlist again, once (the program of its earlier run
    replaced, not stacked); an ephemeral debug container (not privileged) gets it too."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("rs", container("a", rootfs, "sleep 1000", SYS_ADMIN)))
    path = cgroup_dir(nspod, "rs", "a")
    before = kernel_rules(path)
    assert before != unrestricted()
    pid = nspod.inspect("rs")["runtime"]["containers"]["a"]["pid"]
    nspod("restart", "rs", "a")
    wait_for(lambda: nspod.inspect("rs")["runtime"]["containers"]["a"].get("pid") not in
             (None, pid), timeout=60, what="the restarted container")
    after = kernel_rules(path)
    if VERSION == "v1":
        assert after == before
    else:
        assert len(after) == 1 and after != before, (before, after)
    assert run_probes(nspod, "rs", "a")["loop-control"][1].find(EPERM) >= 0

    debugger = subprocess.Popen(
        [*nspod_cmd(nspod), "debug", "rs", "--", "sleep", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **dict([nspod.marker.split("=")])))
    try:
        pod_dir = os.path.dirname(path)
        found = wait_for(lambda: [d for d in os.listdir(pod_dir) if d.startswith("ctr-debugger-")],
                         timeout=60, what="the debug container's cgroup")
        debug_path = os.path.join(pod_dir, found[0])
        # the process joins only after the rules are in place: wait for it, then look
        wait_for(lambda: open(os.path.join(debug_path, "cgroup.procs")).read().strip(),
                 timeout=60, what="the debug container's process")
        assert kernel_rules(debug_path) != unrestricted()
    finally:
        debugger.terminate()
        try:
            debugger.wait(timeout=30)
        except subprocess.TimeoutExpired:
            debugger.kill()
            debugger.wait()


def nspod_cmd(nspod):
    from conftest import NSPOD
    return NSPOD + nspod.global_args()


@pytest.mark.skipif(VERSION != "v1", reason="the v1 devices cgroup only exists on v1 hosts")
def test_v1_pod_cgroups_are_made_and_removed_in_the_devices_hierarchy(nspod, tmp_path):
    """The devices hierarchy is one more v1 hierarchy: made under the same --cgroup-parent,
    removed with the pod (the fixture's leak check looks in every hierarchy)."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("hier", container("a", rootfs, "sleep 1000", {})))
    path = cgroup_dir(nspod, "hier", "a")
    assert path.startswith(os.path.join(ROOT, "devices") + "/") and os.path.isdir(path)
    pid = nspod.inspect("hier")["runtime"]["containers"]["a"]["pid"]
    with open(os.path.join(path, "cgroup.procs")) as f:
        assert str(pid) in f.read().split()
    nspod("rm", "-f", "--timeout", "0", "hier")
    assert not os.path.exists(path)


CHILD = """
import os, sys
sys.stdin.readline()              # in the cgroup now
node = sys.argv[1]
os.mknod(node, 0o20600, os.makedev(10, 237))   # mknod: allowed (c *:* m)
for path in ("/dev/null", node):
    try:
        os.close(os.open(path, os.O_RDONLY))
        print(path, "opened")
    except OSError as e:
        print(path, e.errno)
"""


def cgroup2_root():
    """The cgroup2 hierarchy: the root on a v2 host, <root>/unified on a hybrid one."""
    if VERSION == "v2":
        return ROOT
    unified = os.path.join(ROOT, "unified")
    return unified if os.path.exists(os.path.join(unified, "cgroup.controllers")) else None


def test_the_v2_device_program_refuses_open_not_mknod(tmp_path):
    """The BPF_CGROUP_DEVICE program itself, on whatever cgroup2 hierarchy this host has (a
    hybrid host's too): runc's devicefilter semantics, replaced rather than stacked when
    applied again, removed when the restriction is lifted."""
    from conftest import own_cgroup
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 hierarchy on this host (neither v2 nor hybrid)")
    if os.statvfs(tmp_path).f_flag & os.ST_NODEV:
        pytest.skip(f"{tmp_path} is on a nodev mount: the device checks would not be reached")
    path = os.path.join(root, own_cgroup("").strip("/"), f"nspod-test-{os.urandom(4).hex()}")
    os.mkdir(path)
    child = None
    try:
        devices.apply_v2(path, devices.DEFAULT_ALLOWLIST)
        first = devices.attached_programs(path)
        devices.apply_v2(path, devices.DEFAULT_ALLOWLIST)
        second = devices.attached_programs(path)
        assert len(first) == 1 and len(second) == 1 and first != second, (first, second)
        node = str(tmp_path / "loop-control")
        child = subprocess.Popen(["python3", "-c", CHILD, node], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        out, _ = child.communicate("go\n", timeout=60)
        assert out.splitlines() == ["/dev/null opened", f"{node} 1"], out   # EPERM
        devices.apply_v2(path, None)
        assert devices.attached_programs(path) == []
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        wait_for(lambda: not open(os.path.join(path, "cgroup.procs")).read().strip(),
                 what=f"{path} to empty")
        os.rmdir(path)


def test_apply_to_privileged_and_back_changes_the_allowlist(nspod, tmp_path):
    """`nspod apply` that makes a container privileged restarts it with every device, and
    back: the rules follow the container's current plan, in the same cgroup."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))

    def manifest(security):
        return nspod.manifest(pod_yaml("ap", container("a", rootfs, "sleep 1000", security)),
                              f"ap-{len(security)}.yaml")

    nspod("run", manifest(SYS_ADMIN))
    path = cgroup_dir(nspod, "ap", "a")
    assert kernel_rules(path) != unrestricted()
    for security, restricted in (({"privileged": True}, False), (SYS_ADMIN, True)):
        pid = nspod.inspect("ap")["runtime"]["containers"]["a"]["pid"]
        nspod("apply", manifest(security))
        wait_for(lambda: nspod.inspect("ap")["runtime"]["containers"]["a"].get("pid") not in
                 (None, pid), timeout=60, what="the changed container")
        assert (kernel_rules(path) != unrestricted()) == restricted
        if VERSION == "v2":
            assert len(kernel_rules(path)) == (1 if restricted else 0)
        code, text = run_probes(nspod, "ap", "a")["loop-control"]
        assert (EPERM in text) == restricted, (security, code, text)
