"""hostPort: a pod's container port published on the host's addresses.

Done by a userspace TCP forwarder living in the pod's monitor, not by nftables DNAT:
DNAT toward a pod does not apply to connections made to 127.0.0.1 without turning on
route_localnet, and it would mean changing the host's firewall, which nspod never does by
itself. A socket bound by the monitor also makes "port already taken" the kernel's own
answer (EADDRINUSE), and the port goes away with the pod whatever way the monitor ends.
The cost is one copy of each byte through the monitor: fine for a single host's pods.
"""
import errno
import socket

from nsPod.errors import NspodError

BUFFER = 65536


class PortTaken(NspodError):
    pass


def bind(host_port, host_ip=""):
    """A listening socket on the host's addresses (all of them, as the kubelet's default)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host_ip, host_port))
        sock.listen(64)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortTaken(f"hostPort {host_port}: already in use on this host") from None
        raise NspodError(f"hostPort {host_port}: bind: {e.strerror}") from e
    sock.setblocking(False)
    return sock


def check_free(host_ports):
    """Admission: every hostPort can be bound now (the monitor binds them for real)."""
    for port in host_ports:
        bind(port).close()


class Forwarder:
    """Accepts on a host port and relays each connection to pod_ip:container_port.

    Driven by the monitor's selector: register() hands it the listening socket; on_ready()
    is called with whichever of its sockets is readable.
    """

    def __init__(self, selector, listener, pod_ip, container_port):
        self.selector = selector
        self.listener = listener
        self.target = (pod_ip, container_port)
        self.peers = {}   # socket -> the socket its data goes to
        selector.register(listener, 1, self)

    def on_ready(self, sock):
        if sock is self.listener:
            self._accept()
        else:
            self._relay(sock)

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()  # nothing listens in the pod: the client sees the connection end
            return
        for s in (client, upstream):
            s.setblocking(False)
            self.selector.register(s, 1, self)
        self.peers[client] = upstream
        self.peers[upstream] = client

    def _relay(self, sock):
        other = self.peers.get(sock)
        if other is None:
            return
        try:
            data = sock.recv(BUFFER)
            if data:
                # Small relays: a blocking send keeps ordering simple; a peer that stops
                # reading stalls only until its socket buffer frees.
                other.setblocking(True)
                other.sendall(data)
                other.setblocking(False)
                return
        except OSError:
            pass
        self._close(sock)

    def _close(self, sock):
        other = self.peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self.peers.pop(s, None)
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def close(self):
        for s in list(self.peers):
            self._close(s)
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()
