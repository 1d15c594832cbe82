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
import sys
import time

from busybox import make_rootfs
from helpers import container, container_status, pod_yaml, wait_for, wait_terminated

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
    (the host's /usr/bin is there; the subPath directory is empty)."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    volumes = ("    - name: shared\n      emptyDir: {}\n"
               f"    - name: ev\n      hostPath:\n        path: {evidence}\n")
    flipper = container("flipper", f"exec /usr/bin/python3 -S -c '{FLIPPER}'",
                        "        - name: shared\n          mountPath: /shared\n")
    victim = container(
        "victim",
        "if [ -e /mnt/usr/bin ]; then echo escaped >> /ev/log; else echo ok >> /ev/log; fi",
        "        - name: shared\n          mountPath: /mnt\n          subPath: d\n"
        "        - name: ev\n          mountPath: /ev\n")
    nspod.run_yaml(always(pod_yaml("vol-race", flipper + victim, volumes=volumes)), "--restart-backoff", "0s:0s")

    def restarts():
        return container_status(nspod.inspect("vol-race"), "victim")["restartCount"]

    deadline = time.monotonic() + 20
    while restarts() < 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert restarts() >= 5, "the victim hardly restarted: the race was not run"
    nspod("rm", "-f", "--timeout", "0", "vol-race")
    runs = (evidence / "log").read_text().split() if (evidence / "log").exists() else []
    assert "escaped" not in runs, f"the victim got the host's root at /mnt in {runs.count('escaped')} of {len(runs)} runs"
    # It did start, sometimes: when the swap put the directory at d.
    assert "ok" in runs
