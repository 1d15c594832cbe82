"""Kill points: SIGKILL the pod's monitor, the nspod CLI, or both, at named steps of `run`
and `rm`; then `nspod gc` and `nspod rm -f` must leave nothing (the `nspod` fixture's leak
check: processes, mounts, links, netns names, leases, cgroups in every hierarchy, state).

The steps are found by a hook, not by timing: with NSPOD_TEST_PAUSE_AT=<step> in its
environment the monitor stops itself (SIGSTOP) at that step (nsPod/monitor/supervisor.py's
_test_point), the test waits for it to be stopped, and kills whom it means to. A process
stopped before it is killed is killed exactly there, every time.
"""
import json
import os
import signal
import subprocess
import uuid

import pytest

from conftest import NSPOD
from helpers import container, pod_yaml, wait_for

# The steps of making a pod, in order (monitor/supervisor.py): its cgroup recorded (not made
# yet), made; volumes mounted; pause running; the network recorded, attached; the first
# container run.
RUN_STEPS = ["cgroup-recorded", "cgroup", "volumes", "sandbox", "container"]
NETWORK_STEPS = ["network-recorded", "network"]
# The steps of taking it down (monitor.teardown): before anything, after each undo step.
RM_STEPS = ["teardown", "teardown-unmount", "teardown-remove", "teardown-detach"]

VOLUME = "    - name: scratch\n      emptyDir: {medium: Memory}\n"
MOUNT = "        - {name: scratch, mountPath: /scratch}\n"
LIMITS = "      resources:\n        limits: {memory: 64Mi, cpu: 200m}\n"


def manifest(nspod, bridged):
    # A name of its own: netns names are host-wide, and other tests run beside this one.
    nspod.name = f"kp-{uuid.uuid4().hex[:8]}"
    extra = "" if bridged else "  hostNetwork: true\n"
    text = pod_yaml(nspod.name, container("c", "sleep 1000", mounts=MOUNT, extra=LIMITS),
                    volumes=VOLUME, extra_spec=extra)
    return nspod.manifest(text)


def start(nspod, args, stop_at):
    """`nspod ARGS` in the background, its monitor(s) told to stop at `stop_at`."""
    key, value = nspod.marker.split("=")
    env = dict(os.environ, **{key: value}, NSPOD_TEST_PAUSE_AT=stop_at)
    env.pop("NSPOD_TRACE", None)
    nspod.pod_names.add(nspod.name)
    return subprocess.Popen(NSPOD + nspod.global_args() + args, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def monitor_pid(nspod):
    try:
        with open(os.path.join(nspod.root, "pods", nspod.name, "state.json")) as f:
            return json.load(f)["monitor"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def stopped(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except FileNotFoundError:
        return False


def wait_stopped(nspod, cli, step):
    def check():
        assert cli.poll() is None, f"nspod ended before step {step}: {cli.communicate()}"
        pid = monitor_pid(nspod)
        return pid if pid and stopped(pid) else None
    return wait_for(check, timeout=30, interval=0.02, what=f"the monitor to stop at {step}")


def wait_exit(pid):
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=30,
             what=f"process {pid} to end")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def kill(who, cli, monitor):
    """SIGKILL `who`; a monitor left alive is let go on (it undoes the pod and exits)."""
    if who in ("cli", "both"):
        cli.kill()
        cli.wait(timeout=30)
    if who in ("monitor", "both"):
        os.kill(monitor, signal.SIGKILL)
    else:
        os.kill(monitor, signal.SIGCONT)
    wait_exit(monitor)
    if who == "monitor":
        cli.out, cli.err = cli.communicate(timeout=60)


def gc_and_rm(nspod):
    nspod("gc")
    nspod("rm", "-f", nspod.name)
    assert nspod.pods() == []


@pytest.mark.parametrize("who", ["monitor", "cli", "both"])
@pytest.mark.parametrize("step", RUN_STEPS)
def test_killed_while_making_the_pod_leaves_nothing_after_gc(nspod, step, who):
    cli = start(nspod, ["run", manifest(nspod, bridged=False)], step)
    monitor = wait_stopped(nspod, cli, step)
    kill(who, cli, monitor)
    if who == "monitor":
        # The waiting `run` saw its monitor die: it says so and undoes the pod itself.
        assert cli.returncode == 1
        assert "the monitor died while making the pod" in cli.err
    gc_and_rm(nspod)


@pytest.mark.parametrize("who", ["monitor", "both"])
@pytest.mark.parametrize("step", NETWORK_STEPS)
def test_killed_while_attaching_the_network_leaves_nothing_after_gc(nspod, step, who):
    cli = start(nspod, ["run", manifest(nspod, bridged=True)], step)
    monitor = wait_stopped(nspod, cli, step)
    kill(who, cli, monitor)
    gc_and_rm(nspod)


@pytest.mark.parametrize("who", ["monitor", "cli", "both"])
@pytest.mark.parametrize("step", RM_STEPS)
def test_killed_while_removing_the_pod_leaves_nothing_after_gc(nspod, step, who):
    # The monitor takes NSPOD_TEST_PAUSE_AT from `run`'s environment: it stops in teardown.
    cli = start(nspod, ["run", manifest(nspod, bridged=False)], step)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    rm = start(nspod, ["rm", "-f", "--timeout", "0", nspod.name], step)
    monitor = wait_stopped(nspod, rm, step)
    kill(who, rm, monitor)
    gc_and_rm(nspod)


# `run` takes the pod's lease (the IP its plan names) before it starts the monitor, which
# records the pod's network only when it attaches it: at these steps the lease is the pod's
# and no network record in its state says so.
UNRECORDED_LEASE_STEPS = ["cgroup", "sandbox"]


def leases(nspod):
    try:
        with open(os.path.join(nspod.root, "network", "leases.json")) as f:
            return json.load(f).get("leases") or {}
    except FileNotFoundError:
        return {}


@pytest.mark.parametrize("step", UNRECORDED_LEASE_STEPS)
def test_cli_killed_before_the_network_is_recorded_then_gc_and_rm_release_its_lease(
        nspod, step):
    """`nspod run` killed while its monitor makes the pod; `gc` while the monitor is still
    alive (it leaves a live monitor's pod alone), `rm -f` once the monitor has undone the pod
    and exited: the lease `run` took goes too (the leak check reads the leases)."""
    cli = start(nspod, ["run", manifest(nspod, bridged=True)], step)
    monitor = wait_stopped(nspod, cli, step)
    assert nspod.name in leases(nspod)
    cli.kill()
    cli.wait(timeout=30)
    nspod("gc")
    assert nspod.name in leases(nspod)     # its monitor is alive: not gc's to release
    os.kill(monitor, signal.SIGCONT)
    wait_exit(monitor)
    nspod("rm", "-f", nspod.name)
    assert nspod.pods() == [] and nspod.name not in leases(nspod)


def test_rm_of_a_half_made_pod_releases_the_lease_its_run_took(nspod):
    """A `run` that died after taking its lease and before writing the pod's state (planted:
    the pod's directory and its lease, nothing else): `rm -f` alone releases the lease."""
    from nsPod.net import ipam
    nspod.name = f"kp-{uuid.uuid4().hex[:8]}"
    nspod.pod_names.add(nspod.name)
    os.makedirs(os.path.join(nspod.root, "pods", nspod.name), mode=0o700)
    ip = ipam.Leases(nspod.root, nspod.subnet).allocate(nspod.name)
    assert leases(nspod)[nspod.name]["ip"] == ip
    nspod("rm", "-f", nspod.name)
    assert nspod.pods() == [] and leases(nspod) == {}


def v2():
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _cgroup_dir(nspod, recorded):
    """Where a recorded cgroup path lies in the hierarchy holding memory (v1) or in v2."""
    return os.path.join("/sys/fs/cgroup" if v2() else "/sys/fs/cgroup/memory", recorded)


def test_a_cgroup_made_under_the_pods_name_is_refused_not_adopted(nspod):
    """Someone else makes the pod's cgroup between nspod recording its name and making it:
    nspod refuses it (no limit written into it, its process not killed, the directory not
    removed, neither by `run` nor later by `gc` and `rm -f`)."""
    cli = start(nspod, ["run", manifest(nspod, bridged=False)], "cgroup-recorded")
    monitor = wait_stopped(nspod, cli, "cgroup-recorded")
    with open(os.path.join(nspod.root, "pods", nspod.name, "state.json")) as f:
        theirs = _cgroup_dir(nspod, json.load(f)["cgroup"])
    os.makedirs(theirs)
    squatter = subprocess.Popen(["sleep", "1000"])
    try:
        with open(os.path.join(theirs, "cgroup.procs"), "w") as f:
            f.write(str(squatter.pid))
        limit_file = "memory.max" if v2() else "memory.limit_in_bytes"
        with open(os.path.join(theirs, limit_file)) as f:
            limit = f.read()
        os.kill(monitor, signal.SIGCONT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 1
        assert f"cgroup {theirs} already exists" in err and "never adopts" in err
        nspod("gc")
        nspod("rm", "-f", nspod.name)
        assert squatter.poll() is None
        with open(os.path.join(theirs, "cgroup.procs")) as f:
            assert f.read().split() == [str(squatter.pid)]
        with open(os.path.join(theirs, limit_file)) as f:
            assert f.read() == limit
    finally:
        squatter.kill()
        squatter.wait()
        # ours to remove: the test made them (the pod's directory and the parent level)
        for d in (theirs, os.path.dirname(theirs)):
            wait_for(lambda: _rmdir(d), timeout=10, what=f"rmdir {d}")


def _rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
