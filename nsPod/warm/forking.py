"""A pod's monitor forked from podd, not started: podd has nsPod (the monitor's code
included) imported and gc-frozen, so the monitor is a fork of it that shares those pages
copy-on-write and runs in milliseconds, with no interpreter start.

A command forked from podd (`nspod run`) asks podd for the monitor ("monitor" request,
protocol.py) rather than forking it itself: its own fork would carry every page the command
dirtied (click, yaml, the manifest: ~5 MiB). podd forks a watcher that forks the monitor:

    podd ── watcher (setsid; lives while the command waits) ── monitor (setsid)

The watcher stands for the command as the monitor's parent: it ends when the command hangs up
(after reading the monitor's ready word, or killed), and while the pod is being made its end
is the command's death for the monitor (PR_SET_PDEATHSIG, monitor/supervisor.py), which
undoes the half-made pod. It tells the command the monitor's exit status if the monitor ends
first. Then the monitor is reparented away from podd, with nothing of podd's open.
When podd cannot be reached, the command forks the monitor itself (fork_monitor).
"""
import gc
import os
import signal
import sys

_warm = False


def mark_warm():
    """Called by podd in each command's process: monitors are forked, not exec'd."""
    global _warm
    _warm = True


def is_warm():
    return _warm


def start_monitor(root, pod_path, ready_fd, lock_fd, stderr_fd, trace):
    """The pod's monitor, forked by podd when it answers, else by this process; an object
    with wait() and returncode, as api.pods uses a Popen, and close() once it is ready."""
    started = _request(root, pod_path, ready_fd, lock_fd, stderr_fd, trace)
    return started or fork_monitor(pod_path, ready_fd, lock_fd, stderr_fd, trace)


class Requested:
    """A monitor podd forked: its exit status comes from the watcher, if before close()."""

    def __init__(self, sock):
        self.sock = sock
        self.returncode = None

    def wait(self):
        from nsPod.warm import client, protocol
        if self.returncode is None and self.sock is not None:
            try:
                kind, value = client.Lines(self.sock).next()
            except (OSError, protocol.ProtocolError):
                kind, value = None, None
            self.returncode = value if kind == "X" else -1
        return self.returncode

    def close(self):
        """Hang up, and wait until the watcher has (it ends when we do): when `run`
        returns, only the monitor is left of what podd forked for it."""
        if self.sock is not None:
            import socket
            try:
                self.sock.shutdown(socket.SHUT_WR)
                while self.sock.recv(64):
                    pass
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def _request(root, pod_path, ready_fd, lock_fd, stderr_fd, trace):
    from nsPod.warm import client, protocol
    sock = client.connect(root)
    if sock is None:
        return None
    request = protocol.Request("monitor", [pod_path, "1" if trace else "0"], dict(os.environ),
                               client.umask())
    try:
        import socket
        frame = protocol.encode_request(request)
        sent = socket.send_fds(sock, [frame], [ready_fd, lock_fd, stderr_fd])
        if sent < len(frame):
            sock.sendall(frame[sent:])
        kind, _ = client.Lines(sock).next()
    except (OSError, protocol.ProtocolError):
        kind = None
    if kind != "P":
        sock.close()
        return None
    sock.settimeout(None)
    return Requested(sock)


class Forked:
    """A monitor this process forked: wait() reaps it."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def wait(self):
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def close(self):
        pass


def fork_monitor(pod_path, ready_fd, lock_fd, stderr_fd, trace):
    """Fork the monitor here (its own session); returns a Forked."""
    _flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return Forked(pid)
    become_monitor(pod_path, ready_fd, lock_fd, stderr_fd, trace, parent)


def become_monitor(pod_path, ready_fd, lock_fd, stderr_fd, trace, parent):
    """In a just-forked process: be the pod's monitor (monitor/supervisor.py's main), with
    exactly fds 0 and 1 (/dev/null), 2 (stderr_fd), ready_fd and lock_fd; never returns."""
    code = 1
    try:
        # What the forking process allocated joins podd's frozen objects: no collection in
        # the monitor walks (and so copies) them.
        gc.freeze()
        os.setsid()
        for signo in (signal.SIGIO, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH,
                      signal.SIGCHLD):
            signal.signal(signo, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        _only_fds(stderr_fd, (ready_fd, lock_fd))
        os.environ["NSPOD_TRACE"] = "1" if trace else "0"
        from nsPod.kernel import syscalls
        syscalls.set_trace(trace)
        from nsPod.monitor import supervisor
        code = supervisor.main([pod_path, str(ready_fd), str(lock_fd), str(parent)])
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        try:
            _flush()
        finally:
            os._exit(code)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()     # or a child would write what was buffered a second time
        except (OSError, ValueError):
            pass


def _only_fds(stderr_fd, keep):
    """0 and 1 /dev/null, 2 stderr_fd, the fds of `keep`: every other fd closed (the
    command's stdio and socket, podd's listener, any lock taken). The Python objects that held
    them are frozen with the rest and never collected, so none closes a number reused later."""
    devnull = os.open("/dev/null", os.O_RDWR)
    if stderr_fd != 2:
        os.dup2(stderr_fd, 2)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    lowest = 3
    for fd in sorted(set(keep)):
        os.closerange(lowest, fd)
        lowest = fd + 1
    os.closerange(lowest, os.sysconf("SC_OPEN_MAX"))


def fork_child(body, *args):
    """Fork; the child runs body(*args) and ends with its exit code, never returning into
    podd's loop (a traceback goes to the child's stderr, podd's log). The parent gets the
    pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = body(*args)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)
