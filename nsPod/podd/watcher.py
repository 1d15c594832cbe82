"""A pod's monitor, forked from podd through a watcher (nsPod/warm/forking.py says why).

The watcher is the monitor's parent while the command that asked waits for the monitor's
ready word: it sleeps in poll() on the command's socket and a pidfd of the monitor. The
command hanging up (done, or killed) ends the watcher; a monitor still making the pod then
gets its parent-death SIGTERM and undoes it. A monitor that ends first has its exit status
sent to the command (X<code>), which waits for it after a failed start.
"""
import os
import select
import signal

from nsPod.warm import forking, protocol


def fork(sock, request, fds, podd_fds):
    """Fork the watcher; podd closes its copies of the request's fds after."""
    return forking.fork_child(_watch, sock, request, fds, podd_fds)


def _watch(sock, request, fds, podd_fds):
    for fd in podd_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for signo in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signo, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.setsid()
    os.chdir("/")
    os.environ.clear()
    os.environ.update(request.env)
    os.umask(request.umask)
    pod_path, trace = request.argv[0], request.argv[1] == "1"
    ready_fd, lock_fd, stderr_fd = fds
    parent = os.getpid()
    monitor = os.fork()
    if monitor == 0:
        sock.close()
        forking.become_monitor(pod_path, ready_fd, lock_fd, stderr_fd, trace, parent)
    for fd in fds:
        os.close(fd)
    try:
        sock.sendall(protocol.encode_reply("P", monitor))
    except OSError:
        return 0            # the command is gone: so are we, and the monitor undoes the pod
    pidfd = os.pidfd_open(monitor)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == pidfd:
                _, status = os.waitpid(monitor, 0)
                try:
                    sock.sendall(protocol.encode_reply("X", os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                poller.unregister(pidfd)
            elif not sock.recv(64):
                return 0     # the command hung up: the monitor is on its own now
