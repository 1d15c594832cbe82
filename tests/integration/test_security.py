"""Containers that are really contained: escapes fail from a default container and work when
privileged (so the checks are not vacuous); user, groups, capabilities, no_new_privs,
seccomp, read-only roots, masked /proc and /sys; exec with the container's identity."""
import json
import os
import socket
import subprocess
import textwrap

import pytest

from busybox import make_rootfs
from helpers import pod_yaml, wait_terminated

DEFAULT_CAPS = 0x00000000A80425FB   # Docker's and containerd's default set
ALL_CAPS_HERE = int(next(line.split()[1] for line in open("/proc/self/status")
                         if line.startswith("CapBnd:")), 16)
BUSYBOX_DIRS = {"bin", "dev", "etc", "mnt", "proc", "sys", "tmp"}


def c(name, image, command="sleep 1000", security=None, extra=""):
    """A container entry; `security` a dict for its securityContext."""
    text = f"    - name: {name}\n"
    if image:
        text += f"      image: {json.dumps(image)}\n"
    text += f'      command: ["sh", "-c", {json.dumps(command)}]\n'
    if security:
        text += f"      securityContext: {json.dumps(security)}\n"
    return text + extra


def pod_security(values):
    return f"  securityContext: {json.dumps(values)}\n"


def status(nspod, pod, container="a"):
    """The container's /proc/self/status fields, read through exec."""
    out = nspod("exec", pod, "-c", container, "--", "cat", "/proc/self/status").stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def run_script(nspod, pod, container, script):
    """Run each `name: shell` line in the container; {name: (exit code, output)}."""
    results = {}
    for line in textwrap.dedent(script).strip().splitlines():
        name, command = line.split(": ", 1)
        r = nspod("exec", pod, "-c", container, "--", "sh", "-c", command + " 2>&1", check=False)
        results[name] = (r.returncode, r.stdout.strip())
    return results


def block_device():
    """(major, minor) of a block device the host's root can open (this machine forbids its
    disk even to root; a loop device does): so a refusal inside is the container's doing."""
    for name in sorted(os.listdir("/sys/class/block")):
        try:
            os.close(os.open(f"/dev/{name}", os.O_RDONLY))
        except OSError:
            continue
        st = os.stat(f"/dev/{name}")
        return os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("no block device the host can open")


def refused(out):
    return "not permitted" in out.lower() or "permission denied" in out.lower()


ESCAPES = """\
    mount: mount -t tmpfs none /mnt
    umount: umount /proc
    unshare-mount: unshare -m true
    setns-pid1: nsenter -t 1 -m true
    sysrq: echo h > /proc/sysrq-trigger
    module: insmod /bin/busybox
    raw-disk-node: mknod /dev/disk b {major} {minor} && dd if=/dev/disk of=/dev/null bs=512 count=1
    raw-disk-node-root: mknod /disk b {major} {minor} && dd if=/disk of=/dev/null bs=512 count=1
    host-disk: ls /dev/vda /dev/sda
    kill-host: kill -9 {host_pid}
    hostname: hostname escaped
    see-host-proc: test -d /proc/{host_pid}
    see-sibling: test -d /proc/{sibling}
"""


def test_a_busybox_container_sees_only_its_rootfs_own_proc_and_minimal_dev(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("bb", c("a", rootfs)))
    assert set(nspod("exec", "bb", "--", "ls", "/").stdout.split()) == BUSYBOX_DIRS
    assert nspod("exec", "bb", "--", "cat", "/proc/1/cmdline").stdout.split("\0")[0] == "sleep"
    pids = [p for p in nspod("exec", "bb", "--", "ls", "/proc").stdout.split() if p.isdigit()]
    assert "1" in pids and len(pids) <= 3, pids   # itself, the exec'd ls (and its shell)
    dev = set(nspod("exec", "bb", "--", "ls", "/dev").stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "fd", "stdin",
            "stdout", "stderr", "ptmx"} <= dev
    assert not dev & {"vda", "sda", "kmsg", "mem", "kvm", "loop0"}, dev
    assert nspod("exec", "bb", "--", "sh", "-c",
                 "echo ok > /dev/null && head -c 4 /dev/zero | wc -c").stdout.strip() == "4"
    masked = run_script(nspod, "bb", "a", """\
        kcore: cat /proc/kcore | wc -c
        keys: cat /proc/keys | wc -c
        timer_list: cat /proc/timer_list | wc -c
        sched_debug: cat /proc/sched_debug | wc -c
        acpi: ls -A /proc/acpi | wc -l
        firmware: ls -A /sys/firmware | wc -l
    """)
    for name, (code, out) in masked.items():
        # Masked, or absent from this kernel: either way nothing to read.
        assert out.splitlines()[-1] == "0", (name, out)
    mounts = nspod("exec", "bb", "--", "cat", "/proc/self/mountinfo").stdout
    by_target = {line.split()[4]: line for line in mounts.splitlines()}
    assert " ro," in by_target["/proc/sys"] and " ro," in by_target["/sys"]


def test_escapes_from_a_default_container_fail(nspod, tmp_path):
    """Kubernetes' defaults (seccomp Unconfined): capabilities, namespaces and the mounts alone."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    sleeper = subprocess.Popen(["sleep", "1000"])
    host_name = socket.gethostname()
    try:
        nspod.run_yaml(pod_yaml("esc", c("a", rootfs) + c("b", rootfs)))
        sibling = nspod.inspect("esc")["runtime"]["containers"]["b"]["pid"]
        major, minor = block_device()
        results = run_script(nspod, "esc", "a", ESCAPES.format(
            major=major, minor=minor, host_pid=sleeper.pid, sibling=sibling))
        for name, (code, out) in results.items():
            assert code != 0, f"{name} succeeded: {out}"
        # The raw disk: mknod is allowed (CAP_MKNOD, a default capability), opening is not.
        assert "Permission denied" in results["raw-disk-node"][1]
        assert "Permission denied" in results["raw-disk-node-root"][1]
        assert refused(results["mount"][1])
        assert "Operation not permitted" in results["hostname"][1]
        assert sleeper.poll() is None, "the host's process must survive"
        assert socket.gethostname() == host_name
        assert nspod("exec", "esc", "--", "hostname").stdout.strip() == "esc"
        caps = status(nspod, "esc")
        assert int(caps["CapEff"], 16) == DEFAULT_CAPS == int(caps["CapBnd"], 16)
        assert caps["Seccomp"] == "0" and caps["NoNewPrivs"] == "0"
        # Without a seccomp profile a user namespace can be made (what Kubernetes' Unconfined
        # default allows): RuntimeDefault is what refuses it (next test).
        assert nspod("exec", "esc", "--", "unshare", "-U", "true", check=False).returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_runtime_default_seccomp_refuses_namespaces_modules_and_keyrings(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("sec", c("a", rootfs),
                            extra_spec=pod_security({"seccompProfile": {"type": "RuntimeDefault"}})))
    caps = status(nspod, "sec")
    assert caps["Seccomp"] == "2" and caps["NoNewPrivs"] == "0"
    results = run_script(nspod, "sec", "a", """\
        unshare-user: unshare -U true
        unshare-net: unshare -n true
        module: insmod /bin/busybox
        mount: mount -t tmpfs none /mnt
        setns: nsenter -t 1 -u true
    """)
    for name, (code, out) in results.items():
        assert code != 0 and refused(out), (name, out)
    # Ordinary work goes on: processes, files, chroot (CAP_SYS_CHROOT is a default).
    assert nspod("exec", "sec", "--", "sh", "-c",
                 "echo x > /tmp/f && chroot / cat /tmp/f").stdout == "x\n"


def test_privileged_containers_can_do_what_the_default_cannot(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    host_name = socket.gethostname()
    major, minor = block_device()
    nspod.run_yaml(pod_yaml("priv", c("a", rootfs, security={"privileged": True})))
    results = run_script(nspod, "priv", "a", f"""\
        mount: mount -t tmpfs none /mnt && umount /mnt
        unshare-mount: unshare -m true
        hostname: hostname inside-only
        raw-disk-node: mknod /dev/disk b {major} {minor} && dd if=/dev/disk of=/dev/null bs=512 count=1
    """)
    for name, (code, out) in results.items():
        assert code == 0, f"{name} failed: {out}"
    assert socket.gethostname() == host_name, "the pod's UTS namespace only"
    caps = status(nspod, "priv")
    assert int(caps["CapEff"], 16) == ALL_CAPS_HERE == int(caps["CapBnd"], 16)
    mounts = nspod("exec", "priv", "--", "cat", "/proc/self/mountinfo").stdout
    targets = [line.split()[4] for line in mounts.splitlines()]
    assert "/proc/sys" not in targets and "/proc/keys" not in targets
    assert [line for line in mounts.splitlines() if line.split()[4] == "/sys"][0].split()[5] \
        .startswith("rw")


def test_user_groups_fsgroup_and_capabilities_of_a_non_root_container(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    volume = "    - name: data\n      emptyDir: {}\n"
    mount = "      volumeMounts:\n        - name: data\n          mountPath: /data\n"
    nspod.run_yaml(pod_yaml(
        "ids", c("a", rootfs, "touch /data/mine; sleep 1000", extra=mount),
        volumes=volume, extra_spec=pod_security({
            "runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000],
            "fsGroup": 2000})))
    ids = nspod("exec", "ids", "--", "sh", "-c", "id -u; id -g; id -G").stdout.split("\n")
    assert ids[0] == "1000" and ids[1] == "3000"
    # The image's /etc/group lists app (uid 1000) in staff (50): added, as containerd does.
    assert set(ids[2].split()) == {"3000", "50", "4000", "2000"}
    caps = status(nspod, "ids")
    # A non-root user keeps no capability across execve (Kubernetes sets no ambient ones);
    # the bounding set is still the default one.
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0
    assert int(caps["CapBnd"], 16) == DEFAULT_CAPS
    data = os.path.join(nspod.root, "pods", "ids", "volumes", "data")
    st = os.stat(data)
    assert st.st_gid == 2000 and st.st_mode & 0o2000, "fsGroup owns the emptyDir, setgid"
    assert os.stat(os.path.join(data, "mine")).st_gid == 2000
    # The image's user names come from its own /etc/passwd: app is 1000, in group staff.
    nspod.run_yaml(pod_yaml("named", c("a", rootfs, extra="      securityContext: "
                                                           '{"runAsUser": 1000}\n')))
    assert nspod("exec", "named", "--", "id", "-G").stdout.split() == ["1000", "50"]


def test_capabilities_add_drop_and_no_new_privs(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    containers = (
        c("dropall", rootfs, security={"capabilities": {"drop": ["ALL"],
                                                         "add": ["NET_BIND_SERVICE"]}})
        + c("dropone", rootfs, security={"capabilities": {"drop": ["CAP_CHOWN"],
                                                           "add": ["sys_time"]}})
        + c("nnp", rootfs, security={"allowPrivilegeEscalation": False,
                                     "seccompProfile": {"type": "RuntimeDefault"}}))
    nspod.run_yaml(pod_yaml("caps", containers))
    drop_all = status(nspod, "caps", "dropall")
    assert int(drop_all["CapEff"], 16) == int(drop_all["CapBnd"], 16) == 1 << 10
    drop_one = status(nspod, "caps", "dropone")
    assert int(drop_one["CapEff"], 16) == (DEFAULT_CAPS & ~1) | 1 << 25
    chown = nspod("exec", "caps", "-c", "dropone", "--", "sh", "-c",
                  "touch /tmp/f && chown 1000 /tmp/f", check=False)
    assert chown.returncode != 0 and "Operation not permitted" in chown.stderr
    nnp = status(nspod, "caps", "nnp")
    assert nnp["NoNewPrivs"] == "1" and nnp["Seccomp"] == "2"
    assert status(nspod, "caps", "dropall")["NoNewPrivs"] == "0"


def test_read_only_root_filesystem(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    volume = "    - name: data\n      emptyDir: {medium: Memory}\n"
    mount = "      volumeMounts:\n        - name: data\n          mountPath: /data\n"
    nspod.run_yaml(pod_yaml("ro", c("a", rootfs, security={"readOnlyRootFilesystem": True},
                                    extra=mount + "      workingDir: /work\n")
                            + c("host", "", security={"readOnlyRootFilesystem": True}),
                            volumes=volume))
    for container in ("a", "host"):
        root = nspod("exec", "ro", "-c", container, "--", "sh", "-c", "touch /newfile",
                     check=False)
        assert root.returncode != 0 and "Read-only file system" in root.stderr, container
    writable = nspod("exec", "ro", "--", "sh", "-c",
                     "echo x > /data/f && echo y > /tmp/f && pwd").stdout
    assert writable == "/work\n"


def test_run_as_non_root(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("nr", c("root", rootfs, security={"runAsNonRoot": True})
                            + c("user", rootfs, "id -u", security={"runAsNonRoot": True,
                                                                   "runAsUser": 65534})))
    refused = wait_terminated(nspod, "nr", "root")
    assert refused["reason"] == "StartError" and refused["exitCode"] == 128
    assert "container has runAsNonRoot and image will run as root" in refused["message"]
    wait_terminated(nspod, "nr", "user")
    assert nspod("logs", "nr", "user").stdout == "65534\n"


def test_exec_runs_with_the_containers_identity(nspod, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    nspod.run_yaml(pod_yaml("ex", c("a", rootfs, security={
        "runAsUser": 1000, "runAsGroup": 1000, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})))
    assert nspod("exec", "ex", "--", "sh", "-c", "id -u; id -g").stdout.split() == ["1000", "1000"]
    caps = status(nspod, "ex")
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0
    assert caps["NoNewPrivs"] == "1" and caps["Seccomp"] == "2"
    denied = nspod("exec", "ex", "--", "touch", "/etc/passwd", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_host_root_containers_are_contained_too(nspod):
    """Masked paths, default capabilities, and no way back to the host's root by chroot."""
    escape = textwrap.dedent(f"""\
        import os
        before = os.stat("/")
        os.makedirs("/tmp/jail", exist_ok=True)
        fd = os.open("/", os.O_RDONLY)
        os.chroot("/tmp/jail")
        os.fchdir(fd)
        for _ in range(64):
            os.chdir("..")
        os.chroot(".")
        after = os.stat("/")
        print((before.st_dev, before.st_ino) == (after.st_dev, after.st_ino))
        print(after.st_dev)
        print(os.path.exists({json.dumps(os.path.join(nspod.root, "pods", "host", "pod.json"))}))
    """)
    nspod.run_yaml(pod_yaml("host", c("a", "")))
    out = nspod("exec", "host", "--", "/usr/bin/python3", "-c", escape).stdout.split()
    assert out[0] == "True", "chroot's classic escape ends at the container's own root"
    assert int(out[1]) != os.stat("/").st_dev, "the host's root file system is not reached"
    assert out[2] == "False", "nspod's state stays out of sight"
    caps = status(nspod, "host")
    assert int(caps["CapBnd"], 16) == DEFAULT_CAPS
    assert nspod("exec", "host", "--", "sh", "-c", "cat /proc/timer_list | wc -c").stdout.strip() \
        == "0"


def test_seccomp_localhost_is_refused(nspod):
    result = nspod("run", nspod.manifest(pod_yaml("lh", c("a", "", security={
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/x.json"}}))),
        check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: spec.containers[0].securityContext.seccompProfile.type: Localhost is not "
        "supported yet (use RuntimeDefault or Unconfined)")
    assert nspod.pods() == []
