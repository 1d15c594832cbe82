"""One command in a process forked from podd: the caller's world put back, then nsPod.cli.

The process is made as a fresh `nspod` would be, and used once: the caller's stdio as 0, 1
and 2, its working directory (fchdir), environment and umask; its own session; podd's
signal handlers, listener, selector, lock and other connections gone. Its socket to the
client stays: the first line says the command runs (P<pid>), the last its exit code
(X<code>). Bytes from the client are signals to deliver here (SIGIO wakes us for them); EOF
from the client means it was killed, and the command dies with it (SIGKILL), as a command
run in the client's own process would have.
"""
import fcntl
import io
import os
import signal
import socket
import sys

from nsPod.warm import forking, protocol


def fork(sock, request, fds, podd_fds):
    """Fork the command's process; podd closes its copies of the request's fds after."""
    return forking.fork_child(_run, sock, request, fds, podd_fds)


def _run(sock, request, fds, podd_fds):
    try:
        sock.sendall(protocol.encode_reply("P", os.getpid()))
    except OSError:
        return 0                     # the client is gone: no command
    for fd in podd_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for signo in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)
    os.setsid()
    stdin, stdout, stderr, cwd = fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    os.fchdir(cwd)
    for fd in fds:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request.env)
    os.umask(request.umask)
    if os.environ.get("NSPOD_TRACE") == "1":
        from nsPod.kernel import syscalls
        syscalls.set_trace(True)
    _new_stdio()
    sys.argv = ["nspod", *request.argv]
    forking.mark_warm()
    _deliver_signals_from(sock)
    code = _command(request.argv)
    signal.signal(signal.SIGIO, signal.SIG_IGN)   # the client's EOF after X is no news
    try:
        sock.sendall(protocol.encode_reply("X", code))
    except OSError:
        pass
    return code


def _new_stdio():
    """sys.stdin/stdout/stderr over the caller's 0, 1, 2, buffered as a fresh interpreter's
    would be (stdout by line on a terminal only); podd's stay referenced by sys.__std*__, so
    collecting them cannot close the fds."""
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding=encoding,
                                 errors=errors)
    sys.stdout = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding=encoding,
                                  errors=errors, line_buffering=os.isatty(1))
    sys.stderr = io.TextIOWrapper(io.open(2, "wb", closefd=False), encoding=encoding,
                                  errors="backslashreplace", line_buffering=True)


def _deliver_signals_from(sock):
    def on_io(signo, frame):
        while True:
            try:
                data = sock.recv(64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                os.kill(os.getpid(), signal.SIGKILL)
            for byte in data:
                if byte in protocol.FORWARDED_SIGNALS:
                    os.kill(os.getpid(), byte)

    signal.signal(signal.SIGIO, on_io)
    fcntl.fcntl(sock.fileno(), fcntl.F_SETOWN, os.getpid())
    flags = fcntl.fcntl(sock.fileno(), fcntl.F_GETFL)
    fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, flags | os.O_ASYNC)
    on_io(signal.SIGIO, None)      # what came before SIGIO was asked for


def _command(argv):
    """nsPod.cli.main without its os._exit: the exit code of one command."""
    from nsPod import cli
    from nsPod.errors import ExitCode
    try:
        code = cli.run_command(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (ExitCode.OK if e.code is None
                                                             else ExitCode.FAILURE)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or ExitCode.FAILURE
    return int(code)
