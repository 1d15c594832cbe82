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
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from nsPod.net import ipam, client as netclient
from nsPod import jsonline
from nsPod.kernel import syscalls
from nsPod.errors import InputError, NetworkError, NspodError
from nsPod.net.client import unix_address

LOG_FILE = netclient.LOG_FILE
DEFAULT_IDLE = 30.0
MAX_IDLE = 86400.0   # selectors take no longer wait than ~24.8 days (epoll's int milliseconds)
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


def _log(message):
    try:
        os.write(2, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} netd[{os.getpid()}]: {message}\n".encode())
    except OSError:
        pass


class Netd:
    def __init__(self, root):
        self.root = root
        self.dir = ipam.network_dir(root)
        self.key = netclient.netns_key()     # the netns this netd lives in and serves
        self.socket_path = netclient.socket_path(root, self.key)
        self.lock_path = netclient.lock_path(root, self.key)
        self.bridges = {}        # bridge -> subnet, of every bridge this netd worked with
        self.stop = False
        self.network = None
        self.after_reply = []    # work a request left for after its reply was sent

    # --- requests ------------------------------------------------------------------------------

    def handle(self, request):
        if not isinstance(request, dict):
            raise InputError("a request is a JSON object")
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            raise InputError(f"unknown op {op!r}")
        reply = handler(request) or {}
        reply["ok"] = True
        return reply

    def op_ping(self, request):
        return {"pid": os.getpid(), "root": self.root, "netnsKey": self.key}

    def op_exit(self, request):
        self.stop = True
        return {"pid": os.getpid()}

    def op_attach(self, request):
        network = self.network
        pod = _pod_name(request)
        pid = _positive_int(request, "pid")
        bridge = _bridge(request)
        want_netns = request.get("netns", True)
        expected = _optional_inode(request, "netnsInode")
        replace = {i for i in [_optional_inode(request, "staleNetnsInode")] if i}
        undo = []
        ns_fd = network.open_netns(pid)
        try:
            inode = os.fstat(ns_fd).st_ino
            if expected and inode != expected:
                raise NetworkError(f"attach pod {pod}: pid {pid} is in netns {inode}, not the "
                                   f"pod's {expected} (its pause is gone)")
            # Before any lease: a bridge that is not this root's is refused with nothing made.
            network.check_bridge(bridge, self.root)
            if request.get("address"):
                address = str(request["address"])
                gateway = _required(request, "gateway")
            else:
                leases = ipam.Leases(self.root, _required(request, "subnet"))
                ip, created = leases.acquire(pod, request.get("preferred"))
                if created:
                    undo.append(lambda: leases.release(pod))
                address, gateway = leases.cidr(ip), leases.gateway
                self.bridges[bridge] = leases.subnet
                # The pod's record, written before its veth and netns name are made: which
                # netns they are in, and which netns its /run/netns name may hold.
                held = leases.record_of(pod) or {}
                replace |= {i for i in (held.get("netnsInode"), held.get("staleNetnsInode"))
                            if isinstance(i, int) and i != inode}
                notes = {"netnsKey": self.key, "netnsInode": inode}
                if replace:
                    notes["staleNetnsInode"] = max(replace)
                leases.note(pod, **notes)
            result = network.attach(pod, pid, address, gateway, bridge, self.root,
                                    netns_fd=ns_fd)
            undo.append(lambda: network.detach(result["hostVeth"], self.root, pod))
            if want_netns:
                result["netns"] = network.netns_attach(self.root, pod, pid, netns_fd=ns_fd,
                                                       replace=replace)
            result["netnsInode"] = inode
            return result
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception as e:   # keep the first error; say what could not be undone
                    _log(f"attach {pod}: undo failed: {e}")
            raise
        finally:
            os.close(ns_fd)

    def _recorded_inodes(self, leases, pod, given=()):
        """The netns inodes the pod's records name: the caller's (its state) and its lease's."""
        found = set(given)
        held = leases.record_of(pod) if leases is not None else None
        for key in ("netnsInode", "staleNetnsInode"):
            value = (held or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                found.add(value)
        return found

    def op_detach(self, request):
        network = self.network
        pod = _pod_name(request)
        bridge = _bridge(request)
        host = request.get("hostVeth") or network.host_veth_name(self.root, pod, bridge)
        if not isinstance(host, str) or not network.is_host_veth_name(host):
            raise InputError(f"hostVeth {host!r} is not the name of an nspod veth")
        subnet = request.get("subnet")
        leases = None
        if subnet:
            self.bridges[bridge] = ipam.parse_subnet(subnet).exploded
            leases = ipam.Leases(self.root, subnet)
        inodes = self._recorded_inodes(leases, pod, _inode_list(request, "netnsInodes"))
        removed = []
        with _Teardown(f"detach pod {pod}") as steps:
            with steps.step():
                if network.netns_detach(self.root, pod, inodes):
                    removed.append(network.netns_path(self.root, pod))
            with steps.step():
                if request.get("wait", True):
                    if network.detach(host, self.root, pod):
                        removed.append(f"veth {host}")
                elif network.link_alias(host) == network.veth_mark(self.root, pod):
                    # Deleting a veth waits for RCU grace periods (~20 ms): done after the
                    # reply, and before the next request is read, so no later request sees it.
                    self.after_reply.append(lambda: network.detach(host, self.root, pod))
                    removed.append(f"veth {host}")
            if leases is not None and request.get("release", True):
                with steps.step():
                    ip = leases.release(pod)
                    if ip:
                        removed.append(f"lease {ip}")
            if request.get("removeBridge"):
                with steps.step():
                    if self.after_reply:
                        self.after_reply.append(lambda: self._remove_bridge(bridge, subnet))
                    elif self._remove_bridge(bridge, subnet):
                        removed.append(f"bridge {bridge}")
        return {"removed": removed}

    def _remove_bridge(self, bridge, subnet):
        return self._bridge_unused(bridge, subnet) and \
            self.network.remove_bridge_if_unused(bridge, self.root)

    def op_gc(self, request):
        network = self.network
        bridge = _bridge(request)
        leases = ipam.Leases(self.root, _required(request, "subnet"))
        keep = request.get("keep") or []
        if not isinstance(keep, list) or not all(isinstance(p, str) for p in keep):
            raise InputError("keep: a list of pod names")
        given = request.get("netnsInodes") or {}
        if not isinstance(given, dict):
            raise InputError("netnsInodes: an object of pod name -> list of inodes")
        removed = []
        kept_veths = {network.host_veth_name(self.root, p, bridge) for p in keep}
        stale = sorted((set(leases.all()) | set(given)) - set(keep))
        with _Teardown("gc") as steps:
            for pod in stale:
                _pod_name({"pod": pod})
                ip = leases.lease_of(pod)
                host = network.host_veth_name(self.root, pod, bridge)
                inodes = self._recorded_inodes(
                    leases, pod, _inode_list({"op": "gc", "i": given.get(pod)}, "i"))
                with steps.step():
                    if network.netns_detach(self.root, pod, inodes):
                        removed.append(network.netns_path(self.root, pod))
                with steps.step():
                    if network.detach(host, self.root, pod):
                        removed.append(f"veth {host}")
                if ip:
                    with steps.step():
                        if leases.release(pod):
                            removed.append(f"lease {ip} of pod {pod}")
            # Veths of this root's pods that no lease names any more: only those carrying
            # this root's marker, on this root's bridge.
            if network.is_ours_bridge(bridge, self.root):
                for port, alias in network.veths_of(bridge, self.root).items():
                    if port not in kept_veths:
                        with steps.step():
                            if network.delete_veth_marked(port, alias):
                                removed.append(f"veth {port}")
            with steps.step():
                if self._remove_bridge(bridge, leases.subnet):
                    removed.append(f"bridge {bridge}")
        return {"removed": removed}

    # --- helpers -----------------------------------------------------------------------------

    def _bridge_unused(self, bridge, subnet):
        """The bridge is this root's (its marker) and no pod of this root in this netns needs
        it: none holds a lease here (nor one not yet attached anywhere), none is its port."""
        if not self.network.is_ours_bridge(bridge, self.root):
            return False
        if subnet:
            try:
                for lease in ipam.Leases(self.root, subnet).records().values():
                    if lease.get("netnsKey") in (None, self.key):
                        return False
            except NspodError:
                return False
        return not self.network.bridge_ports(bridge)

    def cleanup_on_exit(self):
        for bridge, subnet in self.bridges.items():
            try:
                if self._remove_bridge(bridge, subnet):
                    _log(f"idle: removed the unused bridge {bridge}")
            except Exception as e:
                _log(f"idle: could not remove bridge {bridge}: {e}")

    # --- serving -----------------------------------------------------------------------------

    def serve(self, conn):
        conn.settimeout(5.0)
        reply = None
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            data = jsonline.read_line(conn)
            if not data:
                return
            if uid != 0:
                reply = {"error": "netd serves root only"}
            else:
                reply = self.answer(data)
            jsonline.send(conn, reply)
        except OSError as e:
            _log(f"connection: {e}")
        finally:
            conn.close()
            self.run_after_reply()

    def run_after_reply(self):
        work, self.after_reply = self.after_reply, []
        for step in work:
            try:
                step()
            except Exception as e:
                _log(f"after reply: {e}")

    def answer(self, data):
        lines = None
        saved_trace = syscalls.trace
        try:
            request = json.loads(data)
            if isinstance(request, dict) and request.get("trace"):
                lines = []
                syscalls.trace = lines.append
            reply = self.handle(request)
        except ValueError as e:
            reply = {"error": f"netd: bad request: {e}"}
        except NspodError as e:
            reply = {"error": str(e)}
        except Exception as e:
            _log("internal error:\n" + traceback.format_exc())
            reply = {"error": f"netd: internal error: {type(e).__name__}: {e}"}
        finally:
            syscalls.trace = saved_trace
        if lines is not None:
            reply["trace"] = lines
        return reply


class _Teardown:
    """Every step of an undo is tried; the failures are raised together at the end.

        with _Teardown("detach pod web") as steps:
            with steps.step(): first()
            with steps.step(): second()     # runs even when first() failed
    """

    def __init__(self, what):
        self.what = what
        self.errors = []

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None and self.errors:
            raise NetworkError(f"{self.what}: " + "; ".join(self.errors))
        return False

    @contextlib.contextmanager
    def step(self):
        try:
            yield
        except Exception as e:
            self.errors.append(str(e) if isinstance(e, NspodError) else f"{type(e).__name__}: {e}")


def _required(request, key):
    value = request.get(key)
    if value in (None, ""):
        raise InputError(f"{request.get('op')}: {key!r} is required")
    return value


def _pod_name(request):
    pod = _required(request, "pod")
    if not isinstance(pod, str) or "/" in pod or "\0" in pod or pod in (".", ".."):
        raise InputError(f"pod: {pod!r} is not a pod name")
    return pod


def _bridge(request):
    bridge = _required(request, "bridge")
    if not isinstance(bridge, str) or not 0 < len(bridge) <= 15 or "/" in bridge \
            or not bridge.isprintable() or " " in bridge:
        raise InputError(f"bridge: {bridge!r} is not a link name")
    return bridge


def _optional_inode(request, key):
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{request.get('op')}: {key!r} must be a positive integer")
    return value


def _inode_list(request, key):
    value = request.get(key) or []
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise InputError(f"{request.get('op')}: {key!r} must be a list of positive integers")
    return value


def _positive_int(request, key):
    value = request.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{request.get('op')}: {key!r} must be a positive integer")
    return value


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

    from nsPod.net import links as network  # pyroute2 comes in here, once
    netd.network = network
    try:
        network._host_ipr()
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
        network.close()
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
