"""CRI Attach: one client's session on a running container, on an nspod attachment
(nsPod.api.attach.open_attachment: the pod's monitor hands over the container's stdin pipe or
pty master and keeps the connection as the session). No runner process: nothing here joins
a namespace, so the server's session thread does it all.

Kubernetes' semantics (containerd's cri attach, kubectl attach):
- the client's stdin goes to the container's stdin, if it was made with stdin: true (else
  the input is read and dropped, as containerd does, so it cannot stall the connection);
- output from the attach on, as the container writes it (the monitor copies it to the
  connection): a tty container's terminal output, or the stdout and stderr pipes' (framed,
  apart; a partial line too: critest's `echo -n hello`);
- a tty's size follows the client's resize stream;
- the client's end of input (no tty) is the detach: the connection to the monitor that
  passed the stdin closes, which with stdinOnce closes the container's stdin; output goes
  on until the container ends. With a tty, the end of input only stops the input
  (kubectl#736);
- the session ends when the container does (result: success) or when the client goes
  (then it detaches).
"""
import os
import select
import threading

from nsPod.cri.streaming.commands import pump_resizes

STDOUT, STDERR = 1, 2
LOG_POLL = 0.1      # seconds between looks at the log (no tty, a monitor that does not relay)
DRAIN_AFTER_END = 5.0
FRAME_HEAD = 5      # the relay's frame: stream byte, 4-byte big-endian length


class AttachSession:
    """The attach counterpart of commands.Command: start_pumps, wait, close.

    A tty container: one attachment, its pty's output and input. Otherwise two: `output`
    (no stdin, its output relayed by the monitor; its end of file is the container's end)
    is made first, then `input` (with stdin) if the container has one, so the detach at
    the end of input (closing `input`) loses no output and shows none twice."""

    def __init__(self, spec, options):
        from nsPod.api.attach import open_attachment
        from nsPod.api.query import load, pick_container
        from nsPod.api.session import open_config
        config = open_config({"root": spec["root"]})
        pod, name = spec["pod"], spec["container"]
        _, doc, _ = load(config, pod)
        cplan = pick_container(doc, pod, name)
        self.tty = bool(cplan.get("tty"))
        self.has_stdin = bool(options["stdin"] and (cplan.get("stdin_open") or self.tty))
        self.options = options
        if self.tty:
            self.output = self.input = open_attachment(config, pod, name, stdin=self.has_stdin)
        else:
            self.output = open_attachment(config, pod, name, relay_output=True)
            self.input = None
            if self.has_stdin:
                try:
                    self.input = open_attachment(config, pod, name, stdin=True)
                except BaseException:
                    self.output.close()
                    raise
        self._stop = threading.Event()
        self.ended = threading.Event()          # the container ended: its output is all out
        self._lock = threading.Lock()           # the input fd: written, or closed
        self._threads = []

    # --- the threads --------------------------------------------------------------------------

    def start_pumps(self, write_out, stdin_pipe, resize_pipe):
        pump = self._pump_tty if self.tty else \
            self._pump_frames if self.output.relay else self._pump_log
        self._spawn("out", pump, write_out)
        if stdin_pipe is not None:
            self._spawn("in", self._pump_in, stdin_pipe)
        if resize_pipe is not None and self.tty:
            self._spawn("resize", pump_resizes, resize_pipe, self._stop, self._resize)

    def _spawn(self, name, target, *args):
        t = threading.Thread(target=target, args=args, name=f"attach-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _recv(self):
        """What the output connection gives within 0.2 s: None if nothing, b"" at its end."""
        sock = self.output.sock
        if not select.select([sock], [], [], 0.2)[0]:
            return None
        return sock.recv(32 << 10)

    def _send(self, write_out, stream, data):
        channel = STDERR if stream == STDERR and not self.options["tty"] else STDOUT
        if data and self.options["stderr" if channel == STDERR else "stdout"]:
            write_out(channel, data)

    def _pump_tty(self, write_out):
        """The monitor's copy of the terminal's output, to the client until end of file."""
        try:
            self._send(write_out, STDOUT, self.output.early_output)
            while not self._stop.is_set():
                data = self._recv()
                if data == b"":
                    self.ended.set()
                    return
                if data:
                    self._send(write_out, STDOUT, data)
        except OSError:
            self._stop.set()   # the client cannot take output any more, or we are closing

    def _pump_frames(self, write_out):
        """The monitor's relay of the stdout and stderr pipes, until end of file."""
        buffered = bytearray(self.output.early_output)
        try:
            while not self._stop.is_set():
                while len(buffered) >= FRAME_HEAD:
                    size = int.from_bytes(buffered[1:FRAME_HEAD], "big")
                    if len(buffered) < FRAME_HEAD + size:
                        break
                    stream = STDERR if buffered[0] == STDERR else STDOUT
                    self._send(write_out, stream, bytes(buffered[FRAME_HEAD:FRAME_HEAD + size]))
                    del buffered[:FRAME_HEAD + size]
                data = self._recv()
                if data == b"":
                    self.ended.set()
                    return
                if data:
                    buffered += data
        except OSError:
            self._stop.set()

    def _pump_log(self, write_out):
        """A monitor that does not relay: the log from the attach on, whole lines, until it
        closes the connection (the run ended, all of its output is in the log)."""
        from nsPod.api.attach import read_log_from
        offset = self.output.log_offset
        try:
            while not self._stop.is_set():
                gone = self._recv() == b""
                records, offset = read_log_from(self.output.log_path, offset)
                for stream, text in records:
                    self._send(write_out, STDERR if stream == "stderr" else STDOUT,
                               text.encode())
                if gone:
                    self.ended.set()
                    return
        except OSError:
            self._stop.set()

    def _pump_in(self, pipe):
        """The client's input into the container's stdin (small writes once it can take
        them: a container that does not read cannot hold this thread in a write); dropped
        when there is none. Its end (no tty) is the detach."""
        try:
            while True:
                data = pipe.read(0.2)
                if data is None:
                    if self._stop.is_set():
                        return
                    continue
                if not data:
                    break
                if self.has_stdin:
                    self._write_input(data)
        except OSError:
            pass   # EPIPE, EIO: nothing reads the container's stdin any more
        if not self.tty and self.input is not None:
            with self._lock:
                self.input.close()   # with stdinOnce, the container's stdin ends

    def _write_input(self, data):
        while data and not self._stop.is_set():
            with self._lock:
                fd = self.input.input_fd
                if fd is None:
                    return
                if not select.select([], [fd], [], 0.2)[1]:
                    continue
                data = data[os.write(fd, data[:select.PIPE_BUF]):]

    def _resize(self, size):
        with self._lock:
            try:
                self.input.resize(*size)
            except OSError:
                pass   # the container's terminal is gone: it is ending

    # --- the session's end --------------------------------------------------------------------

    def wait(self, gone):
        """{"exit": 0} once the container ended (its output sent) or the client went."""
        while not (self.ended.wait(0.2) or gone.is_set() or self._stop.is_set()):
            pass
        if not self.ended.is_set():
            self._stop.set()   # the client went: nothing more to send
        for t in self._threads:
            if t.name == "attach-out":
                t.join(DRAIN_AFTER_END)
        return {"exit": 0}

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(1)
        with self._lock:
            for attachment in (self.input, self.output):
                if attachment is not None:
                    attachment.close()
