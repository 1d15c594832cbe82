"""The cgroup driver on the running kernel: limits hold, OOM kills are counted per
container, teardown leaves nothing.

Everything nests under this process's own cgroup (its memory cgroup on v1, its `0::`
cgroup on v2), in a parent named nspod-test-<random> that the test makes and removes.
On this repository's hosts that is v1 (hybrid); tests/vm/run.sh runs it under cgroup v2.
"""
import os
import secrets
import signal
import subprocess
import sys

import pytest

from nsPod.kernel.cgroups import CgroupExists, Limits, detect, open_driver
from nsPod.errors import CgroupError

if os.geteuid() != 0:
    pytest.skip("cgroup integration tests need root (they create cgroups)",
                allow_module_level=True)

Mi = 1 << 20
# Waits for a line on stdin (so it can be put in its cgroup first), then writes 200 MiB.
HOG = "import sys; sys.stdin.readline(); data = b'x' * (200 << 20); print('survived')"
CALM = "import sys; sys.stdin.readline()"


def own_cgroup():
    """This process's cgroup in the hierarchy that holds the memory controller."""
    wanted = "memory" if detect() == "v1" else ""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if wanted in controllers.split(","):
                return path
    raise AssertionError(f"no {wanted or 'cgroup2'} line in /proc/self/cgroup")


def existing_levels(drv):
    parts = drv.parent.split("/")
    return {os.path.join(base, *parts[:i])
            for base in set(drv.hierarchies.values()) for i in range(1, len(parts) + 1)
            if os.path.isdir(os.path.join(base, *parts[:i]))}


def spawn(code):
    return subprocess.Popen([sys.executable, "-P", "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def go(proc):
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.fixture
def driver():
    parent = f"{own_cgroup()}/nspod-test-{secrets.token_hex(4)}"
    drv = open_driver(parent)
    before = existing_levels(drv)
    procs = []
    yield drv, procs
    for proc in procs:  # whatever the test left running, then the cgroups
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    # as `nspod rm` would: another driver, told what the creator made
    remover = open_driver(parent, made=sorted(drv.made))
    remover.kill("pod")
    remover.remove("pod")
    remover.remove_parent_if_empty()
    assert existing_levels(drv) == before, "cgroups left behind"
    assert remover.made == set()


def test_container_limit_oom_kills_the_hog_only(driver):
    drv, procs = driver
    drv.create("pod", Limits())
    drv.create("pod/hog", Limits(memory=50 * Mi, oom_group=True))
    drv.create("pod/calm", Limits(memory=50 * Mi, oom_group=True))
    hog, calm = spawn(HOG), spawn(CALM)
    procs += [hog, calm]
    drv.attach("pod/hog", hog.pid)
    drv.attach("pod/calm", calm.pid)
    assert drv.procs("pod") == sorted([hog.pid, calm.pid])

    go(hog)
    out, _ = hog.communicate(timeout=120)
    assert out == "" and hog.returncode == -signal.SIGKILL, \
        f"the 50 MiB limit did not hold: exit {hog.returncode}, output {out!r}"
    assert drv.oom_kills("pod/hog") == 1
    assert drv.oom_kills("pod/calm") == 0
    assert drv.oom_kills("pod") == 1
    assert calm.poll() is None
    stats = drv.stats("pod/hog")["memory"]
    assert stats["limit"] == 50 * Mi and stats["oomKills"] == 1

    drv.kill("pod")
    assert calm.wait(10) == -signal.SIGKILL
    assert drv.procs("pod") == []


def test_pod_limit_kills_only_the_process_the_kernel_picked(driver):
    drv, procs = driver
    drv.create("pod", Limits(memory=100 * Mi))  # no oom_group at pod level
    drv.create("pod/hog", Limits())
    drv.create("pod/calm", Limits())
    hog, calm = spawn(HOG), spawn(CALM)
    procs += [hog, calm]
    drv.attach("pod/hog", hog.pid)
    drv.attach("pod/calm", calm.pid)

    go(hog)
    hog.communicate(timeout=120)
    assert hog.returncode == -signal.SIGKILL, "the 100 MiB pod limit did not hold"
    assert calm.poll() is None, "the pod-level OOM killed a bystander"
    assert drv.oom_kills("pod/hog") == 1
    assert drv.oom_kills("pod/calm") == 0


def _read(path):
    with open(path) as f:
        return f.read().strip()


def test_an_existing_cgroup_is_refused_not_adopted(driver):
    """A cgroup of the pod's name that nspod did not make: no limit rewritten, its process
    not killed, the directory not removed."""
    drv, procs = driver
    drv.create("pod", Limits(memory=50 * Mi))  # stands for someone else's
    calm = spawn(CALM)
    procs.append(calm)
    drv.attach("pod", calm.pid)
    limit_file = "memory.max" if drv.version == "v2" else "memory.limit_in_bytes"
    other = open_driver(drv.parent)
    with pytest.raises(CgroupExists, match="already exists"):
        other.create("pod", Limits(memory=100 * Mi), exclusive=True)
    assert _read(os.path.join(drv.path("pod"), limit_file)) == str(50 * Mi)
    assert drv.procs("pod") == [calm.pid] and calm.poll() is None


def test_a_refused_cpu_quota_leaves_no_parent_level(driver, tmp_path):
    """The kernel refuses a CFS quota over its maximum after the parent level was made:
    the level is in the record all the same, and removing the pod removes it."""
    from nsPod.kernel.cgroups import parents
    drv, _ = driver
    before = existing_levels(drv)
    root = str(tmp_path / "state")
    with pytest.raises(CgroupError, match="Invalid argument"):
        parents.create(root, drv.parent, "pod", Limits(cpu_millis=2 * 10 ** 11), exclusive=True)
    assert existing_levels(drv) > before  # made, and recorded:
    parents.remove(root, drv.parent, "pod")
    assert existing_levels(drv) == before


def test_limits_saved_and_put_back(driver):
    drv, _ = driver
    drv.create("pod", Limits())
    drv.create("pod/c", Limits(memory=64 * Mi, cpu_millis=100, cpu_request_millis=100, pids=10))
    drv.create("pod/free", Limits())
    for rel in ("pod/c", "pod/free"):
        saved = drv.save_limits(rel)
        assert saved, "no limit file found"
        drv.set_limits(rel, Limits(memory=128 * Mi, cpu_millis=300, cpu_request_millis=300,
                                   pids=20))
        assert {p: _read(p) for p in saved} != saved
        drv.restore_limits(rel, saved)
        assert {p: _read(p) for p in saved} == saved
