"""`--trace` through the monitor: the steps it takes for a command, back to that command.

A control request with "trace": true gets a Relay. While any relay listens, every step the
monitor narrates, and every step of the children it forks meanwhile (a container's setns,
mounts and pivot_root happen in its child), goes as a record into one pipe
(kernel/tracing.redirect); the monitor reads it and sends each record to each listening
caller as a line {"trace": record}, then the command's answer as the last line.

Bounded, like every other thing the monitor does for a client: the pipe and the caller's
socket are non-blocking, at most RELAY_BUFFER bytes wait for one caller (beyond that steps
are counted and replaced by one "... N steps dropped" record), and a caller that is gone or
does not read is dropped, never waited for. The answer itself is always queued.
"""
import contextlib
import fcntl
import json
import os
import selectors

from nsPod.kernel import tracing

RELAY_BUFFER = 256 * 1024     # bytes queued for one caller
PIPE_SIZE = 1 << 20           # the pipe the monitor and its children write records into
ANSWER_TIMEOUT = 2.0          # for the caller to take the rest once the answer is queued
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Relay:
    """One caller's connection while its command's steps are narrated to it."""

    def __init__(self, relays, conn):
        self.relays = relays
        self.conn = conn
        self.out = bytearray()
        self.dropped = 0
        self.answered = False
        self.closed = False
        self.waiting = set()       # containers whose next start this command waits for
        self.reply = None          # the answer once `waiting` is empty
        self.timer = None
        self.writing = False       # registered for EVENT_WRITE

    def feed(self, line):
        if self.answered or self.closed:
            return
        if len(self.out) + len(line) > RELAY_BUFFER:
            self.dropped += 1
            return
        if self.dropped:
            self.out += _trace_line(tracing.dropped_record(self.dropped))
            self.dropped = 0
        self.out += line

    def answer(self, reply):
        """The command's answer, after every step narrated so far; the connection closes
        once the caller has it (or after ANSWER_TIMEOUT)."""
        if self.answered or self.closed:
            return
        self.relays.pump()
        self.relays.stop_listening(self)
        if self.dropped:
            self.out += _trace_line(tracing.dropped_record(self.dropped))
        self.out += (json.dumps(reply) + "\n").encode()
        self.answered = True
        self.relays.m.timers.cancel(self.timer)
        self.timer = self.relays.m.timers.at(ANSWER_TIMEOUT, self.close)
        self.flush()

    def flush(self):
        """Send what the socket takes now; wait for EVENT_WRITE for the rest."""
        if self.closed:
            return
        try:
            while self.out:
                sent = self.conn.send(self.out)
                del self.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()   # the caller is gone: nothing more to tell it
            return
        if not self.out and self.answered:
            self.close()
            return
        want = bool(self.out)
        if want != self.writing:
            self.writing = want
            if want:
                self.relays.m.selector.register(self.conn, selectors.EVENT_WRITE, self)
            else:
                self.relays.m.selector.unregister(self.conn)

    def on_ready(self, conn):
        self.flush()

    def flush_waiting(self, seconds):
        """At the pod's end, when the loop no longer runs: what is left, within `seconds`."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.conn.settimeout(seconds)
            self.conn.sendall(self.out)
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.relays.stop_listening(self)
        self.relays.m.timers.cancel(self.timer)
        if self.writing:
            with contextlib.suppress(KeyError, ValueError):
                self.relays.m.selector.unregister(self.conn)
        self.conn.close()
        self.relays.all.discard(self)


class Relays:
    """The monitor's relays and the one pipe their records come through."""

    def __init__(self, monitor):
        self.m = monitor
        self.all = set()
        self.listening = []
        self.read_fd = self.write_fd = None
        self.saved = None          # the tracing mode before the first listener
        self.partial = b""

    def open(self, conn):
        """A relay for a traced request on `conn` (non-blocking from now on), listening."""
        conn.setblocking(False)
        relay = Relay(self, conn)
        self.all.add(relay)
        if self.read_fd is None:
            self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.write_fd, F_SETPIPE_SZ, PIPE_SIZE)
            self.m.selector.register(self.read_fd, selectors.EVENT_READ, self)
        if not self.listening:
            self.saved = tracing.start_redirect(self.write_fd)
        self.listening.append(relay)
        return relay

    def stop_listening(self, relay):
        if relay in self.listening:
            self.pump()
            self.listening.remove(relay)
            if not self.listening:
                tracing.end_redirect(self.saved)

    def on_ready(self, fileobj):
        self.pump()

    def pump(self):
        """Every record in the pipe to every listening caller (and, when the monitor
        narrates on its own, to monitor.log too)."""
        if self.read_fd is None:
            return
        data = self.partial
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            data += chunk
        *lines, self.partial = data.split(b"\n")
        own = tracing.take_dropped()
        if own:
            lines.append(json.dumps(tracing.dropped_record(own)).encode())
        for line in lines:
            try:
                record = tracing.record_from_wire(json.loads(line))
            except ValueError:
                record = None
            if record is None:
                continue
            wire = _trace_line(record)
            for relay in self.listening:
                relay.feed(wire)
            if self.saved is not None and self.saved[0]:
                with tracing.using(self.saved):
                    tracing.emit(record)
        for relay in list(self.listening):
            relay.flush()

    # --- a command's wait for containers to (re)start --------------------------------------

    def answer_after_starts(self, relay, reply, deadline):
        """Answer `reply` once each container in relay.waiting has been started again (or
        failed to), or after `deadline` seconds: `nspod restart` narrates the new start."""
        relay.reply = reply
        if not relay.waiting:
            relay.answer(reply)
            return
        relay.timer = self.m.timers.at(deadline, lambda: relay.answer(relay.reply))

    def started(self, name):
        """A start of container `name` has been made (or has failed)."""
        for relay in list(self.listening):
            if name in relay.waiting:
                relay.waiting.discard(name)
                if not relay.waiting and relay.reply is not None:
                    relay.answer(relay.reply)

    def pod_down(self, reply_for):
        """The loop has ended: every caller still waiting gets its answer and the rest of
        its steps, within ANSWER_TIMEOUT in all."""
        self.pump()
        for relay in list(self.all):
            if not relay.answered:
                relay.answer(reply_for(relay))
        deadline = self.m.timers.now() + ANSWER_TIMEOUT
        for relay in list(self.all):
            relay.flush_waiting(max(0.01, deadline - self.m.timers.now()))
        if self.read_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.m.selector.unregister(self.read_fd)
            os.close(self.read_fd)
            os.close(self.write_fd)
            self.read_fd = self.write_fd = None


def _trace_line(record):
    return (json.dumps({"trace": record}) + "\n").encode()
