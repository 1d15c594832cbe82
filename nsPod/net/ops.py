"""What netd answers: one method a request (op_attach, op_detach, op_gc, ...) over the
links, veths and /run/netns names of net/, with the checks of each request's fields.
net/daemon.py is the process around it (lock, socket, idle exit, log).
"""
import contextlib
import json
import os
import socket
import struct
import time
import traceback

from nsPod.net import ipam, client as netclient
from nsPod import jsonline
from nsPod.kernel import tracing
from nsPod.errors import InputError, NetworkError, NspodError
from nsPod.net import links, netns, veth


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
        pod = _pod_name(request)
        pid = _positive_int(request, "pid")
        bridge = _bridge(request)
        want_netns = request.get("netns", True)
        expected = _optional_inode(request, "netnsInode")
        replace = {i for i in [_optional_inode(request, "staleNetnsInode")] if i}
        undo = []
        ns_fd = veth.open_netns(pid)
        try:
            inode = os.fstat(ns_fd).st_ino
            if expected and inode != expected:
                raise NetworkError(f"attach pod {pod}: pid {pid} is in netns {inode}, not the "
                                   f"pod's {expected} (its pause is gone)")
            # Before any lease: a bridge that is not this root's is refused with nothing made.
            links.check_bridge(bridge, self.root)
            if request.get("address"):
                address = str(request["address"])
                gateway = _required(request, "gateway")
            else:
                leases = ipam.Leases(self.root, _required(request, "subnet"))

                def notes_for(held):
                    # The pod's record, written with its lease before its veth and netns name
                    # are made: which netns they are in, and which netns its /run/netns name
                    # may hold.
                    replace.update(i for i in (held.get("netnsInode"),
                                               held.get("staleNetnsInode"))
                                   if isinstance(i, int) and i != inode)
                    notes = {"netnsKey": self.key, "netnsInode": inode}
                    if replace:
                        notes["staleNetnsInode"] = max(replace)
                    return notes

                ip, created = leases.acquire(pod, request.get("preferred"), notes_for)
                if created:
                    undo.append(lambda: leases.release(pod))
                address, gateway = leases.cidr(ip), leases.gateway
                self.bridges[bridge] = leases.subnet
            result = veth.attach(pod, pid, address, gateway, bridge, self.root,
                                    netns_fd=ns_fd)
            undo.append(lambda: veth.detach(result["hostVeth"], self.root, pod))
            if want_netns:
                result["netns"] = netns.netns_attach(self.root, pod, pid, netns_fd=ns_fd,
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
        pod = _pod_name(request)
        bridge = _bridge(request)
        host = request.get("hostVeth") or links.host_veth_name(self.root, pod, bridge)
        if not isinstance(host, str) or not links.is_host_veth_name(host):
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
                if netns.netns_detach(self.root, pod, inodes):
                    removed.append(links.netns_path(self.root, pod))
            with steps.step():
                if request.get("wait", True):
                    if veth.detach(host, self.root, pod):
                        removed.append(f"veth {host}")
                elif links.link_alias(host) == links.veth_mark(self.root, pod):
                    # Deleting a veth waits for RCU grace periods (~20 ms): done after the
                    # reply, and before the next request is read, so no later request sees it.
                    self.after_reply.append(lambda: veth.detach(host, self.root, pod))
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
            links.remove_bridge_if_unused(bridge, self.root)

    def op_gc(self, request):
        bridge = _bridge(request)
        leases = ipam.Leases(self.root, _required(request, "subnet"))
        keep = request.get("keep") or []
        if not isinstance(keep, list) or not all(isinstance(p, str) for p in keep):
            raise InputError("keep: a list of pod names")
        given = request.get("netnsInodes") or {}
        if not isinstance(given, dict):
            raise InputError("netnsInodes: an object of pod name -> list of inodes")
        removed = []
        kept_veths = {links.host_veth_name(self.root, p, bridge) for p in keep}
        stale = sorted((set(leases.all()) | set(given)) - set(keep))
        with _Teardown("gc") as steps:
            for pod in stale:
                _pod_name({"pod": pod})
                ip = leases.lease_of(pod)
                host = links.host_veth_name(self.root, pod, bridge)
                inodes = self._recorded_inodes(
                    leases, pod, _inode_list({"op": "gc", "i": given.get(pod)}, "i"))
                with steps.step():
                    if netns.netns_detach(self.root, pod, inodes):
                        removed.append(links.netns_path(self.root, pod))
                with steps.step():
                    if veth.detach(host, self.root, pod):
                        removed.append(f"veth {host}")
                if ip:
                    with steps.step():
                        if leases.release(pod):
                            removed.append(f"lease {ip} of pod {pod}")
            # Veths of this root's pods that no lease names any more: only those carrying
            # this root's marker, on this root's bridge.
            if links.is_ours_bridge(bridge, self.root):
                for port, alias in veth.veths_of(bridge, self.root).items():
                    if port not in kept_veths:
                        with steps.step():
                            if veth.delete_veth_marked(port, alias):
                                removed.append(f"veth {port}")
            with steps.step():
                if self._remove_bridge(bridge, leases.subnet):
                    removed.append(f"bridge {bridge}")
        return {"removed": removed}

    # --- helpers -----------------------------------------------------------------------------

    def _bridge_unused(self, bridge, subnet):
        """The bridge is this root's (its marker) and no pod of this root in this netns needs
        it: none holds a lease here (nor one not yet attached anywhere), none is its port."""
        if not links.is_ours_bridge(bridge, self.root):
            return False
        if subnet:
            try:
                for lease in ipam.Leases(self.root, subnet).records().values():
                    if lease.get("netnsKey") in (None, self.key):
                        return False
            except NspodError:
                return False
        return not links.bridge_ports(bridge)

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
        try:
            request = json.loads(data)
        except ValueError as e:
            return {"error": f"netd: bad request: {e}"}
        if not (isinstance(request, dict) and request.get("trace")):
            return self._handle_logged(request)
        # The steps taken for this request go back in its reply, for the client to narrate.
        with tracing.captured() as records:
            reply = self._handle_logged(request)
        reply["trace"] = records
        return reply

    def _handle_logged(self, request):
        try:
            return self.handle(request)
        except ValueError as e:
            return {"error": f"netd: bad request: {e}"}
        except NspodError as e:
            return {"error": str(e)}
        except Exception as e:
            _log("internal error:\n" + traceback.format_exc())
            return {"error": f"netd: internal error: {type(e).__name__}: {e}"}


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
