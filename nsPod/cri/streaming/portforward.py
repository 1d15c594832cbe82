"""Port forwarding as the kubelet's streaming server does it (protocol portforward.k8s.io
over SPDY/3.1, k8s.io/kubelet/pkg/cri/streaming/portforward/httpstream.go), also tunneled
in WebSocket binary messages (subprotocol SPDY/3.1+portforward.k8s.io, client-go's
tunneling dialer: crictl --transport websocket).

For each forwarded connection the client opens two streams with the same requestID and
port headers: "error" (we write why a connection failed, then FIN) and "data" (the bytes).
The pod end is a socket made in the pod's network namespace (commands.dial).
"""
import socket
import threading

from nsPod.cri.streaming import spdy
from nsPod.cri.streaming.buffers import Closed
from nsPod.cri.streaming.commands import DialError, dial

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PROTOCOL
MAX_PAIRS = 32


class PortForwardSession:
    def __init__(self, send_bytes, recv_exact, state_root, pod_name, ports, log):
        self.state_root, self.pod_name, self.log = state_root, pod_name, log
        self.ports = set(ports)
        self.pairs = {}
        self.lock = threading.Lock()
        self.workers = []
        self.conn = spdy.Connection(send_bytes, recv_exact, self._on_stream,
                                    max_streams=2 * MAX_PAIRS)

    def serve(self):
        """Until the client goes; each forwarded connection runs in its own thread."""
        try:
            self.conn.serve()
        except (Closed, spdy.SpdyError, OSError):
            pass
        finally:
            self.conn.goaway()
            for worker in self.workers:
                worker.join(5)

    def _on_stream(self, stream):
        text, kind = stream.header("port"), stream.header("streamtype")
        if not text.isdigit() or not 0 < int(text) < 65536 or kind not in ("error", "data"):
            return False
        port = int(text)
        if self.ports and port not in self.ports:
            return False
        request = stream.header("requestid") or \
            str(stream.id if kind == "error" else stream.id - 2)
        with self.lock:
            pair = self.pairs.get(request)
            if pair is None:
                if len(self.pairs) >= MAX_PAIRS:
                    return False
                pair = self.pairs[request] = {}
            if kind in pair:
                return False
            pair[kind] = stream
            complete = len(pair) == 2
        if complete:
            worker = threading.Thread(target=self._forward, args=(request, pair, port),
                                      daemon=True)
            self.workers = [w for w in self.workers if w.is_alive()] + [worker]
            worker.start()
        return True

    def _forward(self, request, pair, port):
        data, error = pair["data"], pair["error"]
        try:
            try:
                sock = dial(self.state_root, self.pod_name, port)
            except DialError as e:
                error.write(f"error forwarding port {port} to pod {self.pod_name}: {e}"
                            .encode())
                error.close()
                data.reset()
                return
            with sock:
                _splice(sock, data, self.conn)
            error.close()
        except OSError:
            pass  # the client went
        finally:
            with self.lock:
                self.pairs.pop(request, None)
            self.conn.forget(data)
            self.conn.forget(error)


def _splice(sock, stream, conn):
    """Both directions until the pod's end closes and the client resets or closes its own."""
    def client_to_pod():
        try:
            while True:
                chunk = stream.read()
                if not chunk:
                    break
                sock.sendall(chunk)
            # A reset, or the connection gone, ends both directions; a FIN only this one.
            gone = stream.peer_reset or conn.closed.is_set()
            sock.shutdown(socket.SHUT_RDWR if gone else socket.SHUT_WR)
        except OSError:
            pass

    upstream = threading.Thread(target=client_to_pod, daemon=True)
    upstream.start()
    try:
        while not conn.closed.is_set() and not stream.peer_reset:
            chunk = sock.recv(32 << 10)
            if not chunk:
                break
            stream.write(chunk)
        stream.close()
    except OSError:
        pass
    upstream.join()
