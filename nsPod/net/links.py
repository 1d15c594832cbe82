"""The pod network on the host: bridge, veth pairs, addresses, routes, /run/netns names.

The only module that imports pyroute2, and it does so lazily, on the first netlink call:
`import pyroute2` costs 200-400 ms and ~25 MB, so the per-pod monitor and the CLI never load
it. They ask nsPod.net.daemon (a warm helper process, through nsPod.net.client) to do the netlink
work; netd calls the functions below, in whatever network namespace it lives in (every
query goes over netlink or an ioctl, never /sys/class/net, which inside `unshare --net`
still shows the host's links). This module holds the netlink socket, the names and markers
and the bridge; net/veth.py plugs one pod in with that socket, and net/netns.py's
/run/netns names are plain mount calls that need no pyroute2.

One pod, as attach() leaves it:

    host netns                                     pod netns (pause's)
    bridge <name>  <gateway>/<prefix>, up          lo   up
      alias "nspod root=<root>"
      └─ nsp<12 hex>  (host side of the veth) ════ eth0 <ip>/<prefix>, up, MAC 02:6e:<ip>
         alias "nspod veth <root> <pod>"           default via <gateway>
    /run/netns/<netclient.netns_name(root, pod)>: a bind mount of the pod's netns

MACs encode the IP (02:6e + its four bytes, a locally administered unicast address), so a
reused address comes with the MAC that other pods' ARP caches already hold; the bridge gets
its gateway's MAC explicitly, so it never changes as ports come and go.
"""
import errno
import ipaddress
import os
import sys

from nsPod.errors import NetworkError
from nsPod.net import client as netclient
from nsPod.kernel import tracing

NETNS_DIR = netclient.NETNS_DIR
NETNS_PREFIX = netclient.NETNS_PREFIX
POD_IFNAME = "eth0"
HOST_VETH_PREFIX = netclient.HOST_VETH_PREFIX
SYS_NET = "/sys/class/net"

_IPRoute = None
_NetlinkError = None
_host = None             # the host netns's netlink socket, kept open (netd reuses it)
_bridges = {}            # bridge name -> (ifindex, gateway cidr, marker) already ensured


# --- pyroute2, loaded once, lazily ----------------------------------------------------------


def _load_pyroute2():
    """Import pyroute2's IPRoute without the package's __init__ when possible.

    pyroute2/__init__.py imports every submodule (NDB, IPDB, nftables, wireguard, ...;
    upstream issue svinota/pyroute2#1404). Registering the package as a bare namespace first
    and importing only pyroute2.iproute.linux measured 185 ms / 27 MB here against 285 ms /
    33 MB. Should a future pyroute2 need its __init__ for that, the plain import is the
    fallback.
    """
    global _IPRoute, _NetlinkError
    if _IPRoute is not None:
        return
    tracing.note("import pyroute2")
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types
        try:
            spec = importlib.util.find_spec("pyroute2")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("pyroute2 is not installed")
            package = types.ModuleType("pyroute2")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__file__ = spec.origin
            package.__package__ = "pyroute2"
            sys.modules["pyroute2"] = package
            from pyroute2.iproute.linux import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError
            _IPRoute, _NetlinkError = IPRoute, NetlinkError
            return
        except Exception:
            for name in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
                del sys.modules[name]
    try:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as e:
        raise NetworkError(f"the pod network needs pyroute2: {e}") from e
    _IPRoute, _NetlinkError = IPRoute, NetlinkError


def _new_socket():
    _load_pyroute2()
    # groups=0: no multicast subscriptions, so no events pile up on a long-lived socket.
    return _IPRoute(groups=0)


def _host_ipr():
    global _host
    if _host is None:
        _host = _new_socket()
    return _host


def close():
    """Close the host netlink socket (netd keeps it open for its life)."""
    global _host
    if _host is not None:
        try:
            _host.close()
        finally:
            _host = None
    _bridges.clear()


class _Step:
    """Turn a netlink or OS failure into NetworkError naming the step, the link and errno."""

    def __init__(self, what):
        self.what = what
        self.step = None

    def __enter__(self):
        self.step = tracing.begin("netlink", [self.what], text=f"netlink: {self.what}")
        return self

    def __exit__(self, kind, exc, tb):
        tracing.end(self.step, None if exc is None else _errno_of(exc) or "error")
        if exc is None or isinstance(exc, NetworkError):
            return False
        code = _errno_of(exc)
        if code is None:
            return False
        if _NetlinkError is None or not isinstance(exc, _NetlinkError):
            # A socket error, not the kernel's answer: the host socket may be unusable.
            close()
        raise NetworkError(f"{self.what}: {os.strerror(code)} (errno {code})") from exc


def _errno_of(exc):
    if _NetlinkError is not None and isinstance(exc, _NetlinkError):
        return exc.code
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return None


def _is(exc, *codes):
    return _errno_of(exc) in codes


# --- names and what is nspod's -------------------------------------------------------------------
#
# Names and markers are made in netclient (cheap: the monitor records them before netd makes
# the things they name). A link is nspod's only when its ifalias carries nspod's marker for
# this state root (and, for a host veth, this pod); a /run/netns name is a pod's only when it
# is a bind mount of a netns the pod's records name. Anything else of the same name is left
# alone and refused.

netns_name = netclient.netns_name
netns_path = netclient.netns_path
host_veth_name = netclient.host_veth_name
is_host_veth_name = netclient.is_host_veth_name
bridge_mark = netclient.bridge_mark
veth_mark = netclient.veth_mark


def mac_for(address):
    """02:6e:<the four bytes of the IPv4 address>."""
    packed = ipaddress.IPv4Address(str(address).split("/")[0]).packed
    return "02:6e:" + ":".join(f"{b:02x}" for b in packed)


def link_exists(name):
    return netclient.link_index(name) is not None


def _link(name):
    """{"index", "kind", "alias", "master"} of a link of the caller's netns, or None.

    Netlink, not /sys/class/net: inside `unshare --net` /sys still shows the netns it was
    mounted for (the host's), and nspod must see the links of the netns it works in.
    """
    index = netclient.link_index(name)
    if index is None:
        return None
    try:
        with _Step(f"look up link {name}"):
            found = _host_ipr().link("get", index=index)
    except NetworkError as e:
        if _is(e.__cause__, errno.ENODEV, errno.ENOENT):
            return None
        raise
    msg = found[0]
    return {"index": index, "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            "alias": msg.get_attr("IFLA_IFALIAS") or "", "master": msg.get_attr("IFLA_MASTER")}


def is_bridge(name):
    info = _link(name)
    return info is not None and info["kind"] == "bridge"


def link_alias(name):
    """The link's ifalias ("" when it has none), or None when there is no such link."""
    info = _link(name)
    return None if info is None else info["alias"]


def bridge_ports(name):
    """Names of the links enslaved to the bridge `name` (sorted); [] when it is not there."""
    index = netclient.link_index(name)
    if index is None:
        return []
    with _Step(f"list the ports of bridge {name}"):
        links = _host_ipr().get_links()
    return sorted(l.get_attr("IFLA_IFNAME") for l in links if l.get_attr("IFLA_MASTER") == index)


def bridge_owner(name):
    """The state root named in the bridge's nspod marker (or its hashed form), else None."""
    alias = link_alias(name) or ""
    for prefix in (netclient.BRIDGE_MARK, netclient.BRIDGE_MARK_HASHED):
        if alias.startswith(prefix):
            return alias[len(prefix):]
    return None


def is_ours_bridge(name, root):
    return link_alias(name) == bridge_mark(root)


def _ifindex(name):
    return netclient.link_index(name)


def _foreign_bridge(name, root):
    return NetworkError(f"bridge {name} exists and was not made by nspod for root "
                        f"{os.path.normpath(root)}: choose another --bridge")


# --- bridge ------------------------------------------------------------------------------------


def _intent_path(root, name):
    """Written before a bridge is created, removed once it carries the marker: a bridge found
    without a marker while this file exists is one this root began to make (netd killed
    between the two netlink requests: the kernel ignores IFLA_IFALIAS on creation)."""
    return os.path.join(root, "network", f"bridge.{netclient.netns_key()}.{name}.new")


def check_bridge(name, root):
    """Refuse a link of that name that is not a bridge nspod made for `root` (None when the
    name is free)."""
    info = _link(name)
    if info is None:
        return None
    if info["kind"] != "bridge":
        raise NetworkError(f"bridge {name}: a link of that name exists and is not a bridge "
                           f"(choose another with --bridge)")
    if info["alias"] != bridge_mark(root) and not (
            info["alias"] == "" and os.path.exists(_intent_path(root, name))):
        raise _foreign_bridge(name, root)
    return info


def ensure_bridge(name, gateway_cidr, root):
    """The bridge exists, carries nspod's marker for `root`, has the gateway address and is
    up; returns its ifindex.

    A bridge of that name that nspod did not make for this root (another root's, Docker's,
    anybody's) is refused, never adopted. A link of that name that is not a bridge is an error.
    """
    gateway = ipaddress.IPv4Interface(gateway_cidr)
    mark = bridge_mark(root)
    index = _ifindex(name)
    cached = _bridges.get(name)
    if index is not None and cached == (index, str(gateway), mark):
        return index
    ipr = _host_ipr()
    intent = _intent_path(root, name)
    info = check_bridge(name, root)
    if info is None:
        os.makedirs(os.path.dirname(intent), mode=0o700, exist_ok=True)
        with open(intent, "w") as f:
            f.write(f"{os.getpid()}\n")
        try:
            with _Step(f"create bridge {name}"):
                ipr.link("add", ifname=name, kind="bridge", address=mac_for(gateway.ip))
        except NetworkError as e:
            _remove_file(intent)
            if not _is(e.__cause__, errno.EEXIST):
                raise
            # Made by somebody else just now: nspod's only if it carries our marker.
            info = check_bridge(name, root)
            if info is None:
                raise NetworkError(f"create bridge {name}: it vanished right after creation")
        else:
            index = _ifindex(name)
            if index is None:
                _remove_file(intent)
                raise NetworkError(f"create bridge {name}: it vanished right after creation")
            info = {"index": index, "alias": ""}
    index = info["index"]
    if info["alias"] != mark:
        try:
            with _Step(f"mark bridge {name} as nspod's for root {root}"):
                ipr.link("set", index=index, ifalias=mark)
        except NetworkError:
            _delete_link(name, "bridge")
            raise
        finally:
            _remove_file(intent)
    try:
        with _Step(f"add address {gateway} to bridge {name}"):
            ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
    except NetworkError as e:
        if not _is(e.__cause__, errno.EEXIST):
            raise
    with _Step(f"set bridge {name} up"):
        ipr.link("set", index=index, state="up")
    _bridges[name] = (index, str(gateway), mark)
    return index


def remove_bridge_if_unused(name, root):
    """Delete the bridge when it is nspod's for `root` and no link is its port; True when it
    was deleted. A bridge without the marker (docker0, a user's) is never deleted."""
    _bridges.pop(name, None)
    if not is_ours_bridge(name, root) or not is_bridge(name) or bridge_ports(name):
        return False
    return _delete_link(name, "bridge")


def _remove_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _delete_link(name, what):
    """Delete a link; False when it was already gone."""
    try:
        with _Step(f"delete {what} {name}"):
            _host_ipr().link("del", ifname=name)
    except NetworkError as e:
        if _is(e.__cause__, errno.ENODEV, errno.ENOENT):
            return False
        raise
    return True
