"""Many nspod commands at once in one state root, a long create/rm soak, and the CLI killed
at points of `run` and `rm`: each ends with nothing left behind (the `nspod` fixture's leak
check), and the counts of processes, mounts, links, fds and leases stay flat."""
import concurrent.futures
import json
import os
import signal
import subprocess
import time

from conftest import NSPOD
from helpers import container, pod_yaml, wait_for
from leaks import Snapshot, links, mounts, processes
from nsPod.net import client as netclient
from nsPod.warm import client as warmclient

# netd stays up across a test's cycles, so that its fds can be compared before and after.
NETD_ENV = {"NSPOD_NETD_IDLE": "600", "NSPOD_WARM_IDLE": "600"}
# Sized to about a minute here; NSPOD_SOAK_CYCLES=300 for a long one.
SOAK_CYCLES = int(os.environ.get("NSPOD_SOAK_CYCLES", "30"))


def manifest(nspod, name, network="bridge"):
    text = pod_yaml(name, container("a"))
    if network == "none":
        text = text.replace(f"  name: {name}\n",
                            f"  name: {name}\n  annotations:\n    nspod.io/network: none\n", 1)
    nspod.pod_names.add(name)
    return nspod.manifest(text, name=f"{name}-{network}.yaml")


def leases(nspod):
    try:
        with open(os.path.join(nspod.root, "network", "leases.json")) as f:
            return json.load(f).get("leases") or {}
    except FileNotFoundError:
        return {}


def run_all(nspod, argvs):
    with concurrent.futures.ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(lambda argv: nspod(*argv, check=False, env=NETD_ENV), argvs))


def test_twenty_concurrent_runs_get_distinct_ips_and_concurrent_rm_frees_them(nspod):
    names = [f"c{i}" for i in range(20)]
    files = [manifest(nspod, n) for n in names]
    results = run_all(nspod, [("run", f) for f in files])
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    ips = {n: nspod.inspect(n)["status"]["podIP"] for n in names}
    assert len(set(ips.values())) == 20
    assert {p: lease["ip"] for p, lease in leases(nspod).items()} == ips
    veths = {nspod.inspect(n)["runtime"]["network"]["hostVeth"] for n in names}
    assert veths <= links() and len(veths) == 20
    results = run_all(nspod, [("rm", "-f", "--timeout", "0", n) for n in names])
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert nspod.pods() == [] and leases(nspod) == {}
    assert not veths & links()
    assert not {netclient.netns_name(nspod.root, n) for n in names} & set(os.listdir("/run/netns"))


def test_ten_concurrent_runs_of_one_name_make_exactly_one_pod(nspod):
    """One wins; the others fail with "already exists" and exit 1 (a run-time failure, as
    docs/interface.md's exit codes say), and take nothing of the winner's with them."""
    files = [manifest(nspod, "same") for _ in range(1)] * 10
    results = run_all(nspod, [("run", f) for f in files])
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1 and winners[0].stdout.split() == ["same"]
    for r in losers:
        assert r.returncode == 1 and r.stderr.strip() == "error: pod 'same' already exists", \
            r.stderr
    assert nspod.pods() == ["same"]
    obj = nspod.inspect("same")
    assert obj["status"]["phase"] == "Running" and list(leases(nspod)) == ["same"]
    # the winner's pod is whole: its container answers
    assert nspod("exec", "same", "--", "echo", "ok").stdout == "ok\n"
    nspod("rm", "-f", "--timeout", "0", "same")


def counts(nspod):
    """What a create/rm cycle must not accumulate. Other tests may run on this host at the
    same time, so links, mounts and netns entries are counted only where they are ours."""
    netd = netclient.running(nspod.root)
    assert netd and netd > 0, "netd is not running"
    # podd (when the warm path is on) is counted apart: it must be the same, its fds flat.
    podd = warmclient.running(nspod.root)
    ours = [pid for (pid, _), cmd in processes().items() if nspod.root in cmd and pid != podd]
    our_links = {nspod.bridge} | {netclient.host_veth_name(nspod.root, p, nspod.bridge)
                                  for p in nspod.pod_names}
    our_netns = {netclient.netns_name(nspod.root, p) for p in nspod.pod_names}
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    return {
        "netd": netd,
        "processes": len(ours),
        "mounts": len([m for m in mounts() if m.startswith(nspod.workdir)
                       or m.removeprefix("/run/netns/") in our_netns]),
        "links": len(links() & our_links),
        "test fds": len(os.listdir("/proc/self/fd")),
        "netd fds": len(os.listdir(f"/proc/{netd}/fd")),
        "podd": podd,
        "podd fds": len(os.listdir(f"/proc/{podd}/fd")) if podd else 0,
        "leases": len(leases(nspod)),
        "netns": len(netns & our_netns),
        "state dirs": len(nspod.pods()),
    }


def test_create_rm_soak_keeps_counts_flat(nspod):
    """SOAK_CYCLES create/rm cycles, network none and bridge alternating."""
    warm = manifest(nspod, "warm")
    nspod("run", warm, env=NETD_ENV)          # starts netd and makes the bridge
    files = {net: manifest(nspod, f"soak-{net}", net) for net in ("none", "bridge")}
    nspod("run", files["bridge"], env=NETD_ENV)
    nspod("rm", "-f", "--timeout", "0", "soak-bridge", env=NETD_ENV)
    if warmclient.enabled():     # podd, started by the second command, listens
        wait_for(lambda: os.path.exists(warmclient.socket_path(nspod.root)), timeout=30,
                 what="podd to listen")
    before = counts(nspod)
    for i in range(SOAK_CYCLES):
        net = ("none", "bridge")[i % 2]
        nspod("run", files[net], env=NETD_ENV)
        nspod("rm", "-f", "--timeout", "0", f"soak-{net}", env=NETD_ENV)
    after = counts(nspod)
    assert after == before
    assert before["links"] == 2 and before["processes"] == 2   # bridge, warm's veth; netd, its monitor
    nspod("rm", "-f", "--timeout", "0", "warm")


def spawn(nspod, *args):
    key, value = nspod.marker.split("=")
    return subprocess.Popen(NSPOD + nspod.global_args() + list(args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, **{key: value}, **NETD_ENV))


def kill_after(proc, delay, nspod=None, pod=None):
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if nspod is not None:
        # Through podd the command runs in a process of its own (podd's child), which dies
        # of the client's death a moment after it: wait for that, as the killed CLI was
        # gone once waited for; and for a `run`, until a monitor it was making has undone
        # the pod (of that death) and let go of monitor.lock.
        wait_for(lambda: not _podd_children(nspod), timeout=30,
                 what="the killed command's process to end")
        if pod is not None:
            wait_for(lambda: not _lock_held(nspod, pod) or _phase(nspod, pod) == "Running",
                     timeout=30, what=f"the half-made pod {pod} to be let go, or to run")


def _phase(nspod, pod):
    try:
        with open(os.path.join(nspod.root, "pods", pod, "state.json")) as f:
            return json.load(f).get("phase")
    except (OSError, ValueError):
        return None


def _podd_children(nspod):
    podd = warmclient.running(nspod.root)
    if not podd:
        return []
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == podd and fields[0] not in ("Z", "X"):
            children.append(int(entry))
    return children


def _lock_held(nspod, pod):
    import fcntl
    try:
        fd = os.open(os.path.join(nspod.root, "pods", pod, "monitor.lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def assert_clean(nspod, snapshot):
    netclient.stop(nspod.root)
    warmclient.stop_all(nspod.root)
    leaks = snapshot.leaks()
    assert not leaks, "left behind:\n" + "\n".join(leaks)


# From before the CLI has started Python (~0.1 s) to the end of a run (~0.5-1.5 s here).
DELAYS = (0.01, 0.03, 0.06, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.1)


def test_cli_killed_during_run_then_gc_and_rm_leave_nothing(nspod):
    """SIGKILL of `nspod run` at several points, then `nspod gc` and `nspod rm -f`."""
    for i, delay in enumerate(DELAYS):
        snapshot = Snapshot(nspod.root, nspod.marker, nspod.cgroup_parent, nspod.pod_names,
                            nspod.bridge)
        net = ("bridge", "none")[i % 2]
        path = manifest(nspod, f"k{i}", net)
        kill_after(spawn(nspod, "run", path), delay, nspod, f"k{i}")
        nspod("gc", env=NETD_ENV)
        nspod("rm", "-f", "--timeout", "0", f"k{i}", env=NETD_ENV)
        assert_clean(nspod, snapshot)


def test_cli_killed_during_rm_then_gc_and_rm_leave_nothing(nspod):
    """SIGKILL of `nspod rm -f` at several points, then `nspod gc` and `nspod rm -f`."""
    for i, delay in enumerate(DELAYS):
        snapshot = Snapshot(nspod.root, nspod.marker, nspod.cgroup_parent, nspod.pod_names,
                            nspod.bridge)
        net = ("bridge", "none")[i % 2]
        nspod("run", manifest(nspod, f"r{i}", net), env=NETD_ENV)
        wait_for(lambda: nspod.inspect(f"r{i}")["status"]["phase"] == "Running",
                 what=f"pod r{i} to run")
        kill_after(spawn(nspod, "rm", "-f", "--timeout", "0", f"r{i}"), delay, nspod)
        nspod("gc", env=NETD_ENV)
        nspod("rm", "-f", "--timeout", "0", f"r{i}", env=NETD_ENV)
        assert_clean(nspod, snapshot)
