"""Talking to netd, the warm network helper of a state root (starting it when needed).

Cheap to import (no pyroute2, no C extension): the per-pod monitor and the CLI use it.

    reply = netclient.call(root, {"op": "attach", "pod": "web", "pid": 1234,
                                  "bridge": "nspod0", "subnet": "10.89.0.0/16"})

One netd per (root, network namespace of the caller): links, bridges and addresses belong
to a network namespace, so a `nspod run` inside `unshare --net` or `ip netns exec X` must talk
to a netd that lives in that namespace, not to the host's. The socket and lock are named by
the caller's netns inode: <root>/network/netd.<ino>.sock and netd.<ino>.lock. A client that
finds no netd listening takes the lock itself (flock, non-blocking) and hands the locked fd to
the netd it starts (which inherits the client's netns), so of many clients starting at once
exactly one starts a netd and the others wait for its socket; a netd started by hand without
the lock exits quietly when the lock is taken. The started netd says "ready" on a pipe once it
listens. A request whose connection drops without a reply (netd exiting on idle just then) is
sent again: every op is idempotent.

The names nspod gives to things outside the state root are made here too (cheap, so the
monitor can record them before asking netd to make them), with the markers that tell nspod's
links from anybody else's.
"""
import contextlib
import fcntl
import json
import os
import select
import socket
import sys
import time

from nsPod import jsonline, lockwait
from nsPod.errors import NetworkError

# config.DEFAULT_ROOT (config imports dataclasses, which the monitor does without).
DEFAULT_ROOT = "/run/nspod"

NETWORK_DIR = "network"
LOG_FILE = "netd.log"
DEFAULT_TIMEOUT = 10.0
MAX_STARTS = 3
POLL = 0.005

NETNS_DIR = "/run/netns"
NETNS_PREFIX = "nspod-"
HOST_VETH_PREFIX = "nsp"
# ifalias (IFLA_IFALIAS) markers: nspod writes them on the links it makes and touches no link
# without the right one. The kernel keeps at most 255 bytes of an alias.
BRIDGE_MARK = "nspod root="
BRIDGE_MARK_HASHED = "nspod root-sha256="
VETH_MARK = "nspod veth "
IFALIAS_MAX = 255


def _sha(text):
    return _sha256()(text.encode()).hexdigest()


def _sha256():
    """CPython's own sha256: importing hashlib loads OpenSSL (~2-5 ms), paid by every
    bridged pod's monitor for nothing. The same digest either way."""
    try:
        from _sha2 import sha256          # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256    # Python <= 3.11
        except ImportError:
            from hashlib import sha256
    return sha256


def netns_key():
    """The inode of the caller's network namespace: which netd serves it."""
    return os.stat("/proc/self/ns/net").st_ino


def socket_path(root, key=None):
    return _path(root, f"netd.{netns_key() if key is None else key}.sock")


def lock_path(root, key=None):
    return _path(root, f"netd.{netns_key() if key is None else key}.lock")


def same_file(fd, path):
    """Whether `path` still names the file open at `fd`: a lock file is unlinked by the netd
    that held it last, so a lock taken on an unlinked file is no lock at all."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _path(root, name):
    return os.path.join(root, NETWORK_DIR, name)


# --- names and markers ---------------------------------------------------------------------------


def netns_name(root, pod_name):
    """The pod's `ip netns` name: /run/netns is global to the host, so the name is unique per
    state root. nspod-<pod> for the default root, nspod-<8 hex of sha256(root)>-<pod> for any
    other; a name longer than a file name allows (255 bytes) keeps its first 238 bytes and
    ends in -<16 hex of sha256(root, pod)>."""
    if os.path.normpath(root) == DEFAULT_ROOT:
        name = NETNS_PREFIX + pod_name
    else:
        name = f"{NETNS_PREFIX}{_sha(os.path.normpath(root))[:8]}-{pod_name}"
    if len(name.encode()) > 255:
        digest = _sha(f"{os.path.normpath(root)}\0{pod_name}")[:16]
        name = f"{name.encode()[:238].decode(errors='ignore')}-{digest}"
    return name


def netns_path(root, pod_name):
    return os.path.join(NETNS_DIR, netns_name(root, pod_name))


def host_veth_name(root, pod_name, bridge):
    """nsp + 12 hex digits of a hash of root, bridge and pod: 15 characters (IFNAMSIZ - 1)."""
    return HOST_VETH_PREFIX + _sha(f"{os.path.normpath(root)}\0{bridge}\0{pod_name}")[:12]


def is_host_veth_name(name):
    return (len(name) == 15 and name.startswith(HOST_VETH_PREFIX)
            and all(c in "0123456789abcdef" for c in name[3:]))


def bridge_mark(root):
    """The ifalias of a bridge nspod made for `root`: the root itself when it fits."""
    root = os.path.normpath(root)
    mark = BRIDGE_MARK + root
    if len(mark.encode()) > IFALIAS_MAX or not mark.isprintable():
        mark = BRIDGE_MARK_HASHED + _sha(root)
    return mark


def veth_mark(root, pod_name):
    """The ifalias of a host veth nspod made: which root (16 hex) and which pod (16 hex)."""
    pod = _sha(os.path.normpath(root) + "\0" + pod_name)[:16]
    return veth_mark_prefix(root) + pod


def veth_mark_prefix(root):
    """What every host veth of `root` has at the start of its ifalias."""
    return f"{VETH_MARK}{_sha(os.path.normpath(root))[:16]} "


def link_index(name):
    """The link's ifindex in the caller's netns, or None. An ioctl, so it is right in any
    netns (a /sys mounted for another netns, as inside `unshare --net`, is not)."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError):
        return None


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
    from nsPod.kernel import tracing
    if tracing.enabled() and "trace" not in request:
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
    records = reply.pop("trace", None)
    if isinstance(records, list):
        # netd's steps, as if taken here; plain lines say they are netd's.
        for obj in records:
            record = tracing.record_from_wire(obj) if isinstance(obj, dict) \
                else tracing.legacy_record(obj)
            if record is not None:
                tracing.emit(dict(record, text=f"netd: {record['text']}"))
    if "error" in reply:
        raise NetworkError(reply["error"])
    return reply


def attach(root, pod, pause_pid, bridge, subnet, preferred=None, netns_inode=None,
           stale_netns_inode=None, timeout=DEFAULT_TIMEOUT):
    """Give the pod an address and plug pause's netns into the bridge; returns netd's reply:
    {"ip", "prefixLength", "gateway", "mac", "hostVeth", "podVeth", "bridge", "netns"}.

    `netns_inode`: pause's netns as the caller recorded it (netd refuses a pid that now names
    another netns); `stale_netns_inode`: the netns an earlier sandbox of the pod had, whose
    /run/netns name may be replaced."""
    request = {"op": "attach", "pod": pod, "pid": int(pause_pid), "bridge": bridge,
               "subnet": subnet}
    if preferred:
        request["preferred"] = preferred
    if netns_inode:
        request["netnsInode"] = int(netns_inode)
    if stale_netns_inode:
        request["staleNetnsInode"] = int(stale_netns_inode)
    return call(root, request, timeout)


def detach(root, pod, bridge, subnet, wait=True, remove_bridge=False, record=None,
           timeout=DEFAULT_TIMEOUT):
    """Undo attach (netns name, veth, lease); idempotent. Returns what was removed.

    `record`: the pod's network record (its state's "network"): the netns inodes in it say
    which netns its /run/netns name may hold; netd also knows the one its lease recorded."""
    request = {"op": "detach", "pod": pod, "bridge": bridge, "subnet": subnet,
               "wait": wait, "removeBridge": remove_bridge}
    inodes = _netns_inodes(record)
    if inodes:
        request["netnsInodes"] = inodes
    return call(root, request, timeout)["removed"]


def gc(root, bridge, subnet, keep, records=None, timeout=DEFAULT_TIMEOUT):
    """Remove the network remains (lease, veth, netns name) of every pod not in `keep`, then
    the bridge if it is nspod's for this root and nothing uses it. `records`: {pod: the
    network record of its state} of pods not kept, whose netns names may be removed. Starts
    no netd when there is visibly nothing to do."""
    from nsPod.net import ipam
    keep = sorted(set(keep))
    try:
        stale = set(ipam.Leases(root, subnet).all()) - set(keep)
    except NetworkError:
        stale = {"?"}
    records = {pod: _netns_inodes(record) for pod, record in (records or {}).items()}
    records = {pod: inodes for pod, inodes in records.items() if inodes}
    if not stale and not records and link_index(bridge) is None:
        return []
    return call(root, {"op": "gc", "bridge": bridge, "subnet": subnet, "keep": keep,
                       "netnsInodes": records}, timeout)["removed"]


def _netns_inodes(record):
    """The netns inodes a pod's network record says its /run/netns name may hold."""
    record = record or {}
    found = []
    for key in ("netnsInode", "staleNetnsInode"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
                and value not in found:
            found.append(value)
    return found


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
        lock = lock_path(root)
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise NetworkError(f"start the network helper: {e.strerror}: {e.filename}") from e
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None          # a netd runs (or is starting, or is exiting)
        if not same_file(lock_fd, lock):
            return None          # the netd that held it just exited and removed it: retry
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        log_fd = os.open(_path(root, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o600)
        import subprocess   # only when starting one: keeps the warm path's import light
        try:
            subprocess.Popen(
                [sys.executable, "-P", "-m", "nsPod.net.daemon", root,
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
    """The pid of the root's netd for the caller's netns, or None when none holds the lock."""
    return lockwait.lock_holder_pid(lock_path(root))


def stop(root, timeout=5.0):
    """Ask the root's netd (of the caller's netns) to exit and wait until it has; True when
    one was running."""
    def ask(deadline):
        # A netd still starting has no socket yet, one busy (a veth's deletion) may answer
        # late: ask until the deadline, then the lock alone says it is gone.
        with contextlib.suppress(_Unreachable, NetworkError):
            _exchange(root, {"op": "exit"}, deadline)
            return True
        return False

    return lockwait.stop_lock_holder(
        lock_path(root), ask, timeout, poll=POLL,
        too_late=lambda: NetworkError(f"the network helper of {root} did not exit within "
                                      f"{timeout:g} s"))


def _exchange(root, request, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Unreachable("out of time")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(remaining)
        try:
            with unix_address(socket_path(root)) as address:
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
