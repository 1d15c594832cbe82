"""Every pod gets an IP on the host bridge; containers of a pod share it; pods reach each
other by IP; names files; ip netns interop. Traffic only to loopback and our own pods."""
import concurrent.futures
import json
import os
import subprocess

from helpers import container, pod_yaml, wait_for

PING = ("import os, socket, struct, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
        "s.settimeout(2)\n"
        "def csum(b):\n"
        "    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n"
        "    t = (t >> 16) + (t & 0xffff); t += t >> 16\n"
        "    return ~t & 0xffff\n"
        "h = struct.pack('!BBHHH', 8, 0, 0, 1, 1) + b'nspod'\n"
        "h = h[:2] + struct.pack('!H', csum(h + b'\\0')) + h[4:]\n"
        "s.sendto(h, (sys.argv[1], 0))\n"
        "data = s.recv(1024)\n"
        "print('reply', data[20] == 0)\n")
SERVE = ("import socket, sys\n"
         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)\n"
         "print('listening', flush=True)\n"
         "while True:\n"
         "    c, _ = s.accept(); c.sendall(b'hello from ' + socket.gethostname().encode()); c.close()\n")
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
           "    print(c.recv(100).decode())\n"
           "except OSError as e:\n"
           "    print('failed', type(e).__name__)\n")


def server(name, address, port):
    argv = json.dumps(["python3", "-c", SERVE, address, str(port)])
    return f"    - name: {name}\n      command: {argv}\n"


def run_py(nspod, pod, code, *args, c=None):
    cmd = ["exec", pod] + (["-c", c] if c else []) + ["--", "python3", "-c", code, *args]
    return nspod(*cmd).stdout.strip()


def pod_ip(nspod, pod):
    return nspod.inspect(pod)["status"]["podIP"]


def test_pod_ip_is_the_pause_netns_and_shared_by_containers(nspod):
    nspod.run_yaml(pod_yaml("p", container("a") + container("b")))
    obj = nspod.inspect("p")
    ip = obj["status"]["podIP"]
    assert obj["status"]["podIPs"] == [{"ip": ip}]
    import ipaddress
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(nspod.subnet)
    network = obj["runtime"]["network"]
    assert network["podVeth"] == "eth0" and os.path.exists(f"/sys/class/net/{network['hostVeth']}")
    addr_a = nspod("exec", "p", "-c", "a", "--", "ip", "-o", "addr").stdout
    addr_b = nspod("exec", "p", "-c", "b", "--", "ip", "-o", "addr").stdout
    assert addr_a == addr_b and f"inet {ip}/" in addr_a
    mac = lambda c: nspod("exec", "p", "-c", c, "--", "cat", "/sys/class/net/eth0/address").stdout
    assert mac("a") == mac("b") == network["mac"] + "\n"
    route = nspod("exec", "p", "--", "ip", "route").stdout
    assert route.startswith(f"default via {network['gateway']} dev eth0")
    assert nspod("ps").stdout.splitlines()[1].split()[4] == ip


def test_localhost_is_shared_within_a_pod_and_private_to_it(nspod):
    """The seed's proxy/adapter pattern: a sidecar reaches the app on 127.0.0.1."""
    nspod.run_yaml(pod_yaml("p", server("app", "127.0.0.1", 8080) + container("sidecar")))
    wait_for(lambda: "listening" in nspod("logs", "p", "app").stdout, what="the server")
    assert run_py(nspod, "p", CONNECT, "127.0.0.1", "8080", c="sidecar") == "hello from p"
    # Not from the host: neither on the host's loopback nor on the pod's IP.
    from_host = subprocess.run(["python3", "-c", CONNECT, "127.0.0.1", "8080"],
                               capture_output=True, text=True).stdout.strip()
    assert from_host.startswith("failed")
    from_host = subprocess.run(["python3", "-c", CONNECT, pod_ip(nspod, "p"), "8080"],
                               capture_output=True, text=True).stdout.strip()
    assert from_host.startswith("failed")


def test_pods_reach_each_other_by_ip_but_not_their_loopback(nspod):
    nspod.run_yaml(pod_yaml("srv", server("web", "0.0.0.0", 8080) + server("local", "127.0.0.1", 9090)))
    nspod.run_yaml(pod_yaml("cli", container("c")))
    wait_for(lambda: "listening" in nspod("logs", "srv", "web").stdout, what="the server")
    wait_for(lambda: "listening" in nspod("logs", "srv", "local").stdout, what="the server")
    ip = pod_ip(nspod, "srv")
    assert run_py(nspod, "cli", PING, ip) == "reply True"
    assert run_py(nspod, "cli", CONNECT, ip, "8080") == "hello from srv"
    assert run_py(nspod, "cli", CONNECT, ip, "9090").startswith("failed")


def test_concurrent_runs_get_distinct_ips_and_rm_releases_them(nspod):
    names = [f"c{i}" for i in range(20)]
    for n in names:
        nspod.manifest(pod_yaml(n, container("a")), name=f"{n}.yaml")
        nspod.pod_names.add(n)

    def run(n):
        return nspod("run", os.path.join(nspod.workdir, f"{n}.yaml"), check=False)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(run, names))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    ips = {n: pod_ip(nspod, n) for n in names}
    assert len(set(ips.values())) == 20
    with open(os.path.join(nspod.root, "network", "leases.json")) as f:
        leases = json.load(f)["leases"]
    assert {p: l["ip"] for p, l in leases.items()} == ips
    nspod("rm", "-f", "--timeout", "0", *names)
    with open(os.path.join(nspod.root, "network", "leases.json")) as f:
        assert json.load(f)["leases"] == {}


def test_hosts_hostname_and_resolv_conf(nspod, tmp_path):
    text = pod_yaml("web-0", container("a") + container("own", mounts="""\
        - name: myhosts
          mountPath: /etc/hosts
"""), volumes=f"""\
    - name: myhosts
      hostPath:
        path: {tmp_path}/hosts
        type: FileOrCreate
""", extra_spec="""\
  hostname: web
  subdomain: svc1
  hostAliases:
    - ip: 10.1.2.3
      hostnames: [db, db.local]
  dnsConfig:
    nameservers: [10.0.0.53]
    searches: [example.test]
    options:
      - name: ndots
        value: "2"
""")
    (tmp_path / "hosts").write_text("# my own\n")
    nspod.run_yaml(text)
    ip = pod_ip(nspod, "web-0")
    hosts = nspod("exec", "web-0", "-c", "a", "--", "cat", "/etc/hosts").stdout
    assert "127.0.0.1\tlocalhost" in hosts
    assert f"{ip}\tweb.svc1.default.svc.cluster.local\tweb" in hosts
    assert "10.1.2.3\tdb\tdb.local" in hosts
    assert nspod("exec", "web-0", "-c", "a", "--", "cat", "/etc/hostname").stdout == "web\n"
    resolv = nspod("exec", "web-0", "-c", "a", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.0.0.53" in resolv and "example.test" in resolv
    assert "options ndots:2" in resolv
    assert nspod("exec", "web-0", "-c", "own", "--", "cat", "/etc/hosts").stdout == "# my own\n"
    assert nspod("exec", "web-0", "-c", "a", "--", "hostname").stdout.strip() == "web"


def test_network_none_is_loopback_only(nspod):
    text = pod_yaml("p", container("a")).replace(
        "  name: p\n", "  name: p\n  annotations:\n    nspod.io/network: none\n")
    nspod.run_yaml(text)
    assert nspod("exec", "p", "--", "ls", "/sys/class/net").stdout.split() == ["lo"]
    assert "podIP" not in nspod.inspect("p")["status"]
    nspod("create", "q", "--network", "none")
    assert "podIP" not in nspod.inspect("q")["status"]


def test_ip_netns_sees_the_pod_while_it_lives(nspod):
    from nsPod.net.client import netns_name
    nspod.run_yaml(pod_yaml("p", container("a")))
    ip = pod_ip(nspod, "p")
    # not the default root: nspod-<8 hex of the root's hash>-<pod>, as inspect reports it
    name = netns_name(nspod.root, "p")
    assert name.startswith("nspod-") and name.endswith("-p") and name != "nspod-p"
    assert nspod.inspect("p")["runtime"]["network"]["netns"] == f"/run/netns/{name}"
    out = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "-4", "addr", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    assert f"inet {ip}/" in out
    nspod("rm", "-f", "p")
    assert not os.path.exists(f"/run/netns/{name}")
    assert subprocess.run(["ip", "netns", "exec", name, "true"],
                          capture_output=True).returncode != 0


def test_gc_after_a_monitor_crash_releases_the_network(nspod):
    nspod.run_yaml(pod_yaml("p", container("a")))
    veth = nspod.inspect("p")["runtime"]["network"]["hostVeth"]
    netns = nspod.inspect("p")["runtime"]["network"]["netns"]
    assert os.path.exists(netns)
    with open(os.path.join(nspod.root, "pods", "p", "state.json")) as f:
        monitor = json.load(f)["monitor"]["pid"]
    os.kill(monitor, 9)
    wait_for(lambda: nspod.inspect("p")["status"]["phase"] == "Unknown", what="the monitor's death")
    report = nspod("gc").stdout
    assert "network" in report and not os.path.exists(f"/sys/class/net/{veth}")
    assert not os.path.exists(netns)
    with open(os.path.join(nspod.root, "network", "leases.json")) as f:
        assert json.load(f)["leases"] == {}
    nspod("rm", "p")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_host_port_publishes_a_pod_port_on_the_host(nspod):
    port = free_port()
    argv = json.dumps(["python3", "-c", SERVE, "0.0.0.0", "8080"])
    text = pod_yaml("hp", f"""\
    - name: web
      command: {argv}
      ports:
        - containerPort: 8080
          hostPort: {port}
""")
    nspod.run_yaml(text)
    wait_for(lambda: "listening" in nspod("logs", "hp").stdout, what="the server")
    for _ in range(3):
        reply = subprocess.run(["python3", "-c", CONNECT, "127.0.0.1", str(port)],
                               capture_output=True, text=True).stdout.strip()
        assert reply == "hello from hp"
    # Taken: by this pod, so a second pod asking for it is refused before anything is made.
    taken = nspod("run", nspod.manifest(text.replace("name: hp", "name: hp2"), "hp2.yaml"),
                  check=False)
    assert taken.returncode == 1 and f"hostPort {port}: already in use" in taken.stderr
    assert nspod.pods() == ["hp"]
    nspod("rm", "-f", "hp")
    reply = subprocess.run(["python3", "-c", CONNECT, "127.0.0.1", str(port)],
                           capture_output=True, text=True).stdout.strip()
    assert reply.startswith("failed")


def test_namespaced_sysctls_are_set_pod_wide(nspod):
    text = pod_yaml("sc", container("a") + container("b"), extra_spec="""\
  securityContext:
    sysctls:
      - name: net.ipv4.ip_local_port_range
        value: "20000 20999"
      - name: kernel.shm_rmid_forced
        value: "1"
""")
    nspod.run_yaml(text)
    for c in ("a", "b"):
        out = nspod("exec", "sc", "-c", c, "--", "cat", "/proc/sys/net/ipv4/ip_local_port_range",
                    "/proc/sys/kernel/shm_rmid_forced").stdout.split()
        assert out == ["20000", "20999", "1"]
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert f.read().split() != ["20000", "20999"]
    unsafe = pod_yaml("bad", container("a"), extra_spec="""\
  securityContext:
    sysctls:
      - name: vm.swappiness
        value: "10"
""")
    result = nspod("run", nspod.manifest(unsafe, "bad.yaml"), check=False)
    assert result.returncode == 2 and "vm.swappiness" in result.stderr
