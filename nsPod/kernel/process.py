"""Forking a child that sets itself up and execs, with its failures sent back to the parent.

The protocol, over a SOCK_SEQPACKET socketpair whose ends are close-on-exec:

    child                                     parent
    pre_fork()   (setns, unshare)
    [fork_again: fork; the first child
     sends PID <grandchild>, _exits]  ---->   reaps the first child; now knows the pid
                                              prepare(pid)   (e.g. enter a cgroup)
                                     <----    GO
    parent-death signal; check parent
    main(): steps..., execve
    execve closes the socket          ---->   EOF: the program runs; spawn returns the pid
    or ERROR {step, errno, message}    ---->   spawn reaps the child, raises ChildFailed

fork_again is what a pid namespace needs: unshare(CLONE_NEWPID) or setns into one only
affects the caller's children. The grandchild is re-parented to the caller, which must be a
child subreaper (the monitor is).

Rule: the child never returns into the parent's code. It execs or _exits.
"""
import contextlib
import json
import os
import select
import signal
import socket

from nsPod.errors import NspodError, describe

GO = b"go"


class StepFailed(Exception):
    """A named step of a child's setup failed; `cause` is what it raised."""

    def __init__(self, step, cause):
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {describe(cause)}")


class ChildFailed(NspodError):
    def __init__(self, step, err, message, pid=None, status=None):
        self.step = step
        self.errno = err
        self.message = message
        self.pid = pid
        self.status = status
        super().__init__(message)


@contextlib.contextmanager
def step(name):
    """Name what the child is doing, so its failure says so ('mount volume data at /data')."""
    try:
        yield
    except StepFailed:
        raise
    except BaseException as e:
        raise StepFailed(name, e) from e


def spawn(main, *, pre_fork=None, fork_again=False, prepare=None, set_pdeathsig=None):
    """Fork; the child runs pre_fork, (forks again,) waits for GO, runs main, which execs.

    Returns the pid of the process that runs the program. `set_pdeathsig` is called in the
    child right after GO, with the child's parent then final (the caller, by fork or by
    re-parenting).
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        _child(child_sock, main, pre_fork, fork_again, set_pdeathsig)
    child_sock.close()
    try:
        with parent_sock:
            if fork_again:
                message = _receive(parent_sock)
                _reap(pid)
                if message is None or "pid" not in message:
                    raise _failure(message, pid=None)
                pid = message["pid"]
            if prepare is not None:
                prepare(pid)
            parent_sock.send(GO)
            message = _receive(parent_sock)
            if message is not None:
                _, status = os.waitpid(pid, 0)
                raise _failure(message, pid=pid, status=status)
            return pid
    except ChildFailed:
        raise
    except BaseException:
        _kill_and_reap(pid)
        raise


def _failure(message, pid, status=None):
    if message is None:
        message = {"step": "start", "errno": 0, "message": "the child exited before it started"}
    return ChildFailed(message.get("step"), message.get("errno"), message["message"], pid, status)


def _receive(sock):
    data = sock.recv(65536)
    return json.loads(data) if data else None


def _reap(pid):
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _kill_and_reap(pid):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _child(sock, main, pre_fork, fork_again, set_pdeathsig):
    """Never returns: execs (inside main) or _exits."""
    code = 1
    try:
        # The parent's handlers and blocked signals must not leak into the new program.
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if pre_fork is not None:
            pre_fork()
        if fork_again:
            pid = os.fork()
            if pid != 0:
                sock.send(json.dumps({"pid": pid}).encode())
                os._exit(0)
        if sock.recv(16) != GO:
            os._exit(1)
        if set_pdeathsig is not None:
            set_pdeathsig()
            # The parent may have died between GO and the prctl: then no signal will come.
            if select.select([sock], [], [], 0)[0] and sock.recv(16) == b"":
                os._exit(1)
        main()
        raise RuntimeError("child main returned instead of exec'ing")
    except StepFailed as e:
        code = _report(sock, e.step, e.cause)
    except BaseException as e:
        code = _report(sock, "start", e)
    os._exit(code)


def _report(sock, step_name, exc):
    err = getattr(exc, "errno", None) or 0
    message = getattr(exc, "user_message", None) or f"{step_name}: {describe(exc)}"
    try:
        sock.send(json.dumps({"step": step_name, "errno": err, "message": message}).encode())
    except OSError:
        pass
    return 127 if err == 2 else 126 if err == 13 else 1
