"""The server's side of an exec session's runner process (runner.py): start it on pipes or a
terminal, pump its output to the client and the client's input to it, resize its terminal,
end it when the client goes, and read its result. Also `dial`: a socket connected inside a
pod's network namespace, made by a runner and passed back.
"""
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

from nsPod.errors import NspodError

RUNNER = [sys.executable, "-P", "-m", "nsPod.cri.streaming.runner"]
DRAIN_AFTER_EXIT = 2.0   # seconds output may still come from what the command left behind


def runner_env():
    """The server's environment but --trace's: a runner's stderr is the client's."""
    return {k: v for k, v in os.environ.items() if k != "NSPOD_TRACE"}


class DialError(NspodError):
    pass


class Command:
    """One exec runner. `spec` is the runner's JSON spec without status_fd."""

    def __init__(self, spec, tty, stdin):
        self.tty = tty
        status_r, status_w = os.pipe()
        opened = [status_w]
        self.master = None
        if tty:
            self.master, slave = os.openpty()
            opened.append(slave)
            stdio = dict(stdin=slave, stdout=slave, stderr=slave)
        else:
            stdio = dict(stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.proc = subprocess.Popen(
                RUNNER + [json.dumps(dict(spec, status_fd=status_w))], **stdio,
                pass_fds=(status_w,), start_new_session=True, close_fds=True, env=runner_env())
        except BaseException:
            os.close(status_r)
            if self.master is not None:
                os.close(self.master)
            raise
        finally:
            for fd in opened:
                os.close(fd)
        self._status_r = status_r
        self._stop = threading.Event()
        self._threads = []
        if tty:
            self.stdin_fd = self.master if stdin else None
            self.outputs = {1: self.master}
        else:
            self.stdin_fd = self.proc.stdin.fileno() if stdin else None
            self.outputs = {1: self.proc.stdout.fileno(), 2: self.proc.stderr.fileno()}

    def start_pumps(self, write_out, stdin_pipe, resize_pipe):
        """Threads: each output fd -> write_out(channel, data); stdin_pipe -> the command;
        resize_pipe (JSON {"Width","Height"} objects) -> the terminal's size."""
        for channel, fd in self.outputs.items():
            self._spawn("out", self._pump_out, fd, channel, write_out)
        if stdin_pipe is not None and self.stdin_fd is not None:
            self._spawn("in", self._pump_in, stdin_pipe)
        if resize_pipe is not None and self.master is not None:
            self._spawn("resize", self._pump_resize, resize_pipe)

    def _spawn(self, name, target, *args):
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _pump_out(self, fd, channel, write_out):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(200):
                    continue
                try:
                    data = os.read(fd, 32 << 10)
                except OSError:   # EIO: the terminal's last other end was closed
                    return
                if not data:
                    return
                write_out(channel, data)
        except OSError:
            self._stop.set()      # the client cannot take output any more

    def _pump_in(self, pipe):
        fd = self.stdin_fd
        try:
            while True:
                data = pipe.read(0.2)
                if data is None:
                    if self._stop.is_set():
                        return
                    continue
                if not data:
                    break
                while data:
                    data = data[os.write(fd, data):]
            if self.tty:
                os.write(fd, b"\x04")   # end of input on a terminal is its EOF character
            else:
                self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # the command closed its stdin or ended

    def _pump_resize(self, pipe):
        pump_resizes(pipe, self._stop, self.resize)

    def resize(self, size):
        if self.master is not None:
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
            except OSError:
                pass  # the session is ending

    def wait(self, gone):
        """The runner's result once it ends, or once `gone` (an Event: the client left) is
        set, after ending it: the command first (SIGUSR1), then the runner."""
        while True:
            try:
                self.proc.wait(0.2)
                break
            except subprocess.TimeoutExpired:
                if gone.is_set():
                    self.end()
                    break
        result = self._read_status()
        deadline = time.monotonic() + DRAIN_AFTER_EXIT
        for t in self._threads:
            if t.name == "out":
                t.join(max(0, deadline - time.monotonic()))
        self._stop.set()
        for t in self._threads:
            t.join(1)
        return result

    def end(self):
        for sig, grace in ((signal.SIGUSR1, 2), (signal.SIGKILL, 5)):
            try:
                self.proc.send_signal(sig)
                self.proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return

    def _read_status(self):
        data = b""
        try:
            while len(data) < 1 << 16:
                chunk = os.read(self._status_r, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self._status_r)
        try:
            result = json.loads(data)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            code = self.proc.returncode
            return {"error": f"the session's process ended ({code}) without a result"}
        return result

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(1)
        if self.proc.poll() is None:
            self.end()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def pump_resizes(pipe, stop, apply):
    """The resize stream (JSON {"Width","Height"} objects, back to back) -> apply((rows,
    cols)), until it ends, holds garbage, or `stop` is set."""
    decoder, text = json.JSONDecoder(), ""
    while True:
        data = pipe.read(0.5)
        if data is None:
            if stop.is_set():
                return
            continue
        if not data or len(text) > 4096:
            return
        text += data.decode(errors="replace")
        while text.strip():
            try:
                size, end = decoder.raw_decode(text.lstrip())
            except (ValueError, RecursionError):   # incomplete, or not a size at all
                break
            text = text.lstrip()[end:]
            if isinstance(size, dict):
                w, h = size.get("Width"), size.get("Height")
                if type(w) is int and type(h) is int and 0 <= w < 1 << 16 and 0 <= h < 1 << 16:
                    apply((h, w))


# Runners making sockets at once, over all sessions: each forwarded connection starts one, and
# 32 sessions of 32 connections must not become a thousand Python processes.
DIALS = threading.BoundedSemaphore(8)


def dial(state_root, pod_name, port, timeout=10):
    """A connected TCP socket to 127.0.0.1:port in the pod's network namespace; DialError
    with the runner's reason otherwise."""
    if not DIALS.acquire(timeout=timeout):
        raise DialError(f"dial port {port} in pod {pod_name}: too many connections being made")
    try:
        return _dial(state_root, pod_name, port, timeout)
    finally:
        DIALS.release()


def _dial(state_root, pod_name, port, timeout):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = {"mode": "dial", "root": state_root, "pod": pod_name, "port": port,
            "status_fd": theirs.fileno()}
    with ours:
        try:
            proc = subprocess.Popen(RUNNER + [json.dumps(spec)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    pass_fds=(theirs.fileno(),), close_fds=True,
                                    env=runner_env())
        finally:
            theirs.close()
        ours.settimeout(timeout)
        try:
            data, fds, _, _ = socket.recv_fds(ours, 1 << 16, 1)
        except TimeoutError:
            proc.kill()
            data, fds = b"", []
        finally:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    try:
        result = json.loads(data)
    except ValueError:
        result = {}
    if fds and result.get("ok"):
        for extra in fds[1:]:
            os.close(extra)
        return socket.socket(fileno=fds[0])
    for fd in fds:
        os.close(fd)
    raise DialError(result.get("error") or f"dial port {port} in pod {pod_name}: no socket")
