"""The pod network never adopts what nspod did not make, and works inside any network namespace.

Foreign objects here (a bridge, a veth, an `ip netns add` name) are made by the test itself,
with names no one else uses, checked to survive every nspod command, and removed by the test
at the end. Traffic only between namespaces the tests made.
"""
import json
import os
import subprocess
import uuid

import pytest

from conftest import NSPOD, Nspod, nspod_world
from helpers import container, pod_yaml, wait_for
from nsPod.net import client as netclient


def link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


def ifalias(name):
    with open(f"/sys/class/net/{name}/ifalias") as f:
        return f.read().strip()


@pytest.fixture
def foreign_bridge():
    """A bridge the test makes, as Docker or a user would: no nspod marker."""
    name = f"nspf{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def failed_run(nspod, name="p"):
    result = nspod("run", nspod.manifest(pod_yaml(name, container("a"))), check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_foreign_bridge_named_by_bridge_is_refused_and_kept(nspod, foreign_bridge):
    """Never adopted, never deleted: not by run, rm or gc (with --bridge naming it)."""
    index = open(f"/sys/class/net/{foreign_bridge}/ifindex").read()
    nspod.bridge = foreign_bridge
    line = failed_run(nspod)
    assert f"bridge {foreign_bridge} exists and was not made by nspod for root {nspod.root}: " \
           f"choose another --bridge" in line
    assert nspod.pods() == []
    nspod("rm", "-f", "p", check=False)
    assert "bridge" not in nspod("gc").stdout
    # the same link, untouched: no address, no marker, no port
    assert open(f"/sys/class/net/{foreign_bridge}/ifindex").read() == index
    assert ifalias(foreign_bridge) == ""
    assert os.listdir(f"/sys/class/net/{foreign_bridge}/brif") == []
    assert "inet " not in subprocess.run(["ip", "-4", "addr", "show", "dev", foreign_bridge],
                                         capture_output=True, text=True).stdout


def test_gc_does_not_touch_a_foreign_idle_bridge(nspod, foreign_bridge):
    """gc deletes only an idle bridge with nspod's marker for this root; a foreign one (even
    marked for another root, or named by --bridge) stays."""
    nspod.bridge = foreign_bridge
    assert nspod("gc").stdout.strip() == ""
    assert link_exists(foreign_bridge)
    # marked by nspod for another root: not ours either
    subprocess.run(["ip", "link", "set", foreign_bridge, "alias", "nspod root=/somewhere/else"],
                   check=True)
    nspod("gc")
    assert link_exists(foreign_bridge)
    line = failed_run(nspod)
    assert f"bridge {foreign_bridge} exists and was not made by nspod for root" in line
    assert ifalias(foreign_bridge) == "nspod root=/somewhere/else"


def test_a_bridge_of_another_root_is_not_adopted(nspod, tmp_path):
    """Root A's bridge, named by root B with --bridge: refused while A uses it; A's last rm
    still removes it."""
    nspod.run_yaml(pod_yaml("a", container("a")))
    assert ifalias(nspod.bridge) == f"nspod root={nspod.root}"
    other = Nspod(str(tmp_path / "other-root"), nspod.cgroup_parent + "-b", str(tmp_path),
                  nspod.marker, nspod.bridge, nspod.subnet)
    try:
        line = failed_run(other, "b")
        assert f"bridge {nspod.bridge} exists and was not made by nspod for root " \
               f"{other.root}" in line
        other("gc")
        assert link_exists(nspod.bridge)
    finally:
        netclient.stop(other.root)
    nspod("rm", "-f", "a")
    # netd deletes the bridge right after its reply to the last detach (design.md)
    wait_for(lambda: not link_exists(nspod.bridge), timeout=10, what="the bridge removed")


def test_a_preexisting_netns_name_is_refused_and_kept(nspod):
    """/run/netns/<the pod's name> made by someone else (`ip netns add`) is never replaced
    or removed: run refuses, rm and gc leave it."""
    name = netclient.netns_name(nspod.root, "p")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
        line = failed_run(nspod)
        assert f"/run/netns/{name} exists and is not this pod's network namespace" in line
        nspod("rm", "-f", "p", check=False)
        nspod("gc")
        assert os.stat(f"/run/netns/{name}").st_ino == inode
        # and nothing else of the pod stayed: no veth, no lease (the leak check sees the rest)
        assert not link_exists(netclient.host_veth_name(nspod.root, "p", nspod.bridge))
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_a_preexisting_host_veth_name_is_refused_and_kept(nspod):
    """A link with the pod's computed host-veth name that nspod did not make (no marker) is
    refused, not deleted."""
    veth = netclient.host_veth_name(nspod.root, "p", nspod.bridge)
    peer = f"nspq{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer], check=True)
    try:
        line = failed_run(nspod)
        assert f"a link named {veth} exists and was not made by nspod for this pod" in line
        nspod("rm", "-f", "p", check=False)
        nspod("gc")
        assert link_exists(veth) and link_exists(peer)
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)


@pytest.fixture
def second_root():
    """Another state root with its own bridge and subnet, leak-checked like `nspod`."""
    with nspod_world() as tool:
        yield tool


def test_two_roots_with_a_pod_of_the_same_name_both_have_networks(nspod, second_root):
    """/run/netns is global to the host: the names differ per state root."""
    if nspod.subnet == second_root.subnet:
        second_root.subnet = nspod.subnet.replace(".0/24", ".128/25")
    nspod.run_yaml(pod_yaml("web", container("a")))
    second_root.run_yaml(pod_yaml("web", container("a")))
    first, second = nspod.inspect("web"), second_root.inspect("web")
    paths = first["runtime"]["network"]["netns"], second["runtime"]["network"]["netns"]
    assert paths[0] != paths[1]
    for pod, path in zip((first, second), paths):
        out = subprocess.run(["ip", "netns", "exec", os.path.basename(path), "ip", "-o", "-4",
                              "addr", "show", "eth0"], capture_output=True, text=True, check=True)
        assert f"inet {pod['status']['podIP']}/" in out.stdout
    nspod("rm", "-f", "web")
    # the other root's pod keeps its name and network
    assert os.path.exists(paths[1]) and not os.path.exists(paths[0])
    assert link_exists(second["runtime"]["network"]["hostVeth"])
    second_root("rm", "-f", "web")
    assert not os.path.exists(paths[1])


# --- inside another network namespace ----------------------------------------------------------


class OtherNetns:
    """A network namespace the test makes (`unshare --net`, loopback up) and commands in it."""

    def __init__(self):
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        mine = os.readlink("/proc/self/ns/net")
        wait_for(lambda: os.readlink(f"/proc/{self.proc.pid}/ns/net") != mine,
                 what="unshare --net")
        self.inode = os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv, env=None, check=True):
        result = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-n", *argv],
                                capture_output=True, text=True, timeout=120, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} in netns {self.inode}: exit {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def nspod(self, tool, *args, check=True):
        key, value = tool.marker.split("=")
        env = dict(os.environ, **{key: value})
        env.pop("NSPOD_TRACE", None)
        result = self.run(*NSPOD, *tool.global_args(), *args, env=env, check=check)
        if args and args[0] == "run":
            tool.pod_names.update(result.stdout.split())
        return result

    def close(self):
        self.proc.kill()
        self.proc.wait()


def netd_pids(root):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"nsPod.net.daemon" in argv and root.encode() in argv:
            found.append(int(entry))
    return found


def test_a_bridged_pod_runs_inside_unshare_net_and_on_the_host_with_one_root(nspod):
    """Inside `unshare --net` (its /sys still shows the host's links) a bridged pod works,
    served by a netd that lives in that namespace; a pod of the same root on the host works
    beside it; both leave nothing."""
    other = OtherNetns()
    try:
        inside = nspod.manifest(pod_yaml("inside", container("a")), name="inside.yaml")
        assert other.nspod(nspod, "run", inside).stdout.strip() == "inside"
        nspod.run_yaml(pod_yaml("outside", container("a")))
        pods = {p: nspod.inspect(p) for p in ("inside", "outside")}
        ips = {p: obj["status"]["podIP"] for p, obj in pods.items()}
        assert ips["inside"] != ips["outside"]
        # the bridge of the pod made inside is in that netns, not on the host: each netns has
        # its own, both marked as this root's
        host_ports = os.listdir(f"/sys/class/net/{nspod.bridge}/brif")
        assert pods["outside"]["runtime"]["network"]["hostVeth"] in host_ports
        assert pods["inside"]["runtime"]["network"]["hostVeth"] not in host_ports
        links = json.loads(other.run("ip", "-j", "-d", "link", "show", "master",
                                     nspod.bridge).stdout)
        assert [l["ifname"] for l in links] == [pods["inside"]["runtime"]["network"]["hostVeth"]]
        alias = json.loads(other.run("ip", "-j", "link", "show", nspod.bridge).stdout)[0]
        assert alias.get("ifalias") == f"nspod root={nspod.root}"
        # one netd per (root, netns), each in its own netns
        pids = netd_pids(nspod.root)
        assert len(pids) == 2
        assert {os.stat(f"/proc/{p}/ns/net").st_ino for p in pids} == \
            {other.inode, os.stat("/proc/self/ns/net").st_ino}
        # traffic: the pod made inside answers from that netns over its bridge
        ping = ("import socket,sys; s=socket.create_connection((sys.argv[1], 9), timeout=2)")
        result = other.run("python3", "-c", ping, ips["inside"], check=False)
        assert "ConnectionRefusedError" in result.stderr      # reached the pod; no listener
        # the pod's /run/netns name holds its netns
        path = pods["inside"]["runtime"]["network"]["netns"]
        assert os.stat(path).st_ino == int(pods["inside"]["runtime"]["namespaces"]["net"]
                                            .strip("net:[]"))
        other.nspod(nspod, "rm", "-f", "inside")
        assert not os.path.exists(path)
        # netd deletes the last veth and then the bridge after its reply (RCU grace periods):
        # gone soon after `rm` returns, not necessarily at once.
        wait_for(lambda: other.run("ip", "link", "show", nspod.bridge, check=False)
                 .returncode != 0, timeout=10, what="the bridge inside removed")
        other.run(*NSPOD[:2], "-c", "import sys; from nsPod.net import client as netclient; "
                  "netclient.stop(sys.argv[1])", nspod.root)
        assert [os.stat(f"/proc/{p}/ns/net").st_ino for p in netd_pids(nspod.root)] == \
            [os.stat("/proc/self/ns/net").st_ino]
        assert pods["outside"]["status"]["podIP"] == nspod.inspect("outside")["status"]["podIP"]
        nspod("rm", "-f", "outside")
    finally:
        other.close()


# --- kill points --------------------------------------------------------------------------------


def _monitor_pid(nspod, pod):
    try:
        with open(os.path.join(nspod.root, "pods", pod, "state.json")) as f:
            return json.load(f)["monitor"]["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def test_a_monitor_killed_after_the_netns_name_was_made_leaves_nothing(nspod):
    """SIGKILL of the monitor once the pod's /run/netns name exists (while the pod is being
    made, or just after): the CLI, `gc` and `rm -f` remove the name, the veth and the lease,
    which the pod's records say are its own."""
    path = netclient.netns_path(nspod.root, "p")
    veth = netclient.host_veth_name(nspod.root, "p", nspod.bridge)
    key, value = nspod.marker.split("=")
    run = subprocess.Popen(NSPOD + nspod.global_args() + [
        "run", nspod.manifest(pod_yaml("p", container("a")))], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, **{key: value}))
    nspod.pod_names.add("p")
    try:
        wait_for(lambda: os.path.exists(path), timeout=30, interval=0.001,
                 what="the pod's netns name")
        pid = wait_for(lambda: _monitor_pid(nspod, "p"), what="the monitor's pid")
        os.kill(pid, 9)
    finally:
        run.communicate(timeout=60)
    nspod("gc")
    nspod("rm", "-f", "p", check=False)
    assert not os.path.exists(path)
    assert not link_exists(veth)
    with open(os.path.join(nspod.root, "network", "leases.json")) as f:
        assert json.load(f)["leases"] == {}


def test_a_new_sandbox_replaces_only_its_own_stale_netns_name(nspod):
    """pause dies under restartPolicy Always: the new sandbox's netns takes the pod's
    /run/netns name, replacing the old sandbox's bind (recorded as the pod's), and the
    host veth carrying the pod's mark is replaced too; rm then leaves nothing."""
    text = pod_yaml("p", container("a")).replace("restartPolicy: Never", "restartPolicy: Always")
    nspod.run_yaml(text)
    before = nspod.inspect("p")
    path = before["runtime"]["network"]["netns"]
    old = os.stat(path).st_ino
    assert before["runtime"]["network"]["netnsInode"] == old
    os.kill(before["runtime"]["pausePid"], 9)

    def rebuilt():
        obj = nspod.inspect("p")
        pid = obj["runtime"].get("pausePid")
        return pid and pid != before["runtime"]["pausePid"] and \
            obj["runtime"].get("network", {}).get("netnsInode") not in (None, old) and obj
    after = wait_for(rebuilt, timeout=20, what="a new sandbox")
    new = os.stat(f"/proc/{after['runtime']['pausePid']}/ns/net").st_ino
    # The state names the new netns before netd binds it: wait for the bind itself.
    wait_for(lambda: os.stat(path).st_ino == new, timeout=20, what="the netns name rebound")
    assert os.stat(path).st_ino == new != old
    assert after["status"]["podIP"] == before["status"]["podIP"]
    veth = after["runtime"]["network"]["hostVeth"]
    assert ifalias(veth) == netclient.veth_mark(nspod.root, "p")
    # one bind of the pod's netns, not two stacked
    with open("/proc/self/mountinfo") as f:
        assert [l.split()[4] for l in f].count(path) == 1
    nspod("rm", "-f", "p")
    assert not os.path.exists(path) and not link_exists(veth)
