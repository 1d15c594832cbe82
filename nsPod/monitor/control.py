"""The control socket: what `nspod stop/add/restart/apply` ask a running pod's monitor.

One JSON line per connection, root only (SO_PEERCRED), read as it arrives: a client that
connects and then sends nothing, or slowly, never holds up the loop (CONTROL_TIMEOUT to
send it, MAX_REQUESTS pending at most). A bad request is its sender's error, answered,
never the pod's end. A request with "trace": true is answered through a Relay (relay.py):
the steps taken for it first, one {"trace": record} line each, then the answer.
"""
import contextlib
import json
import os
import selectors
import socket
import struct
import sys

from nsPod import jsonline
from nsPod.errors import NspodError, describe
from nsPod.kernel.cgroups import Limits
from nsPod.monitor import cri_ops, phase
from nsPod.monitor.relay import Relay, Relays
from nsPod.plan.lifecycle import INIT
from nsPod.plan.make import container_from_json
from nsPod.store import state

CONTROL_TIMEOUT = 2.0
MAX_REQUESTS = 16            # control connections whose request is still coming


class Control:
    def __init__(self, monitor):
        self.m = monitor
        self.sock = None
        self.requests = {}         # control connection -> [bytes so far, timeout timer]
        self.stop_waiters = []     # connections to answer when the pod is down
        self.init_waiters = {}     # container name -> connections waiting for it to end
        self.relays = Relays(monitor)

    def open(self):
        m = self.m
        path = m.dir.file(state.CONTROL_SOCKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # root-only from the moment it exists
        try:
            # Through /proc/self/fd/<the pod directory>: its path may be longer than the 108
            # bytes of sun_path (a 253-character pod name is valid).
            with m.dir.socket_address(state.CONTROL_SOCKET) as address:
                self.sock.bind(address)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.sock.setblocking(False)   # a client gone between readiness and accept: EAGAIN
        m.selector.register(self.sock, selectors.EVENT_READ, "control")

    def on_control(self):
        """Accept a control connection. Its request is read as it arrives (on_request)."""
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return   # gone before we took it
        try:
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
        except OSError:
            conn.close()
            return
        problem = "only root may control a pod" if uid != 0 else \
            "too many requests at once; try again" if len(self.requests) >= MAX_REQUESTS \
            else None
        if problem:
            conn.settimeout(CONTROL_TIMEOUT)
            send(conn, {"error": problem})
            conn.close()
            return
        conn.setblocking(False)
        timer = self.m.timers.at(CONTROL_TIMEOUT, lambda: self.drop_request(conn))
        self.requests[conn] = [b"", timer]
        self.m.selector.register(conn, selectors.EVENT_READ, "request")

    def on_request(self, conn):
        pending = self.requests.get(conn)
        if pending is None:
            return
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        pending[0] += chunk
        data = pending[0]
        if chunk and b"\n" not in chunk and len(data) <= jsonline.MAX_LINE:
            return   # more to come
        self.forget_request(conn)
        # The reply is small; it goes out with a bounded wait, as do the later answers to
        # stop and add --init.
        conn.settimeout(CONTROL_TIMEOUT)
        self.handle_request(conn, data.split(b"\n", 1)[0])

    def forget_request(self, conn):
        _, timer = self.requests.pop(conn)
        self.m.timers.cancel(timer)
        with contextlib.suppress(KeyError, ValueError):
            self.m.selector.unregister(conn)

    def drop_request(self, conn):
        """A client that did not send its request within CONTROL_TIMEOUT."""
        if conn in self.requests:
            self.forget_request(conn)
            conn.close()

    def handle_request(self, conn, line):
        caller = conn   # the connection, or its Relay when the request is traced
        try:
            if len(line) > jsonline.MAX_LINE:
                raise NspodError("request too long")
            request = json.loads(line)
            if not isinstance(request, dict):
                raise NspodError("a request is a JSON object")
            if request.get("trace") is True:
                caller = self.relays.open(conn)
            op = request.get("op")
            if op == "stop":
                timeout = request.get("timeout")
                if timeout is not None and (isinstance(timeout, bool)
                                            or not isinstance(timeout, (int, float))):
                    raise NspodError(f"stop: timeout {timeout!r} is not a number of seconds")
                self.stop_waiters.append(caller)
                self.m.stopper.begin_stop(self.m.plan.grace_seconds if timeout is None
                                          else timeout)
                return
            if op == "add":
                reply = self.add_container(request, caller)
                if reply is None:
                    return  # an init container: answered when it has ended
            elif op in ("restart", "apply"):
                if isinstance(caller, Relay):
                    # Narrated until the containers have started again: set before, as a
                    # container not running starts within the request.
                    caller.waiting = {request["container"]} if op == "restart" else {
                        c.get("name") for c in request.get("containers", [])
                        if isinstance(c, dict)}
                reply = self.restart_container(request["container"]) if op == "restart" \
                    else self.apply(request)
                if isinstance(caller, Relay):
                    self.relays.answer_after_starts(caller, reply,
                                                    self.m.plan.grace_seconds + 30)
                    return
            elif op == "stop-container":
                reply = cri_ops.stop_container(self, request)
            elif op == "remove-container":
                reply = cri_ops.remove_container(self, request)
            elif op == "rotate-log":
                reply = cri_ops.rotate_log(self, request)
            elif op == "attach":
                # `nspod attach`: answered with fds, the connection then stays as the session
                # (monitor/attach.py); not traced (its steps are none).
                if isinstance(caller, Relay):
                    raise NspodError("attach cannot be traced")
                self.check_running()
                self.m.launcher.attachments.attach(conn, request)
                return
            elif op == "ping":
                reply = {"ok": True}
            else:
                raise NspodError(f"unknown request {op!r}")
        except Exception as e:  # a bad request is its sender's error, never the pod's end
            reply = {"error": describe(e)}
        answer(caller, reply)

    def init_container_ended(self, name, code, reason):
        """`nspod add --init` waits for this: its answer."""
        for caller in self.init_waiters.pop(name, []):
            answer(caller, {"ok": code == 0, "exitCode": code, "reason": reason})

    def pod_down(self):
        """The pod is down: answer `nspod stop`; requests still coming are for a pod gone."""
        down = {"ok": True, "phase": self.m.state.phase}
        for caller in self.stop_waiters:
            if not isinstance(caller, Relay):
                answer(caller, down)
        self.relays.pod_down(lambda relay: down if relay in self.stop_waiters else
                             relay.reply or {"error": f"pod {self.m.plan.name} ended"})
        for conn in list(self.requests):
            conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self.m.dir.file(state.CONTROL_SOCKET))

    # --- the requests ----------------------------------------------------------------------

    def check_running(self):
        m = self.m
        if m.stopping:
            raise NspodError(f"pod {m.plan.name} is stopping")
        if m.sandbox_down:
            raise NspodError(f"pod {m.plan.name} is making a new sandbox; try again")

    def add_container(self, request, caller):
        m = self.m
        self.check_running()
        plan = container_from_json(request["container"])
        if plan.name in m.runs:
            raise NspodError(f"pod {m.plan.name} already has a container {plan.name!r}")
        (m.plan.init_containers if plan.init else m.plan.containers).append(plan)
        self.write_plan(request["manifest"])
        run = m.add_run(plan)
        # A CRI container (nspod cri): the kubelet decides restarts, and its end is not the
        # pod's (the sandbox waits for the next container).
        run.cri = bool(request.get("cri"))
        if run.kind == INIT:
            # `nspod add --init`: runs now, to completion, beside whatever else runs; the
            # answer comes when it has ended.
            run.adhoc = True
            self.init_waiters.setdefault(plan.name, []).append(caller)
            m.scheduler.start(run)
            return None if plan.name in self.init_waiters else {"ok": True}
        warnings = m.scheduler.start(run)
        phase.update(m)
        return {"ok": True, "warnings": warnings}

    def write_plan(self, manifest):
        doc = self.m.dir.read_pod()
        doc["plan"] = self.m.plan.to_json()
        doc["manifest"] = manifest
        self.m.dir.write_pod(doc)

    def restart_container(self, name):
        """`nspod restart`: this container only, now, counted; nothing else changes."""
        m = self.m
        self.check_running()
        run = m.runs.get(name)
        if run is None:
            raise NspodError(f"pod {m.plan.name} has no container {name!r}")
        run.done = False
        if run.pid:
            run.manual_restart = True
            m.stopper.terminate(run, m.plan.grace_seconds)
        else:
            m.timers.cancel(run.pending)
            run.backoff.reset()
            m.scheduler.restart_now(run)
        return {"ok": True}

    def apply(self, request):
        """Replace the plans of changed containers and restart exactly those, in place."""
        m = self.m
        self.check_running()
        changed = [container_from_json(c) for c in request["containers"]]
        for plan in changed:
            if plan.name not in m.runs:
                raise NspodError(f"pod {m.plan.name} has no container {plan.name!r}")
        self.set_limits_all_or_nothing(changed)
        for plan in changed:
            lists = m.plan.init_containers if plan.init else m.plan.containers
            lists[[c.name for c in lists].index(plan.name)] = plan
            m.runs[plan.name].plan = plan
        self.write_plan(request["manifest"])
        for plan in changed:
            self.restart_container(plan.name)
        return {"ok": True}

    def set_limits_all_or_nothing(self, plans):
        """Every changed container's new limits, or (when the kernel refuses one) none.

        Each cgroup's current values are saved before it is written; a refusal puts back
        those already written, in reverse, and the apply fails with nothing changed. A
        container whose cgroup is not made yet gets its new limits when it starts.
        """
        cgroups = self.m.cgroups
        done = []
        try:
            for plan in plans:
                rel = self.m.cgroup_rel(plan.name)
                if not os.path.isdir(cgroups.path(rel)):
                    continue
                # saved first: a set_limits refused half-way is put back too
                done.append((rel, cgroups.save_limits(rel)))
                cgroups.set_limits(rel, Limits(**plan.limits))
        except NspodError:
            for rel, saved in reversed(done):
                try:
                    cgroups.restore_limits(rel, saved)
                except NspodError as e:
                    print(f"nspod monitor: apply: putting back the limits of {rel}: "
                          f"{describe(e)}", file=sys.stderr)
            raise


def answer(caller, reply):
    """The last word to a caller: its Relay's, or one line on its connection, closed."""
    if isinstance(caller, Relay):
        caller.answer(reply)
    else:
        send(caller, reply)
        caller.close()


def send(conn, reply):
    with contextlib.suppress(OSError):
        jsonline.send(conn, reply)
