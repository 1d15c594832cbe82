"""CRI Attach: one client's session on a running container, on an nspod attachment
(nsPod.api.attach.open_attachment: the pod's monitor hands over the container's stdin pipe or
pty master and keeps the connection as the session). No runner process: nothing here joins
a namespace, so the server's session thread does it all.

Kubernetes' semantics (containerd's cri attach, kubectl attach):
- the client's stdin goes to the container's stdin, if it was made with stdin: true (else
  the input is read and dropped, as containerd does, so it cannot stall the connection);
- output from the attach on: a tty container's terminal output as it comes (the monitor
  copies it to the connection), or a container's log records, stdout and stderr apart;
- a tty's size follows the client's resize stream;
- the client's end of input (no tty) is the detach: the connection to the monitor closes,
  which with stdinOnce closes the container's stdin; output goes on until the container
  ends. With a tty, the end of input only stops the input (kubectl#736);
- the session ends when the container does (result: success) or when the client goes
  (then it detaches).
"""
import os
import select
import threading

from nsPod.cri.streaming.commands import pump_resizes

STDOUT, STDERR = 1, 2
LOG_POLL = 0.1      # seconds between looks at the log (no tty)
DRAIN_AFTER_END = 5.0


class AttachSession:
    """The attach counterpart of commands.Command: start_pumps, wait, close."""

    def __init__(self, spec, options):
        from nsPod.api.attach import open_attachment
        from nsPod.api.query import load, pick_container
        from nsPod.api.session import open_config
        self.config = open_config({"root": spec["root"]})
        self.pod, self.container = spec["pod"], spec["container"]
        _, doc, _ = load(self.config, self.pod)
        cplan = pick_container(doc, self.pod, self.container)
        self.has_stdin = bool(options["stdin"] and (cplan.get("stdin_open") or cplan.get("tty")))
        self.options = options
        self.att = open_attachment(self.config, self.pod, self.container, stdin=self.has_stdin)
        self.tty = self.att.tty
        # After a detach (no tty): the connection kept to see the container's end; False
        # when there was none to make (it had ended).
        self.watch = None
        self.offset = self.att.log_offset
        self._stop = threading.Event()
        self.ended = threading.Event()          # the container ended: its output is all out
        self.detach_wanted = threading.Event()  # the client's end of input (no tty)
        self._lock = threading.Lock()           # the input fd: written, or closed
        self._threads = []

    # --- the threads --------------------------------------------------------------------------

    def start_pumps(self, write_out, stdin_pipe, resize_pipe):
        self._spawn("out", self._pump_tty if self.tty else self._pump_log, write_out)
        if stdin_pipe is not None:
            self._spawn("in", self._pump_in, stdin_pipe)
        if resize_pipe is not None and self.tty:
            self._spawn("resize", pump_resizes, resize_pipe, self._stop, self._resize)

    def _spawn(self, name, target, *args):
        t = threading.Thread(target=target, args=args, name=f"attach-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _pump_tty(self, write_out):
        """The monitor's copy of the terminal's output, to the client until end of file."""
        sock = self.att.sock
        try:
            if self.att.early_output and self.options["stdout"]:
                write_out(STDOUT, self.att.early_output)
            while not self._stop.is_set():
                if not select.select([sock], [], [], 0.2)[0]:
                    continue
                data = sock.recv(32 << 10)
                if not data:
                    self.ended.set()
                    return
                if self.options["stdout"]:
                    write_out(STDOUT, data)
        except OSError:
            self._stop.set()   # the client cannot take output any more, or we are closing

    def _pump_log(self, write_out):
        """The container's log from the attach on, until the monitor closes the connection
        (the run ended, all of its output is in the log)."""
        from nsPod.api.attach import read_log_from
        try:
            while not self._stop.is_set():
                if self.detach_wanted.is_set() and self.watch is None:
                    self._detach_and_watch()
                sock = self.watch or self.att.sock
                if sock is None:
                    gone = True
                else:
                    gone = bool(select.select([sock], [], [], LOG_POLL)[0]) and \
                        not sock.recv(4096)
                records, self.offset = read_log_from(self.att.log_path, self.offset)
                for stream, text in records:
                    channel = STDERR if stream == "stderr" and not self.options["tty"] \
                        else STDOUT
                    if self.options["stderr" if channel == STDERR else "stdout"]:
                        write_out(channel, text.encode())
                if gone:
                    self.ended.set()
                    return
        except OSError:
            self._stop.set()

    def _detach_and_watch(self):
        """Close the attachment (with stdinOnce, the container's stdin ends) and keep a new
        one without stdin, whose end of file is the container's end; none: it ended."""
        from nsPod.api.attach import open_attachment
        from nsPod.errors import NspodError
        with self._lock:
            self.att.close()
        try:
            self.watch = open_attachment(self.config, self.pod, self.container).sock
        except NspodError:
            self.watch = False   # not running any more

    def _pump_in(self, pipe):
        """The client's input into the container's stdin (small writes once it can take
        them: a container that does not read cannot hold this thread in a write); dropped
        when there is none."""
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
        if not self.tty:
            self.detach_wanted.set()

    def _write_input(self, data):
        while data and not self._stop.is_set():
            with self._lock:
                fd = self.att.input_fd
                if fd is None:
                    return
                if not select.select([], [fd], [], 0.2)[1]:
                    continue
                data = data[os.write(fd, data[:select.PIPE_BUF]):]

    def _resize(self, size):
        with self._lock:
            try:
                self.att.resize(*size)
            except OSError:
                pass   # the container's terminal is gone: it is ending

    # --- the session's end --------------------------------------------------------------------

    def wait(self, gone):
        """{"exit": 0} once the container ended (its output sent) or the client went."""
        while not (self.ended.wait(0.2) or gone.is_set() or self._stop.is_set()):
            pass
        if not self.ended.is_set():
            self._stop.set()   # the client went: nothing more to send        for t in self._threads:
            if t.name == "attach-out":
                t.join(DRAIN_AFTER_END)
        return {"exit": 0}

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(1)
        with self._lock:
            self.att.close()
        if self.watch:
            self.watch.close()
            self.watch = None
