"""Exec and attach over either transport Kubernetes' clients use, as the kubelet's streaming
server serves them (k8s.io/kubelet/pkg/cri/streaming/remotecommand):

- WebSocket, subprotocol v5.channel.k8s.io (client-go's WebSocket executor), v4 or
  channel.k8s.io: each binary message is a channel byte (0 stdin, 1 stdout, 2 stderr,
  3 error, 4 resize) and data; v5 adds 255 + a channel: the client closed that stream.
- SPDY/3.1, X-Stream-Protocol-Version v4/v3/v2.channel.k8s.io or channel.k8s.io (crictl's
  default): one client-opened stream per channel, named by its streamType header.

The error channel carries the result once: v4/v5, a metav1.Status JSON (exit code in
details.causes[reason=ExitCode]); older versions, the error's text on failure only.
"""
import json
import socket
import threading
import time

from nsPod.errors import NspodError
from nsPod.cri.streaming import spdy, websocket
from nsPod.cri.streaming.attach import AttachSession
from nsPod.cri.streaming.buffers import Closed, Pipe
from nsPod.cri.streaming.commands import Command

WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE_STREAM = 0, 1, 2, 3, 4, 255
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                "resize": RESIZE}
STREAM_CREATION_TIMEOUT = 30.0   # the kubelet's default
CHUNK = 32 << 10


def status_document(result):
    """The metav1.Status for a runner's result."""
    if "error" in result:
        msg = str(result["error"])
        return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {msg}",
                "reason": "InternalError", "details": {"causes": [{"message": msg}]},
                "code": 500}
    code = result.get("exit", 0)
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    code = code if type(code) is int and 0 < code < 256 else 255
    return {"metadata": {}, "status": "Failure",
            "message": result.get("message") or
            f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def graceful_close(sock, reader_thread, timeout=2.0):
    """Our side is done: half-close, let the client read what was sent and hang up (a close
    with unread input would reset the connection and lose the tail of the output)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    if reader_thread is not None:
        reader_thread.join(timeout)


class WebSocketChannels:
    def __init__(self, sock, ws, protocol, options):
        self.sock, self.ws, self.protocol = sock, ws, protocol
        self.stdin = Pipe() if options["stdin"] else None
        self.resize = Pipe() if options["tty"] else None
        self.gone = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self):
        self._reader.start()
        return True

    def _read(self):
        inputs = {STDIN: self.stdin, RESIZE: self.resize}
        try:
            while True:
                opcode, message = self.ws.recv_message()
                if opcode != websocket.BINARY or not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == CLOSE_STREAM and len(data) == 1 and inputs.get(data[0]):
                    inputs[data[0]].finish()
                elif inputs.get(channel) is not None and data:
                    inputs[channel].feed(data)
        except websocket.ProtocolError as e:
            self.ws.close(e.code, str(e))
        except (Closed, OSError):
            pass
        finally:
            self.gone.set()
            for pipe in inputs.values():
                if pipe is not None:
                    pipe.finish()

    def write(self, channel, data):
        for i in range(0, len(data), CHUNK):
            self.ws.send(websocket.BINARY, bytes([channel]) + data[i:i + CHUNK])

    def close_output(self, channel):
        pass  # the client reads its streams to the end of the connection

    def status(self, document):
        if self.protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
            self.write(ERROR, json.dumps(document).encode())
        elif document["status"] != "Success":
            self.write(ERROR, document["message"].encode())

    def finish(self):
        self.ws.close(websocket.NORMAL)
        graceful_close(self.sock, self._reader)


class SpdyChannels:
    def __init__(self, sock, reader, protocol, options):
        self.sock, self.protocol = sock, protocol
        self.streams = {}
        self._arrived = threading.Condition()
        self.expected = 1 + sum(bool(options[k]) for k in ("stdin", "stdout", "stderr"))
        if options["tty"] and protocol in ("v4.channel.k8s.io", "v3.channel.k8s.io"):
            self.expected += 1
        self.conn = spdy.Connection(sock.sendall, reader.recv_exact, self._on_stream,
                                    max_streams=len(STREAM_TYPES))
        self.gone = self.conn.closed
        self._reader = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        try:
            self.conn.serve()
        except (Closed, spdy.SpdyError, OSError):
            pass
        finally:
            with self._arrived:
                self._arrived.notify_all()

    def _on_stream(self, stream):
        kind = stream.header("streamtype")
        with self._arrived:
            if kind not in STREAM_TYPES or kind in self.streams:
                return False
            self.streams[kind] = stream
            self._arrived.notify_all()
        return True

    def start(self):
        """Serve the connection; True once the client opened every stream it should."""
        self._reader.start()
        with self._arrived:
            return self._arrived.wait_for(
                lambda: len(self.streams) >= self.expected or self.gone.is_set(),
                STREAM_CREATION_TIMEOUT) and not self.gone.is_set()

    @property
    def stdin(self):
        s = self.streams.get("stdin")
        return s.inbox if s else None

    @property
    def resize(self):
        s = self.streams.get("resize")
        return s.inbox if s else None

    def write(self, channel, data):
        stream = self.streams.get({STDOUT: "stdout", STDERR: "stderr", ERROR: "error"}[channel])
        if stream is not None:
            stream.write(data)

    def close_output(self, channel):
        stream = self.streams.get({STDOUT: "stdout", STDERR: "stderr"}[channel])
        if stream is not None:
            stream.close()

    def status(self, document):
        stream = self.streams.get("error")
        if stream is None:
            return
        if self.protocol == "v4.channel.k8s.io":
            stream.write(json.dumps(document).encode())
        elif document["status"] != "Success":
            stream.write(document["message"].encode())
        stream.close()

    def finish(self):
        for stream in self.streams.values():
            if stream.header("streamtype") == "stdin":
                stream.reset()
        self.conn.goaway()
        graceful_close(self.sock, self._reader)


def run(channels, spec, options, log):
    """One exec or attach session on open channels: run, pump, report, close."""
    try:
        if not channels.start():
            return
        result = _run_command(channels, spec, options, log)
        for channel in (STDOUT, STDERR):
            channels.close_output(channel)
        channels.status(status_document(result))
    except (OSError, Closed):
        pass  # the client went
    finally:
        channels.finish()


def _run_command(channels, spec, options, log):
    try:
        if spec["mode"] == "attach":
            command = AttachSession(spec, options)
        else:
            command = Command(spec, options["tty"], options["stdin"])
    except NspodError as e:   # the container is not there, not running: the client's error
        return {"error": str(e)}
    except OSError as e:
        log.error("streaming: cannot start the session's process: %s", e)
        return {"error": f"cannot start the session's process: {e.strerror or e}"}
    started = time.monotonic()
    try:
        command.start_pumps(channels.write, channels.stdin, channels.resize)
        result = command.wait(channels.gone)
    finally:
        command.close()
    if "message" in result and options["stderr"] and not options["tty"]:
        channels.write(STDERR, (result["message"] + "\n").encode())
    log.debug("streaming: %s in %s/%s ended after %.1fs: %s", spec["mode"], spec["pod"],
              spec["container"], time.monotonic() - started, result)
    return result
