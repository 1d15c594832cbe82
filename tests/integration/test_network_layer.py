"""The pod network layer against the real kernel: ipam + netclient -> netd -> network.

Stand-in pods are `unshare --net sleep` processes this test starts (their netns is what
pause's would be). Each test gets its own state root, a bridge `nsptest<4 hex>` and a subnet
10.213.<n>.0/24 of its own; traffic goes only between the namespaces it made. It never
touches ip_forward, NAT or a firewall, and it removes every link, netns name, mount, lease,
file and process it made, even on failure, then checks that nothing is left.
"""
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest

from nsPod.net import ipam, client as netclient, links as network, netns, veth
from nsPod.errors import NetworkError

PY = sys.executable

# ICMP echo over a raw socket (root in the netns): no dependency on an installed `ping`.
PING = textwrap.dedent(r"""
    import os, socket, struct, sys, time
    def checksum(data):
        data += b"\0" * (len(data) % 2)
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return ~total & 0xFFFF
    dst, ident = sys.argv[1], os.getpid() & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.5)
    for seq in range(1, 7):
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"nspod-ping"
        s.sendto(struct.pack("!BBHHH", 8, 0, checksum(body), ident, seq) + b"nspod-ping", (dst, 0))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                data, addr = s.recvfrom(1500)
            except socket.timeout:
                break
            icmp = data[(data[0] & 0x0F) * 4:]
            if addr[0] == dst and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                print("reply from", dst)
                sys.exit(0)
    sys.exit(1)
""")

TCP_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(1)
    print("listening", flush=True)
    s.settimeout(10)
    conn, peer = s.accept()
    conn.sendall(("hello " + peer[0]).encode())
    conn.close()
""")

TCP_CLIENT = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
        print(c.recv(100).decode())
""")


def _free_subnet():
    used = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"],
                          capture_output=True, text=True).stdout
    for _ in range(100):
        n = random.randint(100, 250)
        if f"10.213.{n}." not in used:
            return f"10.213.{n}.0/24"
    raise RuntimeError("no free 10.213.x.0/24 subnet for the test")


def netd_processes(root):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"nsPod.net.daemon" in argv and root.encode() in argv:
            found.append(int(entry))
    return found


class World:
    """One test's root, bridge, subnet and stand-in pods, with a thorough cleanup."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="nspod-nettest-")
        self.root = os.path.join(self.workdir, "root")
        self.bridge = "nsptest" + uuid.uuid4().hex[:4]
        self.subnet = _free_subnet()
        self.net = ipaddress.IPv4Network(self.subnet)
        self.sandboxes = []     # Popen of `unshare --net sleep`
        self.pods = set()

    # --- stand-in pods -------------------------------------------------------------------------

    def sandbox(self):
        proc = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        self.sandboxes.append(proc)
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/net") != mine:
                    return proc
            except OSError:
                pass
            time.sleep(0.002)
        raise AssertionError("unshare --net did not make a netns")

    def attach(self, pod, proc, **extra):
        self.pods.add(pod)
        return netclient.call(self.root, dict({"op": "attach", "pod": pod, "pid": proc.pid,
                                               "bridge": self.bridge, "subnet": self.subnet},
                                              **extra))

    def detach(self, pod, **extra):
        return netclient.call(self.root, dict({"op": "detach", "pod": pod, "bridge": self.bridge,
                                               "subnet": self.subnet}, **extra))

    def leases(self):
        return ipam.Leases(self.root, self.subnet)

    def run_in(self, proc, *argv, check=True, timeout=20):
        result = subprocess.run(["nsenter", "-t", str(proc.pid), "-n", *argv],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} in netns of {proc.pid}: exit {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def links(self, proc):
        out = self.run_in(proc, "ip", "-j", "addr").stdout
        return {link["ifname"]: link for link in json.loads(out)}

    # --- cleanup -------------------------------------------------------------------------------

    def undo_everything(self):
        """What nspod rm/gc would do: detach every pod, the last one taking the bridge."""
        problems = []
        for pod in sorted(self.pods):
            try:
                self.detach(pod)
            except Exception as e:
                problems.append(f"detach {pod}: {e}")
        try:
            netclient.call(self.root, {"op": "gc", "bridge": self.bridge, "subnet": self.subnet,
                                       "keep": []})
        except Exception as e:
            problems.append(f"gc: {e}")
        return problems

    def cleanup(self):
        problems = []
        for proc in self.sandboxes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        try:
            netclient.stop(self.root, timeout=5)
        except Exception as e:
            problems.append(f"netd did not stop when asked: {e}")
        for pid in netd_processes(self.root):
            problems.append(f"netd {pid} still running: killed")
            os.kill(pid, signal.SIGKILL)
        for pod in self.pods:
            try:
                # By force: this test's names (its root is in them), whatever netns they hold.
                inode = netns.netns_inode_at(network.netns_path(self.root, pod))
                netns.netns_detach(self.root, pod, [inode] if inode else [])
            except Exception as e:
                problems.append(f"netns of {pod}: {e}")
        for name in [network.host_veth_name(self.root, p, self.bridge) for p in self.pods] + [self.bridge]:
            # A netns that just died takes its veth with it a little later: wait for that.
            deadline = time.monotonic() + 2
            while network.link_exists(name) and time.monotonic() < deadline:
                time.sleep(0.01)
            if network.link_exists(name):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problems


def _mounts():
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _netns_files():
    try:
        return set(os.listdir(network.NETNS_DIR))
    except FileNotFoundError:
        return set()


class Snapshot:
    """Links, /run/netns names and mounts before the test; our processes after it."""

    def __init__(self, world):
        self.world = world
        self.links = set(os.listdir(network.SYS_NET))
        self.netns = _netns_files()
        self.mounts = _mounts()

    def leaks(self):
        """Only what is ours: other tests may be making links and mounts meanwhile."""
        w = self.world
        ours = {w.bridge} | {network.host_veth_name(w.root, p, w.bridge) for p in w.pods}
        ours_netns = {network.netns_name(w.root, p) for p in w.pods}
        found = [f"link {n}" for n in sorted(set(os.listdir(network.SYS_NET)) - self.links)
                 if n in ours]
        found += [f"netns name {n}" for n in sorted(_netns_files() - self.netns) if n in ours_netns]
        found += [f"mount {m}" for m in sorted(_mounts() - self.mounts)
                  if m.startswith(w.workdir) or os.path.basename(m) in ours_netns]
        found += [f"netd {pid}" for pid in netd_processes(self.world.root)]
        found += [f"sandbox {p.pid}" for p in self.world.sandboxes if p.poll() is None]
        return found


@pytest.fixture
def world():
    netns_dir_existed = os.path.isdir(network.NETNS_DIR)
    w = World()
    before = Snapshot(w)
    try:
        yield w
    finally:
        # nspod's own undo first, checked before anything is removed by force
        problems = w.undo_everything()
        for proc in w.sandboxes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        try:
            netclient.stop(w.root)
        except Exception as e:
            problems.append(str(e))
        leaks = before.leaks()
        problems += [f"left by nspod: {leak}" for leak in leaks]
        problems += w.cleanup()
        deadline = time.monotonic() + 3
        leaks = before.leaks()
        while leaks and time.monotonic() < deadline:
            time.sleep(0.05)
            leaks = before.leaks()
        if not netns_dir_existed:
            try:
                os.rmdir(network.NETNS_DIR)
            except OSError:
                pass
        assert not leaks, "the test left behind:\n" + "\n".join(leaks)
        assert not problems, "\n".join(problems)


@pytest.fixture
def short_idle(monkeypatch):
    monkeypatch.setenv("NSPOD_NETD_IDLE", "1")


# --- the tests ------------------------------------------------------------------------------------


def test_two_pods_on_a_bridge_reach_each_other(world):
    a, b = world.sandbox(), world.sandbox()
    ra = world.attach("alpha", a)
    rb = world.attach("beta", b)
    gateway = str(world.net.network_address + 1)
    assert (ra["ip"], rb["ip"]) == (str(world.net.network_address + 2), str(world.net.network_address + 3))
    assert ra["gateway"] == rb["gateway"] == gateway
    assert ra["prefixLength"] == 24 and ra["podVeth"] == "eth0"
    assert world.leases().all() == {"alpha": ra["ip"], "beta": rb["ip"]}

    # inside: eth0 with the address and MAC, up; lo up; default route via the bridge
    for proc, reply in ((a, ra), (b, rb)):
        links = world.links(proc)
        assert set(links) == {"lo", "eth0"}
        eth0 = links["eth0"]
        assert eth0["address"] == reply["mac"] == network.mac_for(reply["ip"])
        assert "UP" in eth0["flags"] and "UP" in links["lo"]["flags"]
        assert [(i["local"], i["prefixlen"]) for i in eth0["addr_info"] if i["family"] == "inet"] \
            == [(reply["ip"], 24)]
        addr = world.run_in(proc, "ip", "-o", "addr").stdout
        assert f"inet {reply['ip']}/24" in addr
        route = world.run_in(proc, "ip", "route", "show", "default").stdout
        assert route.startswith(f"default via {gateway} dev eth0")

    # on the host: the bridge has the gateway and both host veths as ports
    assert network.is_bridge(world.bridge)
    assert network.bridge_ports(world.bridge) == sorted([ra["hostVeth"], rb["hostVeth"]])
    assert ra["hostVeth"] == network.host_veth_name(world.root, "alpha", world.bridge)
    assert len(ra["hostVeth"]) <= 15
    host_addr = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", world.bridge],
                               capture_output=True, text=True).stdout
    assert f"inet {gateway}/24" in host_addr

    # ping both ways and to the gateway, TCP from b to a
    assert "reply from" in world.run_in(a, PY, "-c", PING, rb["ip"]).stdout
    assert "reply from" in world.run_in(b, PY, "-c", PING, ra["ip"]).stdout
    assert "reply from" in world.run_in(a, PY, "-c", PING, gateway).stdout
    server = subprocess.Popen(["nsenter", "-t", str(a.pid), "-n", PY, "-c", TCP_SERVER,
                               ra["ip"], "18080"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        out = world.run_in(b, PY, "-c", TCP_CLIENT, ra["ip"], "18080").stdout
        assert out.strip() == f"hello {rb['ip']}"
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    # detach: host veths, netns names and leases go; the bridge stays until asked
    for pod, reply in (("alpha", ra), ("beta", rb)):
        removed = world.detach(pod)["removed"]
        assert f"veth {reply['hostVeth']}" in removed and f"lease {reply['ip']}" in removed
        assert not network.link_exists(reply["hostVeth"])
    assert set(world.links(a)) == {"lo"}
    assert world.leases().all() == {}
    assert network.is_bridge(world.bridge)
    assert world.detach("beta", removeBridge=True)["removed"] == [f"bridge {world.bridge}"]
    assert not network.link_exists(world.bridge)
    # idempotent
    assert world.detach("alpha", removeBridge=True)["removed"] == []


def test_ip_netns_exec_works_while_the_pod_lives(world):
    a = world.sandbox()
    reply = world.attach("gamma", a)
    path = reply["netns"]
    name = network.netns_name(world.root, "gamma")
    # not the default root: the name carries a hash of the root
    assert name.startswith("nspod-") and name.endswith("-gamma") and len(name) == len("nspod-12345678-gamma")
    assert path == f"/run/netns/{name}" == network.netns_path(world.root, "gamma")
    out = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "-4", "addr", "show", "eth0"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert f"inet {reply['ip']}/24" in out.stdout
    assert subprocess.run(["ip", "netns", "exec", name, "true"]).returncode == 0
    inode = os.stat(f"/proc/{a.pid}/ns/net").st_ino
    assert os.stat(path).st_ino == inode == reply["netnsInode"]
    world.detach("gamma")
    assert not os.path.exists(path)
    assert subprocess.run(["ip", "netns", "exec", name, "true"],
                          capture_output=True).returncode != 0
    # the functions themselves, without netd, idempotent both ways
    assert netns.netns_attach(world.root, "gamma", a.pid) == path
    assert netns.netns_attach(world.root, "gamma", a.pid) == path   # already: does not stack
    assert subprocess.run(["ip", "netns", "exec", name, "true"]).returncode == 0
    assert netns.netns_detach(world.root, "gamma", [inode + 1]) is False   # not the pod's netns
    assert os.stat(path).st_ino == inode
    assert netns.netns_detach(world.root, "gamma", [inode]) is True
    assert netns.netns_detach(world.root, "gamma", [inode]) is False
    assert not any(path in line for line in open("/proc/self/mountinfo"))


def test_recreated_sandbox_gets_its_old_address_and_a_fresh_veth(world):
    first = world.sandbox()
    r1 = world.attach("delta", first)
    world.attach("other", world.sandbox())
    old_netns = os.stat(r1["netns"]).st_ino
    first.kill()
    first.wait()
    # the pod's /run/netns name still holds the dead sandbox's netns, and with it the old veth
    assert network.link_exists(r1["hostVeth"])
    second = world.sandbox()
    # the lease is still the pod's; the old veth and netns name are replaced
    r2 = world.attach("delta", second)
    assert r2["ip"] == r1["ip"] and r2["hostVeth"] == r1["hostVeth"]
    assert f"inet {r2['ip']}/24" in world.run_in(second, "ip", "-o", "addr").stdout
    assert os.stat(r2["netns"]).st_ino == os.stat(f"/proc/{second.pid}/ns/net").st_ino != old_netns
    assert "reply from" in world.run_in(second, PY, "-c", PING, r2["gateway"]).stdout
    world.detach("delta")
    third = world.sandbox()
    r3 = world.attach("delta", third, preferred=r1["ip"])
    assert r3["ip"] == r1["ip"]
    # attaching again to the same live sandbox replaces nothing and says why
    with pytest.raises(NetworkError, match="already has an eth0"):
        netclient.call(world.root, {"op": "attach", "pod": "delta-twin", "pid": third.pid,
                                    "bridge": world.bridge, "subnet": world.subnet})
    assert "delta-twin" not in world.leases().all()
    world.pods.add("delta-twin")


def test_failures_leave_nothing_and_name_the_step(world):
    a = world.sandbox()
    dead = world.sandbox()
    dead.kill()
    dead.wait()
    with pytest.raises(NetworkError, match=f"pause process {dead.pid} is gone"):
        world.attach("ghost", dead)
    assert world.leases().all() == {}
    # exhaustion: a /30 has room for one pod
    small = world.subnet.replace(".0/24", ".0/30")
    netclient.call(world.root, {"op": "attach", "pod": "one", "pid": a.pid,
                                "bridge": world.bridge, "subnet": small})
    world.pods.update({"one", "two"})
    b = world.sandbox()
    with pytest.raises(NetworkError) as info:
        netclient.call(world.root, {"op": "attach", "pod": "two", "pid": b.pid,
                                    "bridge": world.bridge, "subnet": small})
    assert str(info.value) == f"subnet {small} has no free address (1 pods hold leases)"
    assert not network.link_exists(network.host_veth_name(world.root, "two", world.bridge))
    assert set(world.links(b)) == {"lo"}
    assert not os.path.exists(network.netns_path(world.root, "two"))
    # bad requests are errors, not crashes
    with pytest.raises(NetworkError, match="unknown op"):
        netclient.call(world.root, {"op": "frobnicate"})
    with pytest.raises(NetworkError, match="'pid' must be a positive integer"):
        netclient.call(world.root, {"op": "attach", "pod": "x", "pid": "1",
                                    "bridge": world.bridge, "subnet": small})
    netclient.call(world.root, {"op": "detach", "pod": "one", "bridge": world.bridge,
                                "subnet": small, "removeBridge": True})


def test_a_bridge_serves_one_root(world):
    a = world.sandbox()
    world.attach("mine", a)
    other_root = os.path.join(world.workdir, "other-root")
    try:
        with pytest.raises(NetworkError, match=f"bridge {world.bridge} exists and was not made by "
                                               f"nspod for root {other_root}: choose another --bridge"):
            netclient.call(other_root, {"op": "attach", "pod": "theirs", "pid": world.sandbox().pid,
                                        "bridge": world.bridge, "subnet": world.subnet})
    finally:
        netclient.stop(other_root)


def test_gc_removes_what_dead_pods_left(world):
    # nothing to do: gc starts no netd
    assert netclient.gc(world.root, world.bridge, world.subnet, keep=[]) == []
    assert netclient.running(world.root) is None
    a, b = world.sandbox(), world.sandbox()
    ra = netclient.attach(world.root, "keep", a.pid, world.bridge, world.subnet)
    world.pods.update({"keep", "crashed"})
    rb = netclient.attach(world.root, "crashed", b.pid, world.bridge, world.subnet)
    removed = netclient.gc(world.root, world.bridge, world.subnet, keep=["keep"])
    assert network.netns_path(world.root, "crashed") in removed
    assert f"veth {rb['hostVeth']}" in removed and f"lease {rb['ip']} of pod crashed" in removed
    assert world.leases().all() == {"keep": ra["ip"]}
    assert network.bridge_ports(world.bridge) == [ra["hostVeth"]]
    assert netclient.detach(world.root, "keep", world.bridge, world.subnet) == [
        network.netns_path(world.root, "keep"), f"veth {ra['hostVeth']}", f"lease {ra['ip']}"]
    assert netclient.gc(world.root, world.bridge, world.subnet, keep=[]) == [f"bridge {world.bridge}"]


def test_trace_narrates_the_netlink_steps(world, monkeypatch, capfd):
    from nsPod.kernel import tracing
    monkeypatch.setattr(tracing, "_mode", "text")
    monkeypatch.setenv("NSPOD_TRACE", "1")
    world.attach("traced", world.sandbox())
    err = capfd.readouterr().err
    assert "netd: netlink: create veth" in err
    assert f" at {network.netns_path(world.root, 'traced')} (fd " in err
    assert "netd: mount(/proc/self/fd/" in err


def test_twenty_concurrent_clients_start_one_netd_and_get_distinct_addresses(world):
    procs = [world.sandbox() for _ in range(20)]
    names = [f"pod-{i}" for i in range(20)]
    world.pods.update(names)
    code = textwrap.dedent("""
        import json, sys
        from nsPod.net import client as netclient
        root, bridge, subnet, pod, pid = sys.argv[1:6]
        r = netclient.call(root, {"op": "attach", "pod": pod, "pid": int(pid),
                                  "bridge": bridge, "subnet": subnet})
        print(json.dumps(r))
    """)
    clients = [subprocess.Popen([PY, "-c", code, world.root, world.bridge, world.subnet, n,
                                 str(p.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for n, p in zip(names, procs)]
    replies = []
    for c in clients:
        out, err = c.communicate(timeout=60)
        assert c.returncode == 0, err
        replies.append(json.loads(out))
    assert len({r["ip"] for r in replies}) == 20
    assert len(netd_processes(world.root)) == 1
    assert netclient.running(world.root) == netd_processes(world.root)[0]
    assert sorted(network.bridge_ports(world.bridge)) == sorted(r["hostVeth"] for r in replies)
    # a netd started by hand while one runs exits quietly
    loser = subprocess.run([PY, "-P", "-m", "nsPod.net.daemon", world.root], capture_output=True,
                           text=True, timeout=30)
    assert loser.returncode == 0 and loser.stderr == ""
    assert len(netd_processes(world.root)) == 1


def test_netd_exits_after_the_idle_timeout(world, short_idle):
    a = world.sandbox()
    reply = world.attach("idle", a)
    pid = netclient.running(world.root)
    assert pid and netd_processes(world.root) == [pid]
    deadline = time.monotonic() + 10
    while netd_processes(world.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert netd_processes(world.root) == []
    assert netclient.running(world.root) is None
    assert not os.path.exists(netclient.socket_path(world.root))
    # the pod is untouched (it holds a lease, so the bridge stays too)...
    assert network.link_exists(reply["hostVeth"]) and network.is_bridge(world.bridge)
    # ...and the next call starts a new netd
    assert netclient.call(world.root, {"op": "ping"})["pid"] != pid
    world.detach("idle")
    # idle again with no lease: the new netd takes the unused bridge with it
    deadline = time.monotonic() + 10
    while netd_processes(world.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert netd_processes(world.root) == []
    assert not network.link_exists(world.bridge)


def test_detach_without_waiting_deletes_the_veth_before_the_next_request(world):
    a = world.sandbox()
    reply = world.attach("quick", a)
    removed = world.detach("quick", wait=False, removeBridge=True)["removed"]
    assert f"veth {reply['hostVeth']}" in removed and f"lease {reply['ip']}" in removed
    netclient.call(world.root, {"op": "ping"})
    assert not network.link_exists(reply["hostVeth"])
    assert not network.link_exists(world.bridge)
    assert set(world.links(a)) == {"lo"}


def test_the_host_netns_is_never_configured(world):
    host_proc = subprocess.Popen(["sleep", "1000"])
    world.sandboxes.append(host_proc)
    world.pods.add("hosty")
    with pytest.raises(NetworkError, match="is in the host's network namespace"):
        world.attach("hosty", host_proc)
    assert "hosty" not in world.leases().all()


def test_a_killed_netd_is_replaced_and_a_long_root_works(world):
    # a root long enough that <root>/network/netd.sock does not fit in sun_path
    world.root = os.path.join(world.workdir, "r" * 60, "s" * 60)
    a = world.sandbox()
    first = netclient.call(world.root, {"op": "ping"})["pid"]
    assert len(netclient.socket_path(world.root)) > 108
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while first in netd_processes(world.root) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(netclient.socket_path(world.root))   # stale now
    reply = world.attach("phoenix", a)
    assert netclient.running(world.root) not in (None, first)
    assert f"inet {reply['ip']}/24" in world.run_in(a, "ip", "-o", "addr").stdout


def test_pod_side_configuration_is_refused_beside_another_thread(world):
    """setns(2) moves only the calling thread: the pod side is configured over a socket
    opened in this thread right after setns, which netd guarantees by being single-threaded.
    With another thread running it refuses before any setns, and this process's netns is
    unchanged."""
    import ipaddress
    import threading
    a = world.sandbox()
    mine = os.stat("/proc/self/ns/net").st_ino
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    fd = veth.open_netns(a.pid)
    try:
        with pytest.raises(NetworkError, match="single-threaded"):
            veth._configure_pod_side(fd, a.pid, ipaddress.IPv4Interface("10.213.1.2/24"),
                                        "10.213.1.1")
    finally:
        os.close(fd)
        stop.set()
        other.join()
    assert os.stat("/proc/self/ns/net").st_ino == mine
    assert set(world.links(a)) == {"lo"}


def test_a_bridge_half_made_by_a_killed_netd_is_finished_and_a_foreign_one_refused(world):
    """The kernel ignores IFLA_IFALIAS when it creates a link, so the bridge is marked by a
    second request; netd writes an intent file first. An unmarked bridge with this root's
    intent file is this root's (netd killed in between) and is finished; without it, refused."""
    subprocess.run(["ip", "link", "add", world.bridge, "type", "bridge"], check=True)
    a = world.sandbox()
    with pytest.raises(NetworkError, match=f"bridge {world.bridge} exists and was not made by "
                                           f"nspod for root {world.root}"):
        world.attach("half", a)
    assert network.link_alias(world.bridge) == ""
    assert world.leases().all() == {}
    intent = network._intent_path(world.root, world.bridge)
    with open(intent, "w") as f:
        f.write("1\n")
    reply = world.attach("half", a)
    assert network.link_alias(world.bridge) == network.bridge_mark(world.root)
    assert not os.path.exists(intent)
    assert network.bridge_ports(world.bridge) == [reply["hostVeth"]]
