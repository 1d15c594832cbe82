"""hostPort: a pod's container port published on the host's addresses.

Done by a userspace TCP forwarder living in the pod's monitor, not by nftables DNAT:
DNAT toward a pod does not apply to connections made to 127.0.0.1 without turning on
route_localnet, and it would mean changing the host's firewall, which nspod never does by
itself. A socket bound by the monitor also makes "port already taken" the kernel's own
answer (EADDRINUSE), and the port goes away with the pod whatever way the monitor ends.
The cost is one copy of each byte through the monitor: fine for a single host's pods.

The monitor is single-threaded and a remote client is hostile: every socket here is
non-blocking, the connect to the pod included, each direction of a connection holds at most
BUFFER bytes (a side is not read while the other side's buffer is full, so a client that never
reads stalls only its own connection), and a forwarder holds at most MAX_CONNECTIONS.
"""
import errno
import selectors
import socket

from nsPod.errors import NspodError

BUFFER = 65536          # bytes held per direction of one connection
MAX_CONNECTIONS = 256   # per hostPort; more are accepted and closed at once


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

    Driven by the monitor's selector: it registers its sockets with itself as their data;
    on_ready() is called with whichever of its sockets is ready.
    """

    def __init__(self, selector, listener, pod_ip, container_port):
        self.selector = selector
        self.listener = listener
        self.target = (pod_ip, container_port)
        self.relays = {}   # socket -> the _Relay it belongs to
        selector.register(listener, selectors.EVENT_READ, self)

    @property
    def connections(self):
        return len(set(self.relays.values()))

    def on_ready(self, sock):
        if sock is self.listener:
            self._accept()
            return
        relay = self.relays.get(sock)
        if relay is not None:
            relay.pump()

    def _accept(self):
        for _ in range(16):  # a few per wakeup: a flood of connects cannot starve the rest
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # EAGAIN, or the client reset before we took it
            if self.connections >= MAX_CONNECTIONS:
                client.close()
                continue
            client.setblocking(False)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            upstream.setblocking(False)
            err = upstream.connect_ex(self.target)
            if err not in (0, errno.EINPROGRESS):
                # Nothing listens in the pod (or no route): the client sees the connection end.
                client.close()
                upstream.close()
                continue
            relay = _Relay(self, client, upstream, connecting=err != 0)
            self.relays[client] = relay
            self.relays[upstream] = relay
            relay.pump()

    def _forget(self, relay):
        for s in (relay.client, relay.upstream):
            self.relays.pop(s, None)
            relay.set_interest(s, 0)
            s.close()

    def close(self):
        for relay in set(self.relays.values()):
            self._forget(relay)
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()


class _Relay:
    """One client connection and its upstream: two bounded buffers, every call non-blocking."""

    def __init__(self, forwarder, client, upstream, connecting):
        self.forwarder = forwarder
        self.client = client
        self.upstream = upstream
        self.connecting = connecting
        self.pending = {client: bytearray(), upstream: bytearray()}  # bytes to send TO it
        self.eof = {client: False, upstream: False}    # it will send no more
        self.shut = {client: False, upstream: False}   # we sent it our FIN
        self.interest = {client: 0, upstream: 0}

    def other(self, sock):
        return self.upstream if sock is self.client else self.client

    def pump(self):
        """Move what can move now without blocking, then wait for what can move next."""
        try:
            if self.connecting:
                err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect")
                try:
                    self.upstream.getpeername()
                    self.connecting = False
                except OSError:
                    pass  # still connecting
            if not self.connecting:
                for sock in (self.client, self.upstream):
                    self._flush(sock)
                    self._read(sock)
                    self._flush(self.other(sock))
        except OSError:
            self.forwarder._forget(self)
            return
        if all(self.eof.values()) and not any(self.pending.values()):
            self.forwarder._forget(self)
            return
        for sock in (self.client, self.upstream):
            events = 0
            if self.connecting:
                events = selectors.EVENT_WRITE if sock is self.upstream else 0
            else:
                other = self.other(sock)
                if not self.eof[sock] and len(self.pending[other]) < BUFFER:
                    events |= selectors.EVENT_READ
                if self.pending[sock]:
                    events |= selectors.EVENT_WRITE
            self.set_interest(sock, events)

    def _read(self, sock):
        other = self.other(sock)
        buffer = self.pending[other]
        while not self.eof[sock] and len(buffer) < BUFFER:
            try:
                data = sock.recv(BUFFER - len(buffer))
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self.eof[sock] = True
                return
            buffer += data

    def _flush(self, sock):
        buffer = self.pending[sock]
        while buffer:
            try:
                sent = sock.send(buffer)
            except (BlockingIOError, InterruptedError):
                return
            del buffer[:sent]
        source = self.other(sock)
        if self.eof[source] and not self.shut[sock]:
            # The other side is done sending and all it sent is delivered: pass its FIN on.
            self.shut[sock] = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def set_interest(self, sock, events):
        old = self.interest[sock]
        if events == old:
            return
        selector = self.forwarder.selector
        try:
            if old == 0:
                selector.register(sock, events, self.forwarder)
            elif events == 0:
                selector.unregister(sock)
            else:
                selector.modify(sock, events, self.forwarder)
        except (KeyError, ValueError, OSError):
            pass
        self.interest[sock] = events
