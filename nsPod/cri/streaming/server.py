"""The CRI streaming server: the URLs Exec, Attach and PortForward answer with, and the
HTTP server behind them (one thread per connection, a bounded number of them).

A URL is http://HOST:PORT/{exec,attach,portforward}/TOKEN, TOKEN from secrets.token_urlsafe:
single use, gone after TOKEN_TTL seconds (the kubelet's request cache: one minute). Any
other request -- no token, a used, expired or made-up one, another path -- gets 404 and
nothing else. What a client sends is never logged.
"""
import logging
import secrets
import socket
import threading
import time

from nsPod.errors import InputError, NspodError
from nsPod.cri.streaming import httpreq, portforward, remotecommand, websocket
from nsPod.cri.streaming.buffers import Closed, SocketReader

log = logging.getLogger("nspod.cri.streaming")
TOKEN_TTL = 60.0
MAX_TOKENS = 1000


class StreamingBusy(NspodError):
    """Too many URLs handed out and not yet used."""


class Tokens:
    def __init__(self, ttl=TOKEN_TTL, limit=MAX_TOKENS):
        self.ttl, self.limit = ttl, limit
        self._entries = {}
        self._lock = threading.Lock()

    def issue(self, kind, request):
        now = time.monotonic()
        with self._lock:
            for token in [t for t, (_, _, dies) in self._entries.items() if dies <= now]:
                del self._entries[token]
            if len(self._entries) >= self.limit:
                raise StreamingBusy(f"{self.limit} streaming URLs are waiting to be used")
            token = secrets.token_urlsafe(32)
            self._entries[token] = (kind, request, now + self.ttl)
            return token

    def take(self, kind, token):
        """The request of a live token of this kind, used up; None otherwise."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None or entry[0] != kind:
                return None
            del self._entries[token]
        return entry[1] if entry[2] > time.monotonic() else None


def _check_names(pod_name, container_name=None):
    from nsPod.kernel import paths
    paths.check_pod_name(pod_name)
    if container_name is not None:
        paths.check_container_name(container_name)


def _flags(tty, stdin, stdout, stderr):
    flags = {"tty": bool(tty), "stdin": bool(stdin), "stdout": bool(stdout),
             "stderr": bool(stderr) and not tty}   # a terminal has no separate stderr
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise InputError("stream: at least one of stdin, stdout and stderr is needed")
    return flags


class StreamingServer:
    def __init__(self, state_root, host="127.0.0.1", port=0, max_sessions=32,
                 handshake_timeout=10.0, write_timeout=60.0, idle_timeout=4 * 3600.0,
                 token_ttl=TOKEN_TTL):
        self.state_root, self.host, self.port = state_root, host, port
        self.handshake_timeout, self.write_timeout = handshake_timeout, write_timeout
        self.idle_timeout = idle_timeout
        self.tokens = Tokens(token_ttl)
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._live = set()
        self._live_lock = threading.Lock()
        self._listener = None
        self._acceptor = None
        self._stopping = threading.Event()

    # --- the URLs ---------------------------------------------------------------------------

    def _url(self, kind, request):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{kind}/{self.tokens.issue(kind, request)}"

    def exec_url(self, pod_name, container_name, cmd, tty, stdin, stdout, stderr):
        _check_names(pod_name, container_name)
        if not cmd or not all(isinstance(a, str) and "\0" not in a for a in cmd):
            raise InputError("cmd: a non-empty list of strings without NUL is needed")
        return self._url("exec", {"mode": "exec", "pod": pod_name,
                                  "container": container_name, "cmd": list(cmd),
                                  **_flags(tty, stdin, stdout, stderr)})

    def attach_url(self, pod_name, container_name, tty, stdin, stdout, stderr):
        _check_names(pod_name, container_name)
        return self._url("attach", {"mode": "attach", "pod": pod_name,
                                    "container": container_name,
                                    **_flags(tty, stdin, stdout, stderr)})

    def port_forward_url(self, pod_name, ports):
        _check_names(pod_name)
        if not all(type(p) is int and 0 < p < 65536 for p in ports):
            raise InputError("port: ports are integers from 1 to 65535")
        return self._url("portforward", {"pod": pod_name, "ports": list(ports)})

    # --- serving ----------------------------------------------------------------------------

    def start(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(128)
        except OSError as e:
            listener.close()
            raise NspodError(f"streaming server: bind {self.host}:{self.port}: "
                             f"{e.strerror or e}") from None
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="streaming-accept",
                                          daemon=True)
        self._acceptor.start()

    def stop(self):
        """Stop accepting, hang up on every session (their processes end) and wait a little
        for them."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
        with self._live_lock:
            live = list(self._live)
        for sock, _ in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in live:
            thread.join(10)

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)   # EMFILE and the like: do not spin
                continue
            if not self._slots.acquire(blocking=False):
                sock.close()       # over the session limit: dropped before a byte is read
                continue
            thread = threading.Thread(target=self._connection, args=(sock,), daemon=True)
            with self._live_lock:
                self._live.add((sock, thread))
            thread.start()

    def _connection(self, sock):
        try:
            self._serve(sock)
        except (Closed, OSError, websocket.ProtocolError):
            pass   # the client's doing: its session ends, nobody else's
        except Exception as e:   # a bug of ours: one line, not the client's text
            log.error("streaming: session failed: %s: %s", type(e).__name__, e)
        finally:
            with self._live_lock:
                self._live.discard((sock, threading.current_thread()))
            try:   # wakes a reader thread still in recv before its fd is closed
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            self._slots.release()

    def _serve(self, sock):
        try:
            request, rest = httpreq.read_request(sock, time.monotonic() +
                                                 self.handshake_timeout)
        except httpreq.BadRequest as e:
            if e.status:
                sock.sendall(httpreq.response(e.status, body=f"{e}\n".encode()))
            return
        parts = request.path.split("/")
        entry = None
        if len(parts) == 3 and parts[0] == "" and request.method in ("GET", "POST"):
            entry = self.tokens.take(parts[1], parts[2])
        if entry is None:
            sock.sendall(httpreq.response(404, body=b"404 page not found\n"))
            return
        sock.settimeout(self.write_timeout)
        reader = SocketReader(sock, rest, self.idle_timeout)
        upgrade = request.tokens("upgrade")
        if "upgrade" not in request.tokens("connection"):
            upgrade = []
        if "websocket" in upgrade:
            self._websocket(sock, reader, request, parts[1], entry)
        elif "spdy/3.1" in upgrade:
            self._spdy(sock, reader, request, parts[1], entry)
        else:
            sock.sendall(httpreq.response(400, body=b"an Upgrade to websocket or SPDY/3.1 "
                                                    b"is needed\n"))

    def _websocket(self, sock, reader, request, kind, entry):
        offered = request.listed("sec-websocket-protocol")
        supported = ((portforward.TUNNEL_PROTOCOL,) if kind == "portforward"
                     else remotecommand.WS_PROTOCOLS)
        chosen = next((p for p in offered if p in supported), None)
        try:
            accept = websocket.accept_key(request.header("sec-websocket-key"))
        except websocket.ProtocolError as e:
            sock.sendall(httpreq.response(400, body=f"{e}\n".encode()))
            return
        if chosen is None or request.header("sec-websocket-version") != "13":
            sock.sendall(httpreq.response(
                400, [("Sec-WebSocket-Version", "13")],
                f"subprotocol: one of {', '.join(supported)} is needed\n".encode()))
            return
        sock.sendall(httpreq.response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Accept", accept),
                                            ("Sec-WebSocket-Protocol", chosen)]))
        ws = websocket.Connection(sock, reader)
        if kind == "portforward":
            tunnel = _Tunnel(ws)
            self._port_forward(sock, tunnel.send, tunnel.recv_exact, entry)
            ws.close(websocket.NORMAL)
            return
        channels = remotecommand.WebSocketChannels(sock, ws, chosen, entry)
        remotecommand.run(channels, self._runner_spec(entry), entry, log)

    def _spdy(self, sock, reader, request, kind, entry):
        offered = request.listed("x-stream-protocol-version")
        supported = ((portforward.PROTOCOL,) if kind == "portforward"
                     else remotecommand.SPDY_PROTOCOLS)
        chosen = next((p for p in offered if p in supported), None)
        if chosen is None:
            sock.sendall(httpreq.response(
                403, [("X-Accepted-Stream-Protocol-Versions", p) for p in supported],
                b"unable to upgrade: unable to negotiate protocol\n"))
            return
        sock.sendall(httpreq.response(101, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                            ("X-Stream-Protocol-Version", chosen)]))
        if kind == "portforward":
            self._port_forward(sock, sock.sendall, reader.recv_exact, entry)
            remotecommand.graceful_close(sock, None)
            return
        channels = remotecommand.SpdyChannels(sock, reader, chosen, entry)
        remotecommand.run(channels, self._runner_spec(entry), entry, log)

    def _runner_spec(self, entry):
        spec = {k: entry[k] for k in ("mode", "pod", "container", "tty", "stdin")}
        spec.update(root=self.state_root, cmd=entry.get("cmd", []))
        return spec

    def _port_forward(self, sock, send, recv_exact, entry):
        session = portforward.PortForwardSession(send, recv_exact, self.state_root,
                                                 entry["pod"], entry["ports"], log)
        session.serve()


class _Tunnel:
    """SPDY's byte stream in WebSocket binary messages (client-go's TunnelingConnection)."""

    def __init__(self, ws):
        self.ws = ws
        self._buffer = bytearray()

    def send(self, data):
        self.ws.send(websocket.BINARY, data)

    def recv_exact(self, n):
        while len(self._buffer) < n:
            opcode, message = self.ws.recv_message()
            if opcode != websocket.BINARY:
                raise websocket.ProtocolError("a text message in a SPDY tunnel")
            self._buffer += message
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out
