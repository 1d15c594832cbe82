"""Stopping a pod as the kubelet does: app (and init) containers first, preStop then
SIGTERM, sidecars in reverse order once the app containers are gone, then pause; SIGKILL for
whatever is left when the grace period ends."""
import signal

from nsPod.monitor.timers import clamp_delay
from nsPod.plan.lifecycle import APP, INIT, SIDECAR


class Stopper:
    def __init__(self, monitor):
        self.m = monitor
        self.sidecars_stopping = False
        self.pause_signalled = False
        self.deadline = None       # monotonic time the grace period ends

    def terminate(self, run, grace):
        """preStop, then SIGTERM, then SIGKILL after the grace period."""
        m = self.m
        if run.pid is None:
            return
        pid, serial = run.pid, run.serial
        grace = clamp_delay(grace)
        if grace <= 0:
            m.launcher.kill(pid, signal.SIGKILL)
            return
        if run.plan.lifecycle.get("preStop") and run.hook_pid is None:
            m.checks.run_hook(run, "preStop")
        else:
            m.launcher.kill(pid, signal.SIGTERM)
        m.timers.at(grace, lambda: run.serial == serial and run.pid
                    and m.launcher.kill(run.pid, signal.SIGKILL))

    def begin_stop(self, grace_seconds):
        """App containers first (preStop, SIGTERM), then sidecars in reverse order, then pause;
        SIGKILL for whatever is left at the end of the grace period."""
        m = self.m
        grace_seconds = clamp_delay(grace_seconds)
        if m.stopping:
            if grace_seconds == 0:
                self.kill_everything()
            return
        m.stopping = True
        self.deadline = m.timers.now() + grace_seconds
        m.timers.at(grace_seconds, self.kill_everything)
        for run in m.runs.values():
            m.timers.cancel(run.pending)
            run.pending = None
            for probe in run.probes.values():
                m.timers.cancel(probe.get("timer"))
        for run in m.ordered((APP, INIT)):
            self.terminate(run, grace_seconds)
        self.stop_sidecars_when_apps_gone()

    def stop_sidecars_when_apps_gone(self):
        m = self.m
        if not m.stopping or self.sidecars_stopping:
            return
        if any(r.pid for r in m.ordered((APP, INIT))):
            return
        self.sidecars_stopping = True
        left = max(0.0, self.deadline - m.timers.now())
        for run in reversed(m.ordered((SIDECAR,))):
            self.terminate(run, left)

    def kill_everything(self):
        m = self.m
        for run in m.runs.values():
            if run.pid:
                m.launcher.kill(run.pid, signal.SIGKILL)
        for pid, what in list(m.children.items()):
            if what[0] == "check":
                m.launcher.kill(pid, signal.SIGKILL)
        self.kill_pause(signal.SIGKILL)

    def kill_pause(self, sig=signal.SIGTERM):
        for pid, what in self.m.children.items():
            if what[0] == "pause":
                # pause exits 0 on SIGTERM; as PID 1 of a shared pid namespace its exit
                # takes every remaining process of the namespace with it.
                self.m.launcher.kill(pid, sig)

    def finished(self):
        """Whether the pod is down (the loop's condition); moves the stop on a step."""
        m = self.m
        if not m.stopping:
            return False
        self.stop_sidecars_when_apps_gone()
        if any(r.pid for r in m.runs.values()):
            return False
        if any(what[0] == "pause" for what in m.children.values()):
            if not self.pause_signalled:
                self.pause_signalled = True
                self.kill_pause()
            return False
        # Probes and hooks still running have nothing left to check: they go before we do.
        checks = [pid for pid, what in m.children.items() if what[0] == "check"]
        for pid in checks:
            m.launcher.kill(pid, signal.SIGKILL)
        return not checks
