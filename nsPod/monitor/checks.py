"""Probes and lifecycle hooks, each run as a short-lived child of the monitor.

A child per check keeps the monitor's loop free of blocking connects, HTTP parsing and
timeouts: the child's exit status is the result (0 success), the monitor kills it when
timeoutSeconds pass, and SIGCHLD tells the monitor it is done, like any other child.
exec handlers join the container's namespaces and cgroup, as `nspod exec` does; httpGet
and tcpSocket join only the pod's network namespace and connect to the pod's IP (or
127.0.0.1 on a pod without one), as the kubelet connects to the pod's IP.

Checks is the state machine around them (the kubelet's prober and its hook runner): probe
periods and thresholds, the startup probe gating liveness and readiness, postStart holding
later starts, preStop before SIGTERM. It spawns through the monitor's Launcher, so tests
run it with a fake one.
"""
import os
import signal
import socket
import sys

from nsPod.kernel import namespaces
from nsPod.monitor import phase

HOOKS = ("postStart", "preStop")


class Checks:
    def __init__(self, monitor):
        self.m = monitor

    # --- probes ----------------------------------------------------------------------------

    def begin_probes(self, run):
        """A startup probe first, alone; liveness and readiness begin once it succeeded."""
        lc = run.plan.lifecycle
        if lc.get("startupProbe"):
            self.schedule_probe(run, "startupProbe", first=True)
            return
        for kind in ("livenessProbe", "readinessProbe"):
            if lc.get(kind):
                self.schedule_probe(run, kind, first=True)

    def schedule_probe(self, run, kind, first=False):
        spec = run.plan.lifecycle[kind]
        probe = run.probes.setdefault(kind, {"successes": 0, "failures": 0, "pid": None,
                                             "timer": None})
        delay = spec["initialDelaySeconds"] if first else spec["periodSeconds"]
        serial = run.serial
        probe["timer"] = self.m.timers.at(delay, lambda: self.run_probe(run, kind, serial))

    def run_probe(self, run, kind, serial):
        m = self.m
        if run.pid is None or run.serial != serial or m.stopping:
            return
        spec = run.plan.lifecycle[kind]
        pid = m.launcher.spawn_check(run, m.cstate(run), spec["handler"])
        probe = run.probes[kind]
        if pid is None:
            self.probe_result(run, kind, serial, False)
            return
        probe["pid"] = pid
        m.children[pid] = ("check", run, kind, serial)
        probe["timer"] = m.timers.at(spec["timeoutSeconds"],
                                     lambda: m.launcher.kill(pid, signal.SIGKILL))

    def on_check_exit(self, what, status):
        _, run, kind, serial = what
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if kind in HOOKS:
            run.hook_pid = None
            self.hook_done(run, kind, serial, ok)
            return
        probe = run.probes.get(kind)
        if probe:
            self.m.timers.cancel(probe["timer"])
            probe["pid"] = None
        self.probe_result(run, kind, serial, ok)

    def probe_result(self, run, kind, serial, ok):
        m = self.m
        if run.pid is None or run.serial != serial or m.stopping:
            return
        spec = run.plan.lifecycle[kind]
        probe = run.probes[kind]
        if ok:
            probe["successes"] += 1
            probe["failures"] = 0
        else:
            probe["failures"] += 1
            probe["successes"] = 0
        cstate = m.cstate(run)
        if kind == "startupProbe":
            if ok:
                cstate.started = True
                cstate.ready = run.plan.lifecycle.get("readinessProbe") is None
                m.save()
                for other in ("livenessProbe", "readinessProbe"):
                    if run.plan.lifecycle.get(other):
                        self.schedule_probe(run, other, first=True)
                m.scheduler.advance()
                phase.update(m)
                return
            if probe["failures"] >= spec["failureThreshold"]:
                self.kill_for_probe(run, spec)
                return
        elif kind == "livenessProbe":
            if probe["failures"] >= spec["failureThreshold"]:
                self.kill_for_probe(run, spec)
                return
        elif kind == "readinessProbe":
            ready = cstate.ready
            if ok and probe["successes"] >= spec["successThreshold"]:
                ready = True
            elif not ok and probe["failures"] >= spec["failureThreshold"]:
                ready = False
            if ready != cstate.ready:
                cstate.ready = ready
                m.save()
                phase.update(m)
        self.schedule_probe(run, kind)

    def kill_for_probe(self, run, spec):
        """A failed liveness or startup probe: the container is killed, then restarted by
        the pod's policy (as the kubelet does; with Never it just ends)."""
        grace = spec.get("terminationGracePeriodSeconds")
        self.m.stopper.terminate(run, self.m.plan.grace_seconds if grace is None else grace)

    # --- hooks -----------------------------------------------------------------------------

    def run_hook(self, run, kind):
        m = self.m
        handler = run.plan.lifecycle[kind]
        serial = run.serial
        if handler["kind"] == "sleep":
            m.timers.at(handler["seconds"], lambda: self.hook_done(run, kind, serial, True))
            return
        pid = m.launcher.spawn_check(run, m.cstate(run), handler)
        if pid is None:
            self.hook_done(run, kind, serial, False)
            return
        run.hook_pid = pid
        m.children[pid] = ("check", run, kind, serial)

    def hook_done(self, run, kind, serial, ok):
        m = self.m
        if run.serial != serial or run.pid is None:
            return
        if kind == "postStart":
            if not ok:
                # kuberuntime_container.go startContainer: a failed postStart hook kills the
                # container (FailedPostStartHook: preStop, SIGTERM, grace period); its
                # restart follows the pod's policy. post_start_done stays False, so nothing
                # else starts until it is gone (killContainer returns once it is).
                print(f"nspod monitor: container {run.name}: FailedPostStartHook",
                      file=sys.stderr)
                run.kill_reason = ("FailedPostStartHook: the postStart hook failed; "
                                   "the container was killed")
                m.stopper.terminate(run, m.plan.grace_seconds)
                return
            run.post_start_done = True
            cstate = m.cstate(run)
            if run.plan.lifecycle.get("startupProbe") is None:
                cstate.started = True
                cstate.ready = m.scheduler.ready_when_started(run)
            m.save()
            self.begin_probes(run)
            m.scheduler.advance()  # the next container's turn
            phase.update(m)
        else:
            m.launcher.kill(run.pid, signal.SIGTERM)

    def stop_checks(self, run):
        """The run ended: its probes and its hook have nothing left to check."""
        for probe in run.probes.values():
            self.m.timers.cancel(probe.get("timer"))
            if probe.get("pid"):
                self.m.launcher.kill(probe["pid"], signal.SIGKILL)
        run.probes = {}
        if run.hook_pid:
            self.m.launcher.kill(run.hook_pid, signal.SIGKILL)
            run.hook_pid = None

    # --- the check children ----------------------------------------------------------------


def spawn(handler, pause_pid, pod_ip, target, plan, attach):
    """Start a check; returns its pid. An exec check runs as the container's processes do
    (container.spawn_joined); `attach(pid)` puts it in the container's cgroup first."""
    if handler["kind"] == "exec":
        from nsPod.kernel import container
        return container.spawn_joined(target, plan, handler["command"], attach, quiet=True)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _quiet()
            namespaces.join(pause_pid, ["net"])
            host = handler.get("host") or pod_ip or "127.0.0.1"
            if handler["kind"] == "tcpSocket":
                socket.create_connection((host, handler["port"]), timeout=30).close()
                code = 0
            else:
                code = 0 if _http_ok(handler, host) else 1
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _quiet():
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _http_ok(handler, host):
    """A GET whose status is 200-399 succeeds, as the kubelet's prober decides."""
    import http.client
    kind = http.client.HTTPSConnection if handler.get("scheme") == "HTTPS" else http.client.HTTPConnection
    kwargs = {}
    if kind is http.client.HTTPSConnection:
        import ssl
        kwargs["context"] = ssl._create_unverified_context()  # the kubelet skips verification too
    conn = kind(host, handler["port"], timeout=30, **kwargs)
    headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*"}
    headers.update(dict(handler.get("headers") or ()))
    conn.request("GET", handler.get("path") or "/", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return 200 <= status < 400
