"""Volume mounts cannot be pointed outside their volume: subPath symlinks, the symlink-swap
race of CVE-2017-1002101 / CVE-2021-25741, and symlinks planted at mount targets.

The kubelet (pkg/volume/util/subpath/subpath_linux.go) resolves a subPath inside its volume
with an O_NOFOLLOW walk of file descriptors, refuses one that leaves the volume ("subpath ...
not within volume path"), and bind-mounts /proc/<pid>/fd/N of what it opened, so a path
swapped after the check cannot redirect the mount. nspod does the same (openat2
RESOLVE_BENEATH, or an O_NOFOLLOW walk), and resolves each mount target inside the
container's root as runc does (RESOLVE_IN_ROOT, then /proc/self/fd/M as the target).
"""
import os
import time

from busybox import make_rootfs
from helpers import container, container_status, pod_yaml, wait_terminated

# Runs in a host-root container, with the host's python3: swap shared/d (a directory) and
# shared/s (a symlink to /) atomically, as fast as possible, for ever.
FLIPPER = r"""
import ctypes, os
os.makedirs("/shared/d", exist_ok=True)
try:
    os.symlink("/", "/shared/s")
except FileExistsError:
    pass
renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
AT_FDCWD, RENAME_EXCHANGE = -100, 2
while True:
    renameat2(AT_FDCWD, b"/shared/d", AT_FDCWD, b"/shared/s", RENAME_EXCHANGE)
"""


def always(text):
    return text.replace("restartPolicy: Never", "restartPolicy: Always")


def test_subpath_swapped_for_a_symlink_to_root_never_mounts_the_hosts_root(nspod, tmp_path):
    """The race of CVE-2017-1002101: a sibling swaps the subPath directory with a symlink to
    `/` (renameat2 RENAME_EXCHANGE in a loop) while the victim restarts again and again. The
    kubelet's answer, followed here: resolve by fd, refuse a subPath that leaves the volume,
    mount /proc/self/fd/N. The victim records at each start whether /mnt is the host's root
    (the host's /usr/bin is there; the subPath directory is empty).

    A second victim has its workingDir in the same directory, a third the mount point of
    another volume: runc makes both inside the container's root (securejoin); made by path,
    the swap made root create them at the host's `/`."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    made_on_host = f"/nspod-escape-{os.getpid()}-{time.monotonic_ns()}"
    target_on_host = made_on_host + "-target"
    volumes = ("    - name: shared\n      emptyDir: {}\n    - name: other\n      emptyDir: {}\n"
               f"    - name: ev\n      hostPath:\n        path: {evidence}\n")
    flipper = container("flipper", f"exec /usr/bin/python3 -S -c '{FLIPPER}'",
                        "        - name: shared\n          mountPath: /shared\n")
    victim = container(
        "victim",
        "if [ -e /mnt/usr/bin ]; then echo escaped >> /ev/log; else echo ok >> /ev/log; fi",
        "        - name: shared\n          mountPath: /mnt\n          subPath: d\n"
        "        - name: ev\n          mountPath: /ev\n")
    workdir = container("workdir", "true", "        - name: shared\n          mountPath: /s\n",
                        f"      workingDir: /s/d{made_on_host}\n")
    target = container("target", "true", "        - name: shared\n          mountPath: /s\n"
                       f"        - name: other\n          mountPath: /s/d{target_on_host}\n")
    try:
        nspod.run_yaml(always(pod_yaml("vol-race", flipper + victim + workdir + target,
                                      volumes=volumes)),
                       "--restart-backoff", "0s:0s")

        def restarts():
            return container_status(nspod.inspect("vol-race"), "victim")["restartCount"]

        # Before the fix, 1 to 11 runs in 40 got the host's root here: 100 runs (or 30 s, on
        # a busy machine) lose the race for sure.
        deadline = time.monotonic() + 30
        while restarts() < 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert restarts() >= 20, "the victim hardly restarted: the race was not run"
        nspod("rm", "-f", "--timeout", "0", "vol-race")
        runs = (evidence / "log").read_text().split() if (evidence / "log").exists() else []
        assert "escaped" not in runs, \
            f"the victim got the host's root at /mnt in {runs.count('escaped')} of {len(runs)} runs"
        # It did start, sometimes: when the swap put the directory at d.
        assert "ok" in runs
        assert not os.path.exists(made_on_host), f"a workingDir was made on the host: {made_on_host}"
        assert not os.path.exists(target_on_host), \
            f"a mount point was made on the host: {target_on_host}"
    finally:
        for path in (made_on_host, target_on_host):
            if os.path.isdir(path):
                os.rmdir(path)


def with_init(text, init):
    return text.replace("  containers:\n", f"  initContainers:\n{init}  containers:\n")


def start_error(nspod, pod, name):
    state = wait_terminated(nspod, pod, name)
    assert state["reason"] == "StartError" and state["exitCode"] == 128, state
    return state["message"]


def test_subpath_symlink_leading_out_of_the_volume_is_refused(nspod, tmp_path):
    """The kubelet refuses a subPath whose symlinks resolve outside the volume ("subpath ...
    not within volume path"): the container does not start, and says which subPath of which
    volume. Links made on the host (hostPath) and by a container (emptyDir) alike."""
    host_dir = tmp_path / "vol"
    host_dir.mkdir()
    (host_dir / "evil").symlink_to("/etc")
    (host_dir / "up").symlink_to("../..")
    volumes = (f"    - name: h\n      hostPath:\n        path: {host_dir}\n"
               "    - name: e\n      emptyDir: {}\n")
    init = container("maker", "ln -s / /e/escape && ln -s ../../.. /e/dots",
                     "        - name: e\n          mountPath: /e\n")
    containers = "".join(
        container(name, "echo started; sleep 1000",
                  f"        - name: {vol}\n          mountPath: /m\n          subPath: {sub}\n")
        for name, vol, sub in (("a", "h", "evil"), ("b", "h", "up/x"), ("c", "e", "escape"),
                               ("d", "e", "dots")))
    nspod.run_yaml(with_init(pod_yaml("ve-out", containers, volumes=volumes), init))
    assert start_error(nspod, "ve-out", "a") == \
        "mount volume h at /m: subPath 'evil': 'evil' is a symlink to '/etc', outside volume h"
    assert start_error(nspod, "ve-out", "b") == (
        "mount volume h at /m: subPath 'up/x': 'up' is a symlink to '../..', which leads "
        "outside volume h")
    assert start_error(nspod, "ve-out", "c") == \
        "mount volume e at /m: subPath 'escape': 'escape' is a symlink to '/', outside volume e"
    assert "subPath 'dots': 'dots' is a symlink to '../../..'" in start_error(nspod, "ve-out", "d")
    # Nothing was made for them, in the volume or where 'up/x' leads (tmp_path's parent).
    assert sorted(os.listdir(host_dir)) == ["evil", "up"]
    assert not (tmp_path.parent / "x").exists()


def test_subpath_symlink_inside_the_volume_is_followed(nspod, tmp_path):
    """A subPath through symlinks that stay in the volume works, as in the kubelet (which
    compares the link's resolution with the volume's path): relative links, an absolute
    link naming the volume's own host path, and links a container made in an emptyDir."""
    host_dir = tmp_path / "vol"
    (host_dir / "real" / "sub").mkdir(parents=True)
    (host_dir / "real" / "sub" / "f").write_text("host file\n")
    (host_dir / "rel").symlink_to("real/sub")
    (host_dir / "abs").symlink_to(host_dir / "real")
    volumes = (f"    - name: h\n      hostPath:\n        path: {host_dir}\n"
               "    - name: e\n      emptyDir: {}\n")
    init = container("maker", "mkdir -p /e/data/x && echo made > /e/data/x/f && "
                              "ln -s data/x /e/inside && ln -s ../inside /e/data/back",
                     "        - name: e\n          mountPath: /e\n")
    mounts = ("        - name: h\n          mountPath: /rel\n          subPath: rel\n"
              "        - name: h\n          mountPath: /abs\n          subPath: abs/sub\n"
              "        - name: e\n          mountPath: /inside\n          subPath: inside\n"
              "          readOnly: true\n"
              "        - name: e\n          mountPath: /back\n          subPath: data/back\n"
              "        - name: e\n          mountPath: /one/file\n          subPath: inside/f\n"
              "        - name: e\n          mountPath: /new\n          subPath: not/yet\n")
    app = container("a", "cat /rel/f /abs/f /inside/f /back/f /one/file; echo new > /new/g; "
                         "(echo x > /inside/g) 2>/dev/null && echo WROTE || echo read-only", mounts)
    nspod.run_yaml(with_init(pod_yaml("ve-in", app, volumes=volumes), init))
    state = wait_terminated(nspod, "ve-in", "a")
    assert state["exitCode"] == 0, state
    assert nspod("logs", "ve-in", "a").stdout == \
        "host file\nhost file\nmade\nmade\nmade\nread-only\n"
    assert sorted(os.listdir(host_dir)) == ["abs", "real", "rel"]


def test_a_symlink_at_a_mount_target_in_the_image_stays_in_the_image(nspod, tmp_path):
    """runc resolves a mount's destination inside the container's root (securejoin): an
    image's /data -> /etc or /deep -> ../../../../etc puts the volume on the image's /etc,
    never on a host path, and the volume is what the container sees there. (The path-based
    resolution before the fd one did this too: this guards it.)"""
    rootfs = make_rootfs(str(tmp_path / "img"))
    os.symlink("/etc", os.path.join(rootfs, "data"))
    os.symlink("../../../../../../etc", os.path.join(rootfs, "deep"))
    name = f"nspod-volume-escape-{os.getpid()}"
    volumes = "    - name: e\n      emptyDir: {}\n    - name: f\n      emptyDir: {}\n"
    mounts = ("        - name: e\n          mountPath: /data/vol\n"
              "        - name: f\n          mountPath: /deep/other\n"
              "        - name: e\n          mountPath: /check\n")
    command = (f"echo one > /data/vol/{name} && echo two > /deep/other/{name} && "
               f"cat /etc/vol/{name} /etc/other/{name} /check/{name}")
    app = f"    - name: a\n      image: {rootfs}\n      command: [\"sh\", \"-c\", \"{command}\"]\n"
    app += f"      volumeMounts:\n{mounts}"
    nspod.run_yaml(pod_yaml("ve-img", app, volumes=volumes))
    state = wait_terminated(nspod, "ve-img", "a")
    assert state["exitCode"] == 0, state
    assert nspod("logs", "ve-img", "a").stdout == "one\ntwo\none\n"
    for host_path in ("/etc/vol", "/etc/other", f"/etc/{name}"):
        assert not os.path.exists(host_path), f"the mount reached the host's {host_path}"
    assert sorted(os.listdir(os.path.join(rootfs, "etc"))) == ["group", "passwd"]
