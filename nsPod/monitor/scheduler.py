"""What runs when, as the kubelet decides it: init containers in order, native sidecars,
app containers; restarts by policy with crash-loop backoff; the end of the pod.

The rules themselves are plan/lifecycle.py's pure functions; this part applies them to the
pod's runs and acts through the Launcher, so tests drive it with a fake one. A start that
fails is the container's StartError, returned as a warning by whoever asked for the start
(setup's answer to `nspod run`, `nspod add`'s), never raised.
"""
import sys
import time

from nsPod.errors import NspodError, describe
from nsPod.kernel.process import ChildFailed
from nsPod.monitor import phase
from nsPod.plan import lifecycle
from nsPod.plan.lifecycle import APP, INIT, SIDECAR
from nsPod.store import state
from nsPod.store.podstate import ContainerState
from nsPod.store.state import now_rfc3339

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


class Scheduler:
    def __init__(self, monitor):
        self.m = monitor
        self.deferred = []         # runs whose start waits for a postStart hook to return

    def advance(self):
        """Start whatever may start now: the next init container, sidecars, app containers.
        Returns the StartError warnings of the starts it made.

        One at a time, as the kubelet's SyncPod: a container with a postStart hook holds
        every later start until its hook has returned (startContainer runs the hook before
        it returns)."""
        m = self.m
        if m.stopping or m.sandbox_down or m.init_failed:
            return []
        warnings = self.start_deferred()
        if self.hook_running():
            return warnings
        for run in m.ordered((INIT, SIDECAR)):
            if run.kind == INIT:
                if run.completed:
                    continue
                if run.pid is None and run.pending is None and not run.done:
                    warnings += self.start(run)
                if not run.completed:
                    return warnings  # one at a time, each to completion
            else:
                if not run.launched and run.pid is None and run.pending is None:
                    warnings += self.start(run)
                # A sidecar gates the next init container until it has started (its
                # startup probe, when it has one, succeeded).
                if not m.cstate(run).get("started"):
                    return warnings
        m.state.initialized = True
        for run in m.ordered((APP,)):
            if m.stopping or self.hook_running():
                return warnings  # a start that failed may have ended the pod; a postStart runs
            if not run.launched and run.pid is None and run.pending is None and not run.done:
                warnings += self.start(run)
        return warnings

    def hook_running(self):
        """A container's postStart hook has not returned yet (or it failed and the container
        is still being killed): the kubelet starts nothing else meanwhile."""
        return any(r.pid is not None and not r.post_start_done for r in self.m.runs.values())

    def start_deferred(self):
        """Restarts held back by a postStart hook, in the order they were due."""
        warnings = []
        while self.deferred and not self.hook_running() and not self.m.stopping \
                and not self.m.sandbox_down:
            run = self.deferred.pop(0)
            run.deferred = False
            if run.pid is None and run.pending is None and not run.done:
                warnings += self.start(run)
        return warnings

    def drop_deferred(self):
        for run in self.deferred:
            run.deferred = False
        self.deferred = []

    def start_allowed(self, run):
        """The kubelet's order (lifecycle.start_allowed) for this run now."""
        if run.adhoc:
            return True  # `nspod add --init` runs beside whatever runs
        earlier = []
        for other in self.m.ordered((INIT, SIDECAR)):
            if other is run:
                break
            earlier.append((other.kind, other.completed,
                            bool(self.m.cstate(other).get("started"))))
        return lifecycle.start_allowed(run.kind, bool(self.m.state.get("initialized")), earlier)

    def start(self, run):
        """Start one container run; a failure to start is that run's end (StartError).
        Returns the warnings of this start and of what its failure set going."""
        try:
            return self._start(run)
        finally:
            self.m.control.relays.started(run.name)   # `nspod --trace restart` waits for it

    def _start(self, run):
        m = self.m
        cstate = m.cstate(run)
        if cstate.get("everStarted"):
            # Every start after the first is a restart: counted, its predecessor kept as
            # lastState (logs --previous reads that run's file).
            cstate.restartCount += 1
            if cstate.state.has("terminated"):
                cstate.lastState = ContainerState(terminated=cstate.state.terminated)
        run.launched = True
        run.pending = None
        run.serial += 1
        run.kill_reason = None
        run.post_start_done = run.plan.lifecycle.get("postStart") is None
        started_at = now_rfc3339()
        try:
            pid, started_at = m.launcher.start_container(run, cstate)
        except Exception as e:
            # Whatever failed (the child's step, the cgroup, the disk, a bug), it is this
            # container's StartError: the pod and its other containers go on.
            message = e.message if isinstance(e, ChildFailed) else describe(e)
            if not isinstance(e, (ChildFailed, NspodError, OSError)):
                print(f"nspod monitor: container {run.name}: start: {type(e).__name__}: "
                      f"{message}", file=sys.stderr)
            return self.start_failed(run, message, started_at)
        run.pid = pid
        run.started_mono = m.timers.now()
        m.children[pid] = ("container", run)
        ref, ns_ids = m.launcher.identify(pid)
        lc = run.plan.lifecycle
        started = lc.get("startupProbe") is None and run.post_start_done
        cstate.pid, cstate.pidStartTime, cstate.everStarted = ref["pid"], ref["startTime"], True
        cstate.state = ContainerState(running={"startedAt": started_at})
        cstate.started = started
        cstate.ready = started and self.ready_when_started(run)
        cstate.namespaces = ns_ids
        m.save()
        m.test_point("container")
        if not run.post_start_done:
            m.checks.run_hook(run, "postStart")
        elif any(lc.get(kind) for kind in PROBES):
            m.checks.begin_probes(run)
        return []

    def ready_when_started(self, run):
        # A running init container is never ready (only one that exited 0 is); others are
        # ready once started unless a readiness probe says otherwise.
        return run.kind != INIT and run.plan.lifecycle.get("readinessProbe") is None

    def start_failed(self, run, message, started_at):
        cstate = self.m.cstate(run)
        cstate.everStarted = True
        terminated = {"exitCode": 128, "reason": "StartError", "message": message,
                      "startedAt": started_at, "finishedAt": now_rfc3339()}
        warning = f"container {run.name}: StartError: {message}"
        return [warning] + self.ended(run, terminated, ran_for=0.0)

    def on_container_exit(self, run, code, sig):
        m = self.m
        cstate = m.cstate(run)
        oom = m.launcher.container_exited(run, cstate)
        terminated = {
            "exitCode": code,
            "reason": "OOMKilled" if oom else "Completed" if code == 0 else "Error",
            "startedAt": cstate.state.get("running", {}).get("startedAt"),
            "finishedAt": now_rfc3339(),
        }
        if sig:
            terminated["signal"] = sig
        m.launcher.drain(run)
        message = m.launcher.termination_message(run, cstate, code)
        if message:
            terminated["message"] = message
        run.pid = None
        m.stop_checks(run)
        now = m.timers.now()
        self.ended(run, terminated, now - (run.started_mono or now))

    def ended(self, run, terminated, ran_for):
        """A run is over: record it, then restart it, move on, or end the pod, by policy.
        Returns the warnings of the starts that follow from it."""
        m = self.m
        cstate = m.cstate(run)
        cstate.drop("pid")
        cstate.drop("pidStartTime")
        code = terminated["exitCode"]
        if run.kill_reason and not terminated.get("message"):
            terminated["message"] = run.kill_reason
        cstate.state = ContainerState(terminated=terminated)
        cstate.ready = lifecycle.init_container_ready(run.kind, code)
        cstate.started = False
        m.control.init_container_ended(run.name, code, terminated["reason"])
        if m.stopping or m.sandbox_down:
            if m.stopping:
                # The phase follows the stopping containers: a pod whose app containers
                # are done is Succeeded only once its sidecars have terminated too.
                phase.update(m)
            m.save()
            m.sandbox.rebuild_when_reaped()
            return []
        if run.manual_restart:
            run.manual_restart = False
            run.backoff.reset()
            self.schedule_restart(run, 0.0)
        elif run.adhoc or run.cri:
            run.done = True
            run.completed = code == 0
        elif run.kind == INIT and code == 0:
            run.completed = True
        elif lifecycle.should_restart(run.kind, m.plan.restart_policy, code):
            self.schedule_restart(run, run.backoff.next_delay(ran_for))
        else:
            run.done = True
            if run.kind == INIT:
                m.init_failed = run.name
                m.final_reason = None
        m.save()
        warnings = self.advance()
        phase.update(m)
        if run.cri:
            return warnings  # nspod cri: the sandbox outlives its containers
        if m.state.phase in state.TERMINAL_PHASES or \
                lifecycle.apps_finished(phase.app_states(m)):
            # No app container will run again: the sidecars are stopped, then the pod ends
            # (its phase stays Running until they have).
            m.stopper.begin_stop(m.plan.grace_seconds)
        return warnings

    def schedule_restart(self, run, delay):
        cstate = self.m.cstate(run)
        if delay > 0:
            cstate.lastState = ContainerState(terminated=cstate.state.terminated)
            cstate.state = ContainerState(waiting={
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={run.name} "
                           f"pod={self.m.plan.name}"})
            cstate.nextStart = time.time() + delay
        run.pending = self.m.timers.at(delay, lambda: self.restart_now(run))

    def restart_now(self, run):
        m = self.m
        run.pending = None
        m.cstate(run).drop("nextStart")
        if m.stopping or m.sandbox_down:
            return
        if run.kind == INIT and run.completed:
            pass
        elif not self.start_allowed(run):
            # Not its turn (an app container changed by `apply` while init containers run):
            # advance() starts it when the containers before it are done.
            run.launched = False
        elif self.hook_running():
            if not run.deferred:
                run.deferred = True
                self.deferred.append(run)
        else:
            self.start(run)
        self.advance()  # whatever waited for this one (an init container behind a sidecar)
        phase.update(m)

    def on_deadline(self):
        if self.m.stopping:
            return
        self.m.final_reason = ("DeadlineExceeded",
                               "Pod was active on the node longer than the specified deadline")
        self.m.stopper.begin_stop(self.m.plan.grace_seconds)
