"""The pod network on the host: bridge, veth pairs, addresses, routes, /run/netns names.

The only module that imports pyroute2, and it does so lazily, on the first netlink call:
`import pyroute2` costs 200-400 ms and ~25 MB, so the per-pod monitor and the CLI never load
it. They ask nsPod.net.daemon (a warm helper process, through nsPod.net.client) to do the netlink
work; netd calls the functions below, in whatever network namespace it lives in (every
query goes over netlink or an ioctl, never /sys/class/net, which inside `unshare --net`
still shows the host's links). netns_attach/netns_detach are plain mount calls and can be
used without loading pyroute2.

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
import fcntl
import ipaddress
import os
import sys
import threading

from nsPod.errors import NetworkError
from nsPod.net import client as netclient
from nsPod.kernel import syscalls
from nsPod.kernel.syscalls import MNT_DETACH, CloneFlag, MountFlag

NETNS_DIR = netclient.NETNS_DIR
NETNS_PREFIX = netclient.NETNS_PREFIX
POD_IFNAME = "eth0"
HOST_VETH_PREFIX = netclient.HOST_VETH_PREFIX
SYS_NET = "/sys/class/net"

_IPRoute = None
_NetlinkError = None
_host = None             # the host netns's netlink socket, kept open (netd reuses it)
_host_netns_fd = None    # our own netns, to come back to after configuring a pod's
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
    syscalls.trace("import pyroute2")
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

    def __enter__(self):
        syscalls.trace(f"netlink: {self.what}")
        return self

    def __exit__(self, kind, exc, tb):
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


# --- one pod -----------------------------------------------------------------------------------


def open_netns(pause_pid):
    """An fd of pause's network namespace (O_CLOEXEC); NetworkError when pause is gone."""
    path = f"/proc/{int(pause_pid)}/ns/net"
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetworkError(f"open {path}: {e.strerror} (errno {e.errno}): "
                           f"the pod's pause process {pause_pid} is gone") from e


def attach(pod_name, pause_pid, address_cidr, gateway, bridge, root, netns_fd=None):
    """Plug pause's network namespace into the bridge; returns what was made.

    veth created in one netlink request with its peer already named eth0 inside the pod's
    netns, MAC set, host side enslaved to the bridge and up, then marked as this pod's; then,
    inside the pod's netns: eth0's address, eth0 and lo up, the default route via the
    gateway. A host-side veth left by an earlier sandbox of the same pod (it carries the
    pod's marker) is replaced; a link of that name without it is refused, never touched. On
    failure nothing stays behind.
    """
    iface = ipaddress.IPv4Interface(address_cidr)
    if iface.network.prefixlen == 32:
        raise NetworkError(f"attach pod {pod_name}: {address_cidr} has no prefix length")
    host = host_veth_name(root, pod_name, bridge)
    mark = veth_mark(root, pod_name)
    mac = mac_for(iface.ip)
    gateway_cidr = f"{gateway}/{iface.network.prefixlen}"
    master = ensure_bridge(bridge, gateway_cidr, root)
    own_fd = netns_fd is None
    ns_fd = open_netns(pause_pid) if own_fd else netns_fd
    try:
        target, here = os.fstat(ns_fd), os.stat("/proc/self/ns/net")
        if (target.st_dev, target.st_ino) == (here.st_dev, here.st_ino):
            raise NetworkError(f"attach pod {pod_name}: pid {pause_pid} is in the host's "
                               f"network namespace, not a pod's")
        ipr = _host_ipr()
        for attempt in (1, 2):
            try:
                with _Step(f"create veth {host} on bridge {bridge} with peer {POD_IFNAME} "
                           f"({mac}) in the netns of pid {pause_pid}"):
                    ipr.link("add", ifname=host, kind="veth", master=master, state="up",
                             peer={"ifname": POD_IFNAME, "net_ns_fd": ns_fd, "address": mac})
                break
            except NetworkError as e:
                if not _is(e.__cause__, errno.EEXIST) or attempt == 2:
                    raise
                alias = link_alias(host)
                if alias is None:
                    raise NetworkError(f"attach pod {pod_name}: its network namespace already "
                                       f"has an {POD_IFNAME}") from e
                if alias != mark:
                    raise NetworkError(
                        f"attach pod {pod_name}: a link named {host} exists and was not made "
                        f"by nspod for this pod of root {os.path.normpath(root)}: remove it "
                        f"or give the pod another name") from e
                detach(host, root, pod_name)   # an earlier sandbox's: replace it
        try:
            # The kernel ignores IFLA_IFALIAS when it creates a link: marked right after. A
            # netd killed in between leaves an unmarked veth, which goes with pause's netns.
            with _Step(f"mark veth {host} as pod {pod_name}'s"):
                ipr.link("set", ifname=host, ifalias=mark)
            _configure_pod_side(ns_fd, pause_pid, iface, gateway)
        except BaseException:
            _delete_link(host, "veth")
            raise
    finally:
        if own_fd:
            os.close(ns_fd)
    return {"hostVeth": host, "podVeth": POD_IFNAME, "mac": mac, "ip": str(iface.ip),
            "prefixLength": iface.network.prefixlen, "gateway": str(gateway), "bridge": bridge}


SIOCGSKNS = 0x894C   # linux/sockios.h: an fd of the netns a socket belongs to


def _socket_netns_inode(fd):
    """The inode of the netns the socket `fd` was opened in."""
    ns = fcntl.ioctl(fd, SIOCGSKNS)
    try:
        return os.fstat(ns).st_ino
    finally:
        os.close(ns)


def _configure_pod_side(ns_fd, pause_pid, iface, gateway):
    """Everything inside the pod's netns, over a netlink socket opened there.

    A netlink socket belongs to the netns of the thread that opened it, and setns(2) moves
    only the calling thread. So this relies on pyroute2 opening its socket in this thread,
    synchronously, while we are in the pod's netns. That is made explicit rather than
    assumed: netd is single-threaded (asserted: another thread could be left behind in the
    host netns, or open our socket there), and the socket's own netns (SIOCGSKNS) is checked
    against the pod's before the first request. Opening it after setns (and setting our netns
    back right after) takes ~1 ms, where IPRoute(netns=...) forks a helper (~13 ms).
    """
    global _host_netns_fd
    _load_pyroute2()
    if threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        raise NetworkError(f"configure the netns of pid {pause_pid}: netd must be single-"
                           f"threaded (setns is per thread), {threading.active_count()} threads run")
    if _host_netns_fd is None:
        _host_netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    where = f"in the netns of pid {pause_pid}"
    pod_ns = os.fstat(ns_fd).st_ino
    syscalls.setns(ns_fd, CloneFlag.CLONE_NEWNET, f"/proc/{pause_pid}/ns/net")
    try:
        with _Step(f"open a netlink socket {where}"):
            pod = _IPRoute(groups=0)
        with pod:
            with _Step(f"check the netns of the netlink socket {where}"):
                opened_in = _socket_netns_inode(pod.fileno())
            if opened_in != pod_ns or threading.active_count() != 1:
                raise NetworkError(f"open a netlink socket {where}: it belongs to netns "
                                   f"{opened_in}, not the pod's {pod_ns}")
            with _Step(f"find {POD_IFNAME} {where}"):
                found = pod.link_lookup(ifname=POD_IFNAME)
            if not found:
                raise NetworkError(f"find {POD_IFNAME} {where}: it is not there")
            eth0 = found[0]
            with _Step(f"add address {iface} to {POD_IFNAME} {where}"):
                pod.addr("add", index=eth0, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            with _Step(f"set {POD_IFNAME} up {where}"):
                pod.link("set", index=eth0, state="up")
            with _Step(f"set lo up {where}"):
                pod.link("set", index=1, state="up")
            try:
                with _Step(f"add default route via {gateway} {where}"):
                    pod.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=eth0)
            except NetworkError as e:
                if not _is(e.__cause__, errno.EEXIST):
                    raise
    finally:
        try:
            syscalls.setns(_host_netns_fd, CloneFlag.CLONE_NEWNET, "/proc/self/ns/net (back)")
        except OSError as e:
            # Stuck in a pod's netns: this process must not do anything else.
            os.write(2, f"nspod: cannot return to the host netns: {e}\n".encode())
            os._exit(70)


def detach(host_veth, root, pod_name):
    """Delete the host side of a pod's veth (the peer goes with it) when it carries the pod's
    marker; 'already gone' is success, a link of that name that is not the pod's is left.

    Returns True when a link was deleted.
    """
    alias = link_alias(host_veth)
    if alias is None or alias != veth_mark(root, pod_name):
        return False
    return _delete_link(host_veth, "veth")


def veths_of(bridge, root):
    """{name: ifalias} of the ports of `bridge` that are host veths nspod made for `root`."""
    prefix = netclient.veth_mark_prefix(root)
    found = {}
    for port in bridge_ports(bridge):
        alias = link_alias(port) or ""
        if is_host_veth_name(port) and alias.startswith(prefix):
            found[port] = alias
    return found


def delete_veth_marked(name, alias):
    """Delete a host veth if it still carries `alias` (gc, for pods it knows only by marker)."""
    if link_alias(name) != alias:
        return False
    return _delete_link(name, "veth")


# --- /run/netns names ---------------------------------------------------------------------------


def _nsfs_dev():
    return os.stat("/proc/self/ns/net").st_dev


def netns_inode_at(path):
    """The inode of the netns bind-mounted at `path` (its top mount); None when `path` holds
    no netns (absent, a plain file, a symlink: never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NetworkError(f"stat {path}: {e.strerror} (errno {e.errno})") from e
    return st.st_ino if st.st_dev == _nsfs_dev() else None


def netns_attach(root, pod_name, pause_pid, netns_fd=None, replace=()):
    """Bind-mount pause's netns at /run/netns/<the pod's name>; returns the path.

    Already bound to this netns: nothing to do. Bound to a netns in `replace` (an earlier
    sandbox of this pod, as the pod's records say): replaced. Anything else at that path (a
    user's `ip netns add`, another pod's, a file, a symlink) is refused, never replaced or
    removed. With `netns_fd` the mount is made from that fd, so it names exactly the netns the
    veth went into even if the pid has been reused since.
    """
    path = netns_path(root, pod_name)
    try:
        if not os.path.isdir(NETNS_DIR):
            os.makedirs(NETNS_DIR, exist_ok=True)
            os.chmod(NETNS_DIR, 0o755)      # as iproute2 makes it, whatever our umask
    except OSError as e:
        raise NetworkError(f"netns for pod {pod_name}: mkdir {NETNS_DIR}: {e.strerror}") from e
    if netns_fd is not None:
        wanted = os.fstat(netns_fd).st_ino
        source = f"/proc/self/fd/{netns_fd}"
    else:
        source = f"/proc/{int(pause_pid)}/ns/net"
        try:
            wanted = os.stat(source).st_ino
        except OSError as e:
            raise NetworkError(f"netns for pod {pod_name}: stat {source}: {e.strerror}") from e
    current = netns_inode_at(path)
    if current == wanted:
        return path
    if current is not None and current in replace:
        netns_detach(root, pod_name, [current])
    elif os.path.lexists(path):
        raise NetworkError(
            f"netns for pod {pod_name}: {path} exists and is not this pod's network namespace "
            f"(nspod root {os.path.normpath(root)}): remove it or give the pod another name")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o444)
    except OSError as e:
        raise NetworkError(f"netns for pod {pod_name}: create {path}: {e.strerror} "
                           f"(errno {e.errno}): it is not this pod's") from e
    try:
        # Onto the file just made, through its fd: a name swapped for a symlink meanwhile
        # is not followed.
        syscalls.trace(f"bind netns {wanted} at {path} (fd {fd})")
        syscalls.mount(source, f"/proc/self/fd/{fd}", None, MountFlag.MS_BIND)
    except OSError as e:
        _unlink(path)
        raise NetworkError(f"netns for pod {pod_name}: bind {source} at {path}: "
                           f"{e.strerror} (errno {e.errno})") from e
    finally:
        os.close(fd)
    return path


def netns_detach(root, pod_name, inodes):
    """Unmount and remove /run/netns/<the pod's name> when it holds one of the netns `inodes`
    (the pod's, as its records say); True when something was removed.

    What holds another netns, or is not a netns at all, is left where it is: a foreign file
    is never removed, and the file under the mount is removed only once the pod's own bind
    mount has been taken off it.
    """
    path = netns_path(root, pod_name)
    inodes = {int(i) for i in inodes or ()}
    found = False
    for _ in range(16):   # stacked binds of the pod's netns: peel them all
        current = netns_inode_at(path)
        if current is None or current not in inodes:
            break
        try:
            syscalls.umount2(path, MNT_DETACH)
            found = True
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                break
            raise NetworkError(f"unmount {path}: {e.strerror} (errno {e.errno})") from e
    if not found or netns_inode_at(path) is not None:
        return found       # not the pod's, or somebody else's netns is bound there too
    _unlink(path)
    return True


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise NetworkError(f"remove {path}: {e.strerror} (errno {e.errno})") from e
