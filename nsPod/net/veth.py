"""One pod plugged into the bridge: its veth pair, eth0's address, MAC and default route,
made in pause's network namespace through net/links.py's netlink socket (netd calls it).
"""
import errno
import fcntl
import ipaddress
import os
import threading

from nsPod.errors import NetworkError
from nsPod.net import client as netclient
from nsPod.kernel import syscalls
from nsPod.kernel.syscalls import CloneFlag
from nsPod.net.links import (POD_IFNAME, _delete_link, _host_ipr, _is, _load_pyroute2,
                             _new_socket, _Step, bridge_ports, ensure_bridge, host_veth_name,
                             is_host_veth_name, link_alias, mac_for, veth_mark)

_host_netns_fd = None    # our own netns, to come back to after configuring a pod's


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
            pod = _new_socket()
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
