"""Names and markers of the pod network (netclient) and netd's idle timer: pure logic."""
import math

from nsPod import config
from nsPod.net import client as netclient, daemon as netd


def test_netns_names_are_unique_per_root_and_fit_a_file_name():
    """The default root keeps nspod-<pod>; another root gets 8 hex of its hash in the name;
    a 253-character pod name (Kubernetes' limit) still fits in 255 bytes."""
    assert netclient.DEFAULT_ROOT == config.DEFAULT_ROOT
    assert netclient.netns_name("/run/nspod", "web") == "nspod-web"
    assert netclient.netns_name("/run/nspod/", "web") == "nspod-web"
    a, b = netclient.netns_name("/tmp/a", "web"), netclient.netns_name("/tmp/b", "web")
    assert a != b and a.startswith("nspod-") and a.endswith("-web") and len(a) == 18
    assert netclient.netns_path("/tmp/a", "web") == "/run/netns/" + a
    long_pod = ("a" * 63 + ".") * 3 + "a" * 61
    assert len(long_pod) == 253
    names = {netclient.netns_name(r, long_pod) for r in ("/run/nspod", "/tmp/a", "/tmp/b")}
    assert len(names) == 3 and all(len(n.encode()) <= 255 for n in names)
    assert netclient.netns_name("/tmp/a", long_pod[:-1] + "b") not in names


def test_host_veth_names_depend_on_root_bridge_and_pod():
    names = {netclient.host_veth_name(r, p, b) for r in ("/r1", "/r2") for p in ("x", "y")
             for b in ("br0", "br1")}
    assert len(names) == 8
    assert all(len(n) == 15 and netclient.is_host_veth_name(n) for n in names)
    assert not netclient.is_host_veth_name("eth0")


def test_markers_fit_an_ifalias_and_tell_roots_and_pods_apart():
    assert netclient.bridge_mark("/run/nspod") == "nspod root=/run/nspod"
    assert netclient.bridge_mark("/run/nspod/") == "nspod root=/run/nspod"
    long_root = "/" + "r" * 300
    mark = netclient.bridge_mark(long_root)
    assert mark.startswith("nspod root-sha256=") and len(mark) <= 255
    assert mark != netclient.bridge_mark(long_root + "x")
    v1, v2 = netclient.veth_mark("/r1", "p"), netclient.veth_mark("/r1", "q")
    assert v1 != v2 and len(v1) <= 255
    assert v1.startswith(netclient.veth_mark_prefix("/r1"))
    assert not v1.startswith(netclient.veth_mark_prefix("/r2"))


def test_netd_idle_is_clamped_to_what_epoll_takes():
    """NSPOD_NETD_IDLE=1e9 used to overflow epoll's timeout (OverflowError in netd)."""
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "1e9"}) == netd.MAX_IDLE
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "inf"}) == netd.MAX_IDLE
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "nan"}) == netd.DEFAULT_IDLE
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "-3"}) == netd.DEFAULT_IDLE
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "x"}) == netd.DEFAULT_IDLE
    assert netd.idle_seconds({"NSPOD_NETD_IDLE": "2.5"}) == 2.5
    assert netd.MAX_IDLE * 1000 < 2 ** 31 - 1 and not math.isinf(netd.MAX_IDLE)
    import os
    import selectors
    r, w = os.pipe()
    try:
        os.write(w, b"x")      # ready at once: select returns without waiting
        with selectors.DefaultSelector() as s:
            s.register(r, selectors.EVENT_READ)
            assert len(s.select(timeout=netd.MAX_IDLE)) == 1      # no OverflowError
    finally:
        os.close(r)
        os.close(w)


def test_netclient_stays_light():
    """The monitor imports netclient: no config (dataclasses), no pyroute2."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(netclient))
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not top & {"nsPod.config", "dataclasses", "pyroute2", "nsPod.net.links"}
