"""podd's loop: accept, check the peer, read one bounded request without blocking, fork.

Hostile-checked: the socket is 0600 in a 0700 directory, and a peer that is neither root nor
podd's uid (SO_PEERCRED) is refused; a request is read a piece at a time as it comes, at most
protocol.MAX_BODY bytes and protocol.RUN_FDS descriptors, within REQUEST_SECONDS, and at most
MAX_PENDING connections are read at once, so a client that sends slowly or not at all holds
up nobody else. Nothing of a request is acted on before it is whole and well-formed.
"""
import fcntl
import gc
import os
import selectors
import signal
import socket
import struct
import sys
import time

from nsPod.warm import client, protocol

DEFAULT_IDLE = 30.0
MAX_IDLE = 86400.0
REQUEST_SECONDS = 5.0
MAX_PENDING = 64
LOG_LIMIT = 1 << 20
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# What a command may need, imported once here so that no command or monitor pays for it.
PRELOAD = ("nsPod.podd.command", "nsPod.podd.watcher", "nsPod.cli", "nsPod.api.pods",
           "nsPod.api.query", "nsPod.api.enter", "nsPod.api.change", "nsPod.api.manifests", "nsPod.api.pulls", "nsPod.api.render",
           "nsPod.api.session", "nsPod.api.workloads", "nsPod.api.volumes",
           "nsPod.manifest.load", "nsPod.manifest.spec", "nsPod.manifest.check",
           "nsPod.plan.make", "nsPod.monitor.supervisor", "nsPod.monitor.teardown",
           "nsPod.monitor.checks", "nsPod.monitor.ports", "nsPod.kernel.container",
           "nsPod.kernel.sandbox", "nsPod.kernel.cgroups", "nsPod.kernel.mounts",
           "nsPod.kernel.volumes", "nsPod.kernel.seccomp", "nsPod.net.client",
           "nsPod.net.ipam", "nsPod.store.logs", "nsPod.store.images")


def idle_seconds(environ=None):
    """NSPOD_WARM_IDLE in seconds: the default when unset, unparsable, not positive or NaN."""
    env = os.environ if environ is None else environ
    try:
        value = float(env.get("NSPOD_WARM_IDLE") or DEFAULT_IDLE)
    except ValueError:
        return DEFAULT_IDLE
    if value != value or value <= 0:
        return DEFAULT_IDLE
    return min(value, MAX_IDLE)


def _log(message):
    try:
        os.write(2, f"podd[{os.getpid()}]: {message}\n".encode())
    except OSError:
        pass


def preload():
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:   # a command that needs it will say what is wrong
            _log(f"import {name}: {type(e).__name__}: {e}")


def peer_allowed(sock):
    """Root, or the uid podd runs as: SO_PEERCRED, as the kernel saw the peer connect."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


class Pending:
    """A connection whose request is not whole yet."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = protocol.FrameReader()
        self.deadline = time.monotonic() + REQUEST_SECONDS

    def read(self):
        """The request once whole, else None; ProtocolError or OSError drop it."""
        want = min(self.reader.needed(), 65536)
        fd_space = socket.CMSG_SPACE(protocol.RUN_FDS * 4)
        data, ancillary, flags, _ = self.sock.recvmsg(want, fd_space, socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
        if flags & socket.MSG_CTRUNC:
            self.reader.fds.extend(fds)
            raise protocol.ProtocolError("too many file descriptors")
        if not data:
            self.reader.fds.extend(fds)
            raise protocol.ProtocolError("closed before the request was whole")
        body = self.reader.feed(data, fds)
        if body is None:
            return None
        request = protocol.decode_body(body)
        expected = protocol.FDS[request.op]
        if len(self.reader.fds) != expected:
            raise protocol.ProtocolError(f"{request.op} comes with {expected} descriptors, "
                                         f"not {len(self.reader.fds)}")
        return request

    def close(self):
        for fd in self.reader.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.reader.fds = []
        self.sock.close()


class Podd:
    def __init__(self, root, key, lock_fd):
        self.root, self.key, self.lock_fd = root, key, lock_fd
        self.stop = False
        self.pending = {}
        self.selector = selectors.DefaultSelector()
        self.listener = None
        self.wakeup = None

    def own_fds(self):
        """What a forked command must close: podd's listener, selector, wakeup pipe, lock
        and every other connection."""
        fds = [self.listener.fileno(), self.selector.fileno(), *self.wakeup, self.lock_fd]
        return fds + [p.sock.fileno() for p in self.pending.values()] + \
            [fd for p in self.pending.values() for fd in p.reader.fds]

    def serve(self, idle):
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.wakeup[0], selectors.EVENT_READ, "signal")
        last = time.monotonic()
        while not self.stop:
            now = time.monotonic()
            for pending in [p for p in self.pending.values() if p.deadline <= now]:
                self.drop(pending, "no whole request in time")
            if self.pending:
                timeout = min(p.deadline for p in self.pending.values()) - now
            else:
                timeout = idle - (now - last)
                if timeout <= 0:
                    break
            for key, _ in self.selector.select(max(timeout, 0)):
                if key.data == "signal":
                    self.on_signal()
                elif key.data == "listen":
                    self.accept()
                else:
                    self.on_readable(key.data)
                last = time.monotonic()

    def on_signal(self):
        try:
            while True:
                got = os.read(self.wakeup[0], 64)
                if not got:
                    break
                if set(got) & STOP_SIGNALS:
                    self.stop = True
        except BlockingIOError:
            pass
        self.reap()

    def reap(self):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self.pending) >= MAX_PENDING or not peer_allowed(sock):
            _send(sock, protocol.encode_reply("E", "refused: not root or podd's uid, or busy"))
            sock.close()
            return
        sock.setblocking(False)
        pending = Pending(sock)
        self.pending[sock.fileno()] = pending
        self.selector.register(sock, selectors.EVENT_READ, pending)

    def forget(self, pending):
        self.selector.unregister(pending.sock)
        del self.pending[pending.sock.fileno()]

    def drop(self, pending, why):
        _log(f"request dropped: {why}")
        _send(pending.sock, protocol.encode_reply("E", why))
        self.forget(pending)
        pending.close()

    def on_readable(self, pending):
        try:
            request = pending.read()
        except BlockingIOError:
            return
        except (protocol.ProtocolError, OSError, UnicodeError) as e:
            self.drop(pending, str(e))
            return
        if request is None:
            return
        self.forget(pending)
        try:
            self.answer(pending, request)
        finally:
            pending.close()

    def answer(self, pending, request):
        if request.op == "ping":
            _send(pending.sock, protocol.encode_reply("P", os.getpid()))
        elif request.op == "exit":
            _send(pending.sock, protocol.encode_reply("P", os.getpid()))
            self.stop = True
        else:
            from nsPod.podd import command, watcher
            pending.sock.setblocking(True)
            forker = command if request.op == "run" else watcher
            forker.fork(pending.sock, request, pending.reader.fds, self.own_fds())


def _send(sock, data):
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass


def _take_lock(path, fd):
    os.set_inheritable(fd, False)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # handed over locked: a check
    if not client.same_file(fd, path):
        raise SystemExit("podd: the lock file was replaced")
    from nsPod.store.state import process_start_time
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {process_start_time(os.getpid())}\n".encode(), 0)


def _listen(path):
    tmp = f"{path}.{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(tmp)
    finally:
        os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


def _parse_args(argv):
    usage = "usage: python -P -m nsPod.podd ROOT --lock-fd N --key KEY"
    if len(argv) != 5 or argv[1] != "--lock-fd" or argv[3] != "--key" \
            or not os.path.isabs(argv[0]) or not argv[2].isdigit():
        raise SystemExit(usage)
    return os.path.normpath(argv[0]), int(argv[2]), argv[4]


def main(argv):
    root, lock_fd, key = _parse_args(argv)
    os.chdir("/")
    os.umask(0o077)
    if key != client.context_key():
        raise SystemExit("podd: started in another context than its key says")
    directory = client.usable_dir(root, create=False)
    if directory is None:
        raise SystemExit(f"podd: {client.warm_dir(root)} is not a directory of ours (0700)")
    path = client.socket_path(root, key)
    if len(os.fsencode(path)) >= client.SUN_PATH_MAX:
        raise SystemExit(f"podd: {path} is too long for a unix socket")
    _take_lock(client.lock_path(root, key), lock_fd)
    _trim_log(os.path.join(directory, client.LOG_FILE))
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup[1])
    for signo in (*STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(signo, lambda signo, frame: None)
    preload()
    gc.collect()
    gc.freeze()    # everything imported: no collection in a fork walks (so copies) it
    podd = Podd(root, key, lock_fd)
    podd.wakeup = wakeup
    podd.listener, inode = _listen(path)
    try:
        podd.serve(idle_seconds())
    finally:
        # New clients find no socket and run in-process; queued ones are answered E and do
        # the same (no command has started for them).
        _unlink_if(path, inode)
        for pending in list(podd.pending.values()):
            podd.drop(pending, "podd is exiting")
        podd.listener.close()
        if client.same_file(lock_fd, client.lock_path(root, key)):
            _unlink_if(client.lock_path(root, key), os.fstat(lock_fd).st_ino)
    return 0


def _unlink_if(path, inode):
    try:
        if os.stat(path, follow_symlinks=False).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _trim_log(path):
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            os.truncate(path, 0)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
