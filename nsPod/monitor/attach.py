"""`nspod attach`: the monitor's side. What a container with `stdin: true` reads and what one
with `tty: true` has as its terminal, kept by the monitor and handed to attached clients.

- stdin: true (no tty): the container's stdin is a pipe; the monitor keeps its write end
  and passes it (SCM_RIGHTS) to each `attach -i` client, which writes into it directly.
  Output is not relayed: the client follows the container's log.
- tty: true: the container's stdin, stdout and stderr are a pty's slave, its controlling
  terminal; the monitor keeps the master, reads the output from it into the log (as the
  pipes of other containers, launcher.on_log) and copies it to each attached client's
  socket; the client gets the master too, to write input and set the window size
  (TIOCSWINSZ) itself.
- relay (a client's choice, no tty; CRI Attach's): the monitor also copies what it reads from
  the container's stdout and stderr pipes to that client's socket, each chunk framed as one
  byte (1 stdout, 2 stderr), its length (4 bytes, big-endian) and the bytes: output as it is
  written, before a line is whole (the log holds a partial line until its newline).

Nothing a client does can hold up the monitor: no data from clients passes through it,
sockets are non-blocking, at most SESSION_BUFFER bytes of output wait for one client (more
is dropped for it, as a slow terminal would lose it), at most MAX_SESSIONS clients at once.
The connection stays open while the client is attached: its end is the detach, after which
a container with stdinOnce has its stdin closed (Kubernetes' semantics; with a tty the
master is the container's output too, so its end of input is the terminal's EOF character
written to it, as typed). When the run ends, every session of it is closed: the clients
see end of file.
"""
import contextlib
import os
import selectors
import socket

from nsPod.errors import NspodError

SESSION_BUFFER = 256 * 1024   # output bytes queued for one tty client
MAX_SESSIONS = 16             # attached clients per pod


class StdioFds:
    """The fds a container's start needs, and what the monitor keeps of them."""

    def __init__(self, plan):
        self.child_stdin = self.child_out = self.child_err = None   # the child's ends
        self.stdin_write = None     # kept: stdin true, no tty
        self.pty_master = None      # kept: tty true
        self.out_r = self.err_r = None
        try:
            if plan.tty:
                self.pty_master, slave = os.openpty()   # both close-on-exec
                self.child_stdin = self.child_out = self.child_err = slave
            else:
                self.out_r, self.child_out = os.pipe()
                self.err_r, self.child_err = os.pipe()
                if plan.stdin_open:
                    self.child_stdin, self.stdin_write = os.pipe()
        except BaseException:
            self.close_all()
            raise

    def take_read_fds(self):
        """(fd, stream) the monitor reads into the log, from now on the launcher's to close
        (a pty's master stays ours to pass to clients until then)."""
        if self.pty_master is not None:
            return ((self.pty_master, "stdout"),)
        taken = ((self.out_r, "stdout"), (self.err_r, "stderr"))
        self.out_r = self.err_r = None
        return taken

    def close_child_ends(self):
        """Once the child has them: only the container may hold them, so its exit is our EOF."""
        for fd in {self.child_stdin, self.child_out, self.child_err} - {None}:
            os.close(fd)
        self.child_stdin = self.child_out = self.child_err = None

    def close_all(self):
        self.close_child_ends()
        for name in ("stdin_write", "pty_master", "out_r", "err_r"):  # not handed over
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


class Session:
    """One attached client's connection."""

    def __init__(self, attachments, conn, run, stdin, relay=False):
        self.attachments = attachments
        self.conn = conn
        self.run = run
        self.stdin = stdin
        self.relay = relay
        self.out = bytearray()
        self.writing = False

    def feed(self, data):
        if len(self.out) + len(data) <= SESSION_BUFFER:
            self.out += data
        self.flush()

    def flush(self):
        try:
            while self.out:
                del self.out[:self.conn.send(self.out)]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.attachments.detach(self)
            return
        want = bool(self.out)
        if want != self.writing:
            self.writing = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self.attachments.m.selector.modify(self.conn, events, self)

    def on_ready(self, conn):
        """Readable: the client went (or sent something, which is not read); writable: more
        output can go."""
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            self.attachments.detach(self)
            return
        self.flush()


class Attachments:
    """The monitor's attached clients, and the kept ends of the containers' stdio."""

    def __init__(self, monitor):
        self.m = monitor
        self.sessions = set()
        self.pty_runs = {}          # pty master fd -> run
        self.pipe_runs = {}         # stdout/stderr pipe fd -> (run, frame's stream byte)

    def started(self, run, fds, read_fds=()):
        """A run has started with these StdioFds (and these (fd, stream) the launcher
        reads): keep what attach needs."""
        run.stdio = fds
        run.stdin_closed = False
        if fds.pty_master is not None:
            self.pty_runs[fds.pty_master] = run
        else:
            for fd, stream in read_fds:
                self.pipe_runs[fd] = (run, b"\x02" if stream == "stderr" else b"\x01")

    def output(self, fd, data):
        """Output read from a fd into the log: a pty's goes to its attached clients too, a
        pipe's (framed) to the clients that asked for it."""
        run = self.pty_runs.get(fd)
        if run is not None:
            for session in [s for s in self.sessions if s.run is run]:
                session.feed(data)
            return
        run, stream = self.pipe_runs.get(fd, (None, None))
        if run is not None:
            frame = stream + len(data).to_bytes(4, "big") + data
            for session in [s for s in self.sessions if s.run is run and s.relay]:
                session.feed(frame)

    def pty_closed(self, fd):
        """The launcher has closed a pty master or an output pipe it read to its end."""
        self.pipe_runs.pop(fd, None)
        run = self.pty_runs.pop(fd, None)
        fds = getattr(run, "stdio", None)
        if fds is not None and fds.pty_master == fd:
            fds.pty_master = None

    def attach(self, conn, request):
        """The "attach" control op: answer with the fds (SCM_RIGHTS) and keep the connection
        as the session; raises NspodError for a request that cannot be met."""
        m = self.m
        name = request.get("container")
        want_stdin = request.get("stdin") is True
        run = m.runs.get(name) if isinstance(name, str) else None
        if run is None:
            raise NspodError(f"pod {m.plan.name} has no container {name!r}")
        fds = getattr(run, "stdio", None)
        if not run.pid or fds is None:
            raise NspodError(f"container {name} of pod {m.plan.name} is not running")
        if want_stdin and not (run.plan.stdin_open or run.plan.tty):
            raise NspodError(f"container {name} was not started with stdin: true")
        if want_stdin and run.stdin_closed:
            raise NspodError(f"container {name}: its stdin was closed when the first attach "
                             "ended (stdinOnce)")
        if len(self.sessions) >= MAX_SESSIONS:
            raise NspodError(f"pod {m.plan.name} has {MAX_SESSIONS} clients attached already")
        tty = bool(run.plan.tty)
        passed = [fds.pty_master] if tty else [fds.stdin_write] if want_stdin else []
        if None in passed:   # its output ended (EIO) or stdin closed: the exit is on its way
            raise NspodError(f"container {name} of pod {m.plan.name} is not running")
        relay = request.get("relay") is True and not tty
        reply = {"ok": True, "tty": tty, "stdin": want_stdin, "log": m.cstate(run).log,
                 "relay": relay}
        socket.send_fds(conn, [(_json(reply) + "\n").encode()], passed)
        conn.setblocking(False)
        session = Session(self, conn, run, want_stdin, relay)
        self.sessions.add(session)
        m.selector.register(conn, selectors.EVENT_READ, session)

    def detach(self, session):
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        with contextlib.suppress(KeyError, ValueError):
            self.m.selector.unregister(session.conn)
        session.conn.close()
        run = session.run
        fds = getattr(run, "stdio", None)
        if not (session.stdin and run.plan.stdin_once and fds is not None):
            return
        # Kubernetes' stdinOnce: the first attach's end is the end of the stdin.
        run.stdin_closed = True
        if fds.stdin_write is not None:
            os.close(fds.stdin_write)
            fds.stdin_write = None
        elif fds.pty_master is not None:
            # A pty stays the container's output: its end of input is the terminal's EOF
            # character, as typed (a reader in canonical mode reads end of file).
            with contextlib.suppress(OSError):
                os.write(fds.pty_master, _eof_char(fds.pty_master))

    def run_ended(self, run):
        """Its output is all in the log: its clients see end of file, its stdin closes."""
        for session in [s for s in self.sessions if s.run is run]:
            session.flush()
            self.detach(session)
        fds = getattr(run, "stdio", None)
        if fds is not None:
            fds.close_child_ends()
            if fds.stdin_write is not None:
                os.close(fds.stdin_write)
                fds.stdin_write = None
        run.stdio = None

    def close_all(self):
        for session in list(self.sessions):
            self.detach(session)


def _eof_char(fd):
    import termios
    try:
        return termios.tcgetattr(fd)[6][termios.VEOF]
    except termios.error:
        return b"\x04"


def _json(reply):
    import json
    return json.dumps(reply)
