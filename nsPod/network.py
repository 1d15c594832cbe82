"""The pod network on the host: bridge, veth pairs, addresses, routes, /run/netns names.

The only module that imports pyroute2, and it does so lazily, on the first netlink call:
`import pyroute2` costs 200-400 ms and ~25 MB, so the per-pod monitor and the CLI never load
it. They ask nsPod.netd (a warm helper process, through nsPod.netclient) to do the netlink
work; netd calls the functions below. netns_attach/netns_detach are plain mount calls and
can be used without loading pyroute2 (gc does, when no netd is running).

One pod, as attach() leaves it:

    host netns                                     pod netns (pause's)
    bridge <name>  <gateway>/<prefix>, up          lo   up
      └─ nsp<12 hex>  (host side of the veth) ════ eth0 <ip>/<prefix>, up, MAC 02:6e:<ip>
                                                   default via <gateway>

MACs encode the IP (02:6e + its four bytes, a locally administered unicast address), so a
reused address comes with the MAC that other pods' ARP caches already hold; the bridge gets
its gateway's MAC explicitly, so it never changes as ports come and go.
"""
import errno
import hashlib
import ipaddress
import os
import sys

from nsPod.errors import NetworkError
from nsPod import syscalls
from nsPod.syscalls import MNT_DETACH, CloneFlag, MountFlag

NETNS_DIR = "/run/netns"
NETNS_PREFIX = "nspod-"
POD_IFNAME = "eth0"
HOST_VETH_PREFIX = "nsp"
SYS_NET = "/sys/class/net"
OWNER_PREFIX = "nspod root="

_IPRoute = None
_NetlinkError = None
_host = None             # the host netns's netlink socket, kept open (netd reuses it)
_host_netns_fd = None    # our own netns, to come back to after configuring a pod's
_bridges = {}            # bridge name -> (ifindex, gateway cidr) already ensured


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


# --- names -----------------------------------------------------------------------------------


def host_veth_name(pod_name, bridge):
    """nsp + 12 hex digits of a hash of bridge and pod: 15 characters (IFNAMSIZ - 1)."""
    digest = hashlib.sha256(f"{bridge}/{pod_name}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:12]


def is_host_veth_name(name):
    return (len(name) == 15 and name.startswith(HOST_VETH_PREFIX)
            and all(c in "0123456789abcdef" for c in name[3:]))


def mac_for(address):
    """02:6e:<the four bytes of the IPv4 address>."""
    packed = ipaddress.IPv4Address(str(address).split("/")[0]).packed
    return "02:6e:" + ":".join(f"{b:02x}" for b in packed)


def netns_path(pod_name):
    """/run/netns/nspod-<pod>; a pod name too long for a file name is cut and hashed."""
    name = NETNS_PREFIX + pod_name
    if len(name.encode()) > 255:
        digest = hashlib.sha256(pod_name.encode()).hexdigest()[:16]
        name = f"{name[:238]}-{digest}"
    return os.path.join(NETNS_DIR, name)


def link_exists(name):
    return os.path.exists(os.path.join(SYS_NET, name))


def is_bridge(name):
    return os.path.isdir(os.path.join(SYS_NET, name, "bridge"))


def bridge_ports(name):
    try:
        return sorted(os.listdir(os.path.join(SYS_NET, name, "brif")))
    except FileNotFoundError:
        return []


def bridge_owner(name):
    """The state root recorded in the bridge's ifalias by ensure_bridge, or None."""
    try:
        with open(os.path.join(SYS_NET, name, "ifalias")) as f:
            alias = f.read().strip()
    except OSError:
        return None
    return alias[len(OWNER_PREFIX):] if alias.startswith(OWNER_PREFIX) else None


def _ifindex(name):
    try:
        with open(os.path.join(SYS_NET, name, "ifindex")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


# --- bridge ------------------------------------------------------------------------------------


def ensure_bridge(name, gateway_cidr, owner=None):
    """The bridge exists, has the gateway address and is up; returns its ifindex.

    Concurrent callers are fine (EEXIST is success). A link of that name that is not a
    bridge is an error. `owner` (a state root) is recorded in the bridge's ifalias.
    """
    gateway = ipaddress.IPv4Interface(gateway_cidr)
    index = _ifindex(name)
    cached = _bridges.get(name)
    if index is not None and cached == (index, str(gateway)):
        return index
    ipr = _host_ipr()
    if index is None:
        try:
            with _Step(f"create bridge {name}"):
                ipr.link("add", ifname=name, kind="bridge", address=mac_for(gateway.ip))
        except NetworkError as e:
            if not _is(e.__cause__, errno.EEXIST):
                raise
        index = _ifindex(name)
        if index is None:
            raise NetworkError(f"create bridge {name}: it vanished right after creation")
    if not is_bridge(name):
        raise NetworkError(f"bridge {name}: a link of that name exists and is not a bridge "
                           f"(choose another with --bridge)")
    try:
        with _Step(f"add address {gateway} to bridge {name}"):
            ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
    except NetworkError as e:
        if not _is(e.__cause__, errno.EEXIST):
            raise
    with _Step(f"set bridge {name} up"):
        ipr.link("set", index=index, state="up")
    if owner is not None and bridge_owner(name) != owner:
        with _Step(f"record owner {owner} on bridge {name}"):
            ipr.link("set", index=index, ifalias=OWNER_PREFIX + owner)
    _bridges[name] = (index, str(gateway))
    return index


def remove_bridge_if_unused(name):
    """Delete the bridge when no link is its port; True when it was deleted."""
    _bridges.pop(name, None)
    if not is_bridge(name) or bridge_ports(name):
        return False
    return _delete_link(name, "bridge")


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


def attach(pod_name, pause_pid, address_cidr, gateway, bridge, netns_fd=None, owner=None):
    """Plug pause's network namespace into the bridge; returns what was made.

    veth created in one netlink request with its peer already named eth0 inside the pod's
    netns, MAC set, host side enslaved to the bridge and up; then, inside the pod's netns:
    eth0's address, eth0 and lo up, the default route via the gateway. A host-side veth left
    by an earlier sandbox of the same pod is replaced. On failure nothing stays behind.
    """
    iface = ipaddress.IPv4Interface(address_cidr)
    if iface.network.prefixlen == 32:
        raise NetworkError(f"attach pod {pod_name}: {address_cidr} has no prefix length")
    host = host_veth_name(pod_name, bridge)
    mac = mac_for(iface.ip)
    gateway_cidr = f"{gateway}/{iface.network.prefixlen}"
    master = ensure_bridge(bridge, gateway_cidr, owner)
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
                if not link_exists(host):
                    raise NetworkError(f"attach pod {pod_name}: its network namespace already "
                                       f"has an {POD_IFNAME}") from e
                detach(host)   # a leftover of an earlier sandbox of this pod: replace it
        try:
            _configure_pod_side(ns_fd, pause_pid, iface, gateway)
        except BaseException:
            detach(host)
            raise
    finally:
        if own_fd:
            os.close(ns_fd)
    return {"hostVeth": host, "podVeth": POD_IFNAME, "mac": mac, "ip": str(iface.ip),
            "prefixLength": iface.network.prefixlen, "gateway": str(gateway), "bridge": bridge}


def _configure_pod_side(ns_fd, pause_pid, iface, gateway):
    """Everything inside the pod's netns, over a netlink socket opened there.

    A netlink socket belongs to the netns it was opened in; opening it after setns (and
    setting our netns back right after) takes ~1 ms, where IPRoute(netns=...) forks a helper
    (~13 ms). setns(CLONE_NEWNET) is allowed in a multithreaded process. Every request is
    still made from inside the window, so nothing depends on when pyroute2 opens its socket.
    """
    global _host_netns_fd
    _load_pyroute2()
    if _host_netns_fd is None:
        _host_netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    where = f"in the netns of pid {pause_pid}"
    syscalls.setns(ns_fd, CloneFlag.CLONE_NEWNET, f"/proc/{pause_pid}/ns/net")
    try:
        with _Step(f"open a netlink socket {where}"):
            pod = _IPRoute(groups=0)
        with pod:
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


def detach(host_veth):
    """Delete the host side of a pod's veth (the peer goes with it); 'already gone' is success.

    Returns True when a link was deleted.
    """
    if not link_exists(host_veth):
        return False
    return _delete_link(host_veth, "veth")


def netns_attach(pod_name, pause_pid, netns_fd=None):
    """Bind-mount pause's netns at /run/netns/nspod-<pod>; returns the path.

    A stale mount at that path (an earlier sandbox) is replaced. With `netns_fd` the mount is
    made from that fd, so it names exactly the netns the veth went into even if the pid has
    been reused since.
    """
    path = netns_path(pod_name)
    try:
        if not os.path.isdir(NETNS_DIR):
            os.makedirs(NETNS_DIR, exist_ok=True)
            os.chmod(NETNS_DIR, 0o755)      # as iproute2 makes it, whatever our umask
    except OSError as e:
        raise NetworkError(f"netns for pod {pod_name}: mkdir {NETNS_DIR}: {e.strerror}") from e
    _unmount_all(path)
    source = f"/proc/self/fd/{netns_fd}" if netns_fd is not None else f"/proc/{int(pause_pid)}/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        os.close(fd)
        syscalls.mount(source, path, None, MountFlag.MS_BIND)
    except OSError as e:
        _unlink(path)
        raise NetworkError(f"netns for pod {pod_name}: bind {source} at {path}: "
                           f"{e.strerror} (errno {e.errno})") from e
    return path


def netns_detach(pod_name):
    """Unmount and remove /run/netns/nspod-<pod>; True when something was there."""
    path = netns_path(pod_name)
    found = _unmount_all(path)
    return _unlink(path) or found


def _unmount_all(path):
    found = False
    for _ in range(16):   # stacked binds: peel them all
        try:
            syscalls.umount2(path, MNT_DETACH)
            found = True
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return found
            raise NetworkError(f"unmount {path}: {e.strerror} (errno {e.errno})") from e
    return found


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise NetworkError(f"remove {path}: {e.strerror} (errno {e.errno})") from e
