"""`nspod attach`: the client's side (the monitor's is monitor/attach.py).

open_attachment() asks the pod's monitor for a running container's stdin (a pipe's write
end) or, for a tty container, its pty master, passed over the control socket (SCM_RIGHTS);
the connection stays open while attached, and closing it is the detach. The CLI's loop
(`attach_loop`) and the CRI streaming server both build on an Attachment:

- tty: output arrives on `attachment.sock` (read it until end of file: the container ended);
  input is written to `attachment.input_fd`, `resize(rows, cols)` sets the window size.
- no tty: output is the container's log from the moment of the attach on
  (`read_log_from(offset)`, offset = `attachment.log_offset`); input (with stdin) is written
  to `attachment.input_fd`; `attachment.sock` reads end of file when the container ended.
- relay_output (no tty): `attachment.sock` carries the container's output as the monitor
  reads it, framed: a stream byte (1 stdout, 2 stderr), a 4-byte big-endian length, the
  bytes (`attachment.relay` says the monitor does it; an older one does not).
- close(): the input fd first, then the connection: the detach. With stdinOnce the
  container's stdin then reads end of file.
"""
import fcntl
import json
import os
import socket
import struct
import termios

from nsPod.errors import InputError, NspodError, StateError, describe

MAX_REPLY = 65536


class Attachment:
    def __init__(self, sock, input_fd, tty, log_path, log_offset, early_output, relay=False):
        self.sock = sock
        self.relay = relay
        self.input_fd = input_fd        # None without stdin (a tty's master is kept anyway)
        self.tty = tty
        self.log_path = log_path
        self.log_offset = log_offset
        self.early_output = early_output  # tty output that came with the answer

    def resize(self, rows, cols):
        """The container's terminal size (tty only): its foreground process gets SIGWINCH."""
        if self.tty and self.input_fd is not None:
            fcntl.ioctl(self.input_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close_input(self):
        if self.input_fd is not None:
            os.close(self.input_fd)
            self.input_fd = None

    def close(self):
        self.close_input()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_attachment(config, pod_name, container_name=None, stdin=False, tty=False,
                    relay_output=False):
    """Attach to a running container of a pod; an Attachment. PodNotFound (exit 1, as for
    every command) for an unknown pod; InputError (exit 2) for a container that does not exist, -i to a container without `stdin: true`, -t to one
    without `tty: true`; StateError when it is not running."""
    from nsPod.api.query import _enter, load, pick_container
    _enter(config, [pod_name], [container_name])
    pod_dir, doc, pod_state = load(config, pod_name)
    cplan = pick_container(doc, pod_name, container_name)
    name = cplan["name"]
    if stdin and not (cplan.get("stdin_open") or cplan.get("tty")):
        raise InputError(f"-i: container {name} of pod {pod_name} was not made with "
                         "stdin: true")
    if tty and not cplan.get("tty"):
        raise InputError(f"-t: container {name} of pod {pod_name} was not made with tty: true")
    if not pod_dir.monitor_alive():
        raise StateError(f"pod {pod_name} is not running")
    log_path = os.path.join(pod_dir.path, pod_state.container(name).get("log") or "")
    # Before asking: what the container writes from the attach on is shown, nothing lost.
    offset = _size(log_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(30.0)
    fds = []
    try:
        with pod_dir.socket_address(existing=True) as address:
            sock.connect(address)
        sock.sendall(json.dumps({"op": "attach", "container": name, "stdin": bool(stdin),
                                 "relay": bool(relay_output)}).encode() + b"\n")
        data, fds, _, _ = socket.recv_fds(sock, MAX_REPLY, 1)
        while b"\n" not in data:
            more = sock.recv(MAX_REPLY)
            if not more or len(data) > MAX_REPLY:
                break
            data += more
        line, _, rest = data.partition(b"\n")
        reply = json.loads(line) if line else {"error": "its monitor closed the connection"}
        if not isinstance(reply, dict):
            raise StateError(f"pod {pod_name}: its monitor answered {reply!r}")
        if "error" in reply:
            raise NspodError(f"pod {pod_name}: {reply['error']}")
        if reply.get("log"):
            log_path = os.path.join(pod_dir.path, reply["log"])
        input_fd = fds.pop() if fds else None
        sock.settimeout(None)
        return Attachment(sock, input_fd, bool(reply.get("tty")), log_path, offset, rest,
                          reply.get("relay") is True)
    except OSError as e:
        sock.close()
        raise StateError(f"pod {pod_name}: no answer from its monitor: {describe(e)}") from e
    except BaseException:
        sock.close()
        raise
    finally:
        for fd in fds:
            os.close(fd)


def read_log_from(path, offset):
    """(records, new offset): whole CRI records [(stream, text with its newline or not)]
    written at `path` from `offset` on (a partial last line waits for the next call)."""
    from nsPod.store import logs
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].decode(errors="replace").split("\n")[:-1]:
        rec = logs.parse_line(line)
        if rec:
            records.append((rec[1], rec[3] + ("" if rec[2] == "P" else "\n")))
    return records, offset + end


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def attach_loop(attachment, use_stdin, raw_terminal):
    """The CLI's session on this process's fds 0, 1 and 2: input from fd 0 (with use_stdin)
    into the container, its output to fd 1 (and its stderr to fd 2 without a tty), until the
    container ends (the monitor closes the connection) or fd 0 reads end of file (the
    detach). raw_terminal: fd 0 is a terminal put in raw mode (restored on the way out),
    whose size the container's pty follows (SIGWINCH). Returns 0."""
    import selectors
    import signal
    import tty as ttymode
    att = attachment
    saved = None
    if raw_terminal:
        saved = termios.tcgetattr(0)
        ttymode.setraw(0, termios.TCSANOW)   # what was typed already stays
    previous_winch = None
    try:
        if att.tty:
            _write_all(1, att.early_output)
            if raw_terminal:
                def follow_size(*_):
                    size = os.get_terminal_size(0)
                    att.resize(size.lines, size.columns)
                previous_winch = signal.signal(signal.SIGWINCH, follow_size)
                follow_size()
        selector = selectors.DefaultSelector()
        selector.register(att.sock, selectors.EVENT_READ, "monitor")
        if use_stdin:
            selector.register(0, selectors.EVENT_READ, "stdin")
        offset = att.log_offset
        while True:
            events = selector.select(None if att.tty else 0.1)
            if not att.tty:
                offset = _show_log(att.log_path, offset)
            for key, _ in events:
                if key.data == "monitor":
                    data = att.sock.recv(65536)
                    if not data:        # the container ended: all of its output is out
                        if not att.tty:
                            _show_log(att.log_path, offset)
                        return 0
                    if att.tty:
                        _write_all(1, data)
                else:
                    try:
                        data = os.read(0, 65536)
                    except OSError:   # EIO: this terminal is gone
                        data = b""
                    if not data:        # the user's end of input: detach
                        if not att.tty:
                            _show_log(att.log_path, offset)
                        return 0
                    try:
                        _write_all(att.input_fd, data)
                    except OSError:   # EPIPE, EIO: nothing reads the container's stdin now
                        selector.unregister(0)
                        att.close_input()
    finally:
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        att.close()


def _show_log(path, offset):
    records, offset = read_log_from(path, offset)
    for stream, text in records:
        _write_all(2 if stream == "stderr" else 1, text.encode())
    return offset


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def run_target(pods, tty):
    """`nspod run -i/-t`: the container to attach to once the pod runs (kubectl run -it):
    the first with `stdin: true` of the file's one pod; InputError before anything is made."""
    if len(pods) != 1:
        raise InputError(f"-i/-t: the files make {len(pods)} pods; attach needs exactly one")
    for c in pods[0].manifest["spec"].get("containers", []):
        if c.get("stdin") is True:
            if tty and c.get("tty") is not True:
                raise InputError(f"-t: container {c['name']} was not made with tty: true")
            return c["name"]
    raise InputError("-i/-t: no container of the pod has stdin: true")
