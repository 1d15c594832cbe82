"""Talking to netd, the warm network helper of a state root (starting it when needed).

Cheap to import (no pyroute2, no C extension): the per-pod monitor and the CLI use it.

    reply = netclient.call(root, {"op": "attach", "pod": "web", "pid": 1234,
                                  "bridge": "nspod0", "subnet": "10.89.0.0/16"})

One netd per root, whoever asks: a client that finds no netd listening takes
<root>/network/netd.lock itself (flock, non-blocking) and hands the locked fd to the netd it
starts, so of many clients starting at once exactly one starts a netd and the others wait
for its socket; a netd started by hand without the lock exits quietly when the lock is taken.
The started netd says "ready" on a pipe once it listens. A request whose connection drops
without a reply (netd exiting on idle just then) is sent again: every op is idempotent.
"""
import fcntl
import json
import os
import select
import socket
import sys
import time

from nsPod import jsonline
from nsPod.errors import NetworkError

NETWORK_DIR = "network"
SOCKET_FILE = "netd.sock"
LOCK_FILE = "netd.lock"
LOG_FILE = "netd.log"
DEFAULT_TIMEOUT = 10.0
MAX_STARTS = 3
POLL = 0.005


def _path(root, name):
    return os.path.join(root, NETWORK_DIR, name)


class unix_address:
    """A path a unix socket can bind or connect to, even past sun_path's 108 bytes.

    A long state root would make <root>/network/netd.sock too long for AF_UNIX; the same
    socket is reached through /proc/self/fd/<an O_PATH fd of its directory>/netd.sock.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        if len(os.fsencode(self.path)) < 100:
            return self.path
        self.fd = os.open(os.path.dirname(self.path), os.O_PATH | os.O_CLOEXEC)
        return f"/proc/self/fd/{self.fd}/{os.path.basename(self.path)}"

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Unreachable(Exception):
    """No netd listening, or the connection closed before a reply: worth another try."""


def call(root, request, timeout=DEFAULT_TIMEOUT):
    """Send one request to the root's netd, starting one if none runs; returns its reply.

    Raises NetworkError with netd's message when it answers {"error": ...}, or when no
    answer comes within `timeout` seconds.
    """
    tracing = os.environ.get("NSPOD_TRACE") == "1"
    if tracing and "trace" not in request:
        request = dict(request, trace=True)
    deadline = time.monotonic() + timeout
    starts = 0
    while True:
        try:
            reply = _exchange(root, request, deadline)
            break
        except _Unreachable as e:
            problem = e
        if time.monotonic() >= deadline:
            raise NetworkError(f"the network helper of {root} did not answer within "
                               f"{timeout:g} s ({problem}){_log_tail(root)}")
        ready = None
        if starts < MAX_STARTS:
            ready = start(root)
            if ready is not None:
                starts += 1
        elif running(root) is None:
            raise NetworkError(f"the network helper of {root} does not start "
                               f"({problem}){_log_tail(root)}")
        _wait(ready, deadline)
    lines = reply.pop("trace", None)
    if lines:
        from nsPod.syscalls import trace
        for line in lines:
            trace(f"netd: {line}")
    if "error" in reply:
        raise NetworkError(reply["error"])
    return reply


def attach(root, pod, pause_pid, bridge, subnet, preferred=None, timeout=DEFAULT_TIMEOUT):
    """Give the pod an address and plug pause's netns into the bridge; returns netd's reply:
    {"ip", "prefixLength", "gateway", "mac", "hostVeth", "podVeth", "bridge", "netns"}."""
    request = {"op": "attach", "pod": pod, "pid": int(pause_pid), "bridge": bridge,
               "subnet": subnet}
    if preferred:
        request["preferred"] = preferred
    return call(root, request, timeout)


def detach(root, pod, bridge, subnet, wait=True, remove_bridge=False, timeout=DEFAULT_TIMEOUT):
    """Undo attach (netns name, veth, lease); idempotent. Returns what was removed."""
    return call(root, {"op": "detach", "pod": pod, "bridge": bridge, "subnet": subnet,
                       "wait": wait, "removeBridge": remove_bridge}, timeout)["removed"]


def gc(root, bridge, subnet, keep, timeout=DEFAULT_TIMEOUT):
    """Remove the network remains (lease, veth, netns name) of every pod not in `keep`, then
    the bridge if nothing uses it. Starts no netd when there is visibly nothing to do."""
    from nsPod import ipam
    keep = sorted(set(keep))
    try:
        stale = set(ipam.Leases(root, subnet).all()) - set(keep)
    except NetworkError:
        stale = {"?"}
    bridge_there = os.path.exists(os.path.join("/sys/class/net", bridge))
    if not stale and not bridge_there:
        return []
    return call(root, {"op": "gc", "bridge": bridge, "subnet": subnet, "keep": keep},
                timeout)["removed"]


def prewarm(root):
    """Start the root's netd if none runs, without waiting for it (e.g. early in `nspod run`,
    so that pyroute2 loads while the pod's pause is being made)."""
    try:
        ready = start(root)
    except NetworkError:
        return
    if ready is not None:
        os.close(ready)


def start(root):
    """Start a netd unless one holds the lock; returns the read end of its ready pipe, or None.

    The caller must read or close the fd. netd is detached (new session), its stdin and stdout
    /dev/null and its stderr <root>/network/netd.log. It inherits the caller's cgroups: start
    it from a process outside any pod's cgroup.
    """
    directory = os.path.join(root, NETWORK_DIR)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock_fd = os.open(_path(root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise NetworkError(f"start the network helper: {e.strerror}: {e.filename}") from e
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None          # a netd runs (or is starting, or is exiting)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        log_fd = os.open(_path(root, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o600)
        import subprocess   # only when starting one: keeps the warm path's import light
        try:
            subprocess.Popen(
                [sys.executable, "-P", "-m", "nsPod.netd", root,
                 "--ready-fd", str(ready_w), "--lock-fd", str(lock_fd)],
                pass_fds=(ready_w, lock_fd), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log_fd, start_new_session=True, cwd="/")
        except OSError as e:
            os.close(ready_r)
            raise NetworkError(f"start the network helper: {e}") from e
        finally:
            os.close(ready_w)
            os.close(log_fd)
        return ready_r
    finally:
        os.close(lock_fd)    # the lock now lives on in netd's copy of the fd


def running(root):
    """The pid of the root's netd, or None when none holds the lock."""
    try:
        fd = os.open(_path(root, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        return None
    finally:
        os.close(fd)


def stop(root, timeout=5.0):
    """Ask the root's netd to exit and wait until it has; True when one was running."""
    if running(root) is None:
        return False
    deadline = time.monotonic() + timeout
    asked = False
    while running(root) is not None:
        if time.monotonic() >= deadline:
            raise NetworkError(f"the network helper of {root} did not exit within {timeout:g} s")
        if not asked:
            try:     # a netd still starting has no socket yet: ask again until it listens
                _exchange(root, {"op": "exit"}, min(deadline, time.monotonic() + 1))
                asked = True
            except _Unreachable:
                pass
        time.sleep(POLL)
    return True


def _exchange(root, request, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Unreachable("out of time")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(remaining)
        try:
            with unix_address(_path(root, SOCKET_FILE)) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise _Unreachable("not running") from e
        except socket.timeout:
            raise _Unreachable("connect timed out") from None
        try:
            jsonline.send(sock, request)
            data = jsonline.read_line(sock)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise _Unreachable("connection dropped") from e
        except socket.timeout:
            raise NetworkError(f"the network helper of {root} did not answer "
                               f"{request.get('op')} in time{_log_tail(root)}") from None
    if not data.endswith(b"\n"):
        raise _Unreachable("connection closed without a reply")
    try:
        return json.loads(data)
    except ValueError as e:
        raise NetworkError(f"the network helper of {root} answered nonsense: {e}") from e


def _wait(ready, deadline):
    """Until the started netd says ready (or dies), or a short pause when another starts it."""
    if ready is None:
        time.sleep(POLL)
        return
    try:
        select.select([ready], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(ready)


def _log_tail(root, lines=3):
    try:
        with open(_path(root, LOG_FILE), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2048))
            tail = f.read().decode(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f"; {_path(root, LOG_FILE)}: " + " | ".join(tail) if tail else ""
