"""netd: the warm network helper of one state root in one network namespace.

    python -P -m nsPod.net.daemon ROOT [--ready-fd N] [--lock-fd N]

Loads pyroute2 once and does the netlink work of every pod of ROOT made from the network
namespace it lives in (the one it was started from), so neither the per-pod monitor nor the
CLI pays its import (200-400 ms, ~25 MB). It is started on demand by nsPod.net.client and
exits after NSPOD_NETD_IDLE seconds (default 30, at most a day) without a request.
<ino> below is the inode of its network namespace.

    <root>/network/netd.<ino>.lock  flock held for netd's whole life: one netd per root and
                               netns. netclient takes it before starting one and hands it over
                               (--lock-fd); started by hand, netd takes it itself, or exits
                               quietly when another netd holds it. Holds "<pid> <start
                               time>"; netd removes it as it exits.
    <root>/network/netd.<ino>.sock  root-only unix socket (0600 in a 0700 directory; peers
                               must be uid 0): one JSON request line in, one JSON reply line
                               out, per connection; requests are served one at a time.
    <root>/network/netd.log    the stderr of every netd of the root

Requests ({"op": ..., "trace": true adds the narrated steps as "trace": [...]}):
    ping    -> {"ok": true, "pid": N, "root", "netnsKey": <ino>}
    attach  {"pod", "pid", "bridge", "subnet", "preferred"?, "netns"?: true,
             "netnsInode"?: pause's netns as recorded, "staleNetnsInode"?: an earlier one}
            lease from ipam (noted with the netns it binds), bridge ensured (refused unless
            it is free or nspod's for ROOT), veth (refused if a link of its name is not
            the pod's), eth0 configured, /run/netns/<netclient.netns_name> (refused if it
            exists and holds no netns of the pod's)
            -> {"ok", "ip", "prefixLength", "gateway", "mac", "hostVeth", "podVeth",
                "bridge", "netns", "netnsInode"}   on failure nothing of it stays (the lease
                                         only if the pod held it before)
            {"address": CIDR, "gateway": IP} instead of "subnet": no ipam, that address.
    detach  {"pod", "bridge", "subnet"?, "hostVeth"?, "release"?: true, "removeBridge"?: false,
             "wait"?: true, "netnsInodes"?: [the pod's recorded netns inodes]}
            the netns name if it holds a recorded netns (the request's or the lease's), the
            veth if it carries the pod's mark, the lease (with "subnet"), the bridge when
            unused and ROOT's; idempotent
            -> {"ok", "removed": [...]}   "wait": false replies before deleting the veth
                                          (~20 ms of RCU waits), which is done before the
                                          next request is read
    gc      {"bridge", "subnet", "keep": [pod names], "netnsInodes"?: {pod: [inodes]}}: the
            lease, marked veth and recorded netns name of every pod not in keep go, then the
            bridge when unused and marked as ROOT's -> {"ok", "removed": [...]}
    exit    reply, then exit
On failure: {"error": "one line"}.

At idle exit, a bridge this netd worked with is removed when it carries ROOT's mark, no pod
of ROOT holds a lease in this netns (or one not attached yet) and no link is its port.
"""
import fcntl
import os
import selectors
import signal
import socket
import sys
import time

from nsPod.net import client as netclient
from nsPod.errors import NetworkError
from nsPod.net.client import unix_address
from nsPod.net.ops import Netd, _log

LOG_FILE = netclient.LOG_FILE
DEFAULT_IDLE = 30.0
LOG_LIMIT = 1 << 20
# epoll_wait takes an int of milliseconds (~24.8 days): a longer idle would raise
# OverflowError in select(); a day is plenty for a helper that restarts on demand.
MAX_IDLE = 86400.0


def idle_seconds(environ=None):
    """NSPOD_NETD_IDLE in seconds: the default when unset, unparsable, not positive or NaN;
    at most MAX_IDLE."""
    env = os.environ if environ is None else environ
    try:
        value = float(env.get("NSPOD_NETD_IDLE") or DEFAULT_IDLE)
    except ValueError:
        return DEFAULT_IDLE
    if value != value or value <= 0:   # NaN, zero, negative: the default
        return DEFAULT_IDLE
    return min(value, MAX_IDLE)      # 1e9 and inf: as long as a selector can wait


def _take_lock(path, fd=None):
    """The netd lock of (root, netns): the fd handed over by netclient, or taken here; None if
    held. A lock file is removed by the netd exiting: one locked after that is retried."""
    if fd is None:
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            if netclient.same_file(fd, path):
                break
            os.close(fd)
        else:
            return None
    else:
        os.set_inheritable(fd, False)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # ours already: a no-op check
    from nsPod.store.state import process_start_time
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {process_start_time(os.getpid())}\n".encode(), 0)
    return fd


def _listen(path):
    """Bind beside the final path and rename over it: clients never see a half-made socket,
    and a stale socket of a dead netd is replaced in one step."""
    tmp = f"{path}.{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        with unix_address(tmp) as address:
            sock.bind(address)
    finally:
        os.umask(old)
    sock.listen(128)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


def _unlink_if_ours(path, inode):
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _parse_args(argv):
    root, ready_fd, lock_fd = None, None, None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--ready-fd":
            ready_fd = int(args.pop(0))
        elif arg == "--lock-fd":
            lock_fd = int(args.pop(0))
        elif root is None:
            root = arg
        else:
            raise SystemExit("usage: python -m nsPod.net.daemon ROOT [--ready-fd N] [--lock-fd N]")
    if root is None or not os.path.isabs(root):
        raise SystemExit("usage: python -m nsPod.net.daemon ROOT (an absolute path)")
    return os.path.normpath(root), ready_fd, lock_fd


def main(argv):
    root, ready_fd, lock_fd = _parse_args(argv)
    os.chdir("/")
    os.umask(0o077)
    netd = Netd(root)
    os.makedirs(netd.dir, mode=0o700, exist_ok=True)
    lock_fd = _take_lock(netd.lock_path, lock_fd)
    if lock_fd is None:
        return 0          # another netd serves this root in this netns
    _trim_log(os.path.join(netd.dir, LOG_FILE))

    # Whoever started us (a monitor) may have blocked signals: the mask survives exec.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signo, frame: None)

    from nsPod.net import links
    try:
        links._host_ipr()   # pyroute2 comes in here, once
    except NetworkError as e:
        _log(f"cannot start: {e}")
        return 1
    listener, inode = _listen(netd.socket_path)
    idle = idle_seconds()
    if ready_fd is not None:
        try:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        except OSError:
            pass

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listen")
    selector.register(wakeup_r, selectors.EVENT_READ, "signal")
    last = time.monotonic()
    try:
        while not netd.stop:
            remaining = idle - (time.monotonic() - last)
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                if key.data == "signal":
                    try:
                        while os.read(wakeup_r, 64):
                            pass
                    except BlockingIOError:
                        pass
                    netd.stop = True
                elif not netd.stop:
                    conn, _ = listener.accept()
                    netd.serve(conn)
                    last = time.monotonic()
    finally:
        # New clients now find no socket and wait for the lock, which goes with us; those
        # already queued on the listener are served rather than dropped.
        _unlink_if_ours(netd.socket_path, inode)
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, OSError):
                break
            conn.setblocking(True)
            netd.serve(conn)
        listener.close()
        netd.cleanup_on_exit()
        links.close()
        # Still holding it: a client that opens the path from now on gets a new file, and
        # one that locked this one finds it unlinked (netclient.same_file) and retries.
        if netclient.same_file(lock_fd, netd.lock_path):
            try:
                os.unlink(netd.lock_path)
            except OSError:
                pass
    return 0


def _trim_log(path):
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            os.truncate(path, 0)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
