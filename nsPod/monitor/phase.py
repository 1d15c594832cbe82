"""The pod's phase and conditions from its runs, by plan/lifecycle.py's rules (getPhase)."""
from nsPod.plan import lifecycle
from nsPod.plan.lifecycle import APP, INIT, SIDECAR
from nsPod.store.podstate import Condition
from nsPod.store.state import now_rfc3339


def app_states(m):
    """Per app container: running, restarting, succeeded, failed or waiting."""
    states = []
    for run in m.ordered((APP,)):
        cstate = m.cstate(run)
        if run.cri and not run.pid and not m.stopping:
            # nspod cri: an ended container is the kubelet's to replace; the sandbox runs on.
            continue
        if run.pid:
            states.append("running")
        elif (run.pending is not None or run.manual_restart or run.deferred) \
                and not m.stopping:
            states.append("restarting")
        elif cstate.state.has("terminated"):
            code = cstate.state.terminated["exitCode"]
            states.append("succeeded" if code == 0 else "failed")
        else:
            states.append("waiting")
    return states


def update(m):
    """Recompute the phase and conditions; saved when they changed."""
    init_done = bool(m.state.get("initialized"))
    sidecars_running = any(r.pid for r in m.ordered((SIDECAR,)))
    phase = lifecycle.pod_phase(m.plan.restart_policy, bool(m.init_failed), init_done,
                                app_states(m), sidecars_running)
    if m.final_reason:
        phase = "Failed"
    phase = lifecycle.next_phase(m.state.phase, phase)
    unready = [r.name for r in m.ordered((APP, SIDECAR)) if not m.cstate(r).get("ready")]
    waiting_for = next((r.name for r in m.ordered((INIT, SIDECAR))
                        if not r.completed and r.kind == INIT
                        or r.kind == SIDECAR and not m.cstate(r).get("started")), "")
    reasons = lifecycle.condition_reasons(phase, init_done, waiting_for, unready)
    changed = phase != m.state.phase
    m.state.phase = phase
    for kind, (ok, reason, message) in reasons.items():
        old = m.state.conditions.get(kind)
        if old is None or old.status != ok:
            m.state.conditions[kind] = Condition(
                status=ok, reason=reason, message=message,
                lastTransitionTime=now_rfc3339())
            changed = True
        else:
            old.reason, old.message = reason, message
    if changed:
        m.save()


def final(m):
    """The phase the pod ends in, once every process of it is gone."""
    if m.final_reason or m.init_failed:
        return "Failed"
    codes = []
    for run in m.ordered((APP,)):
        terminated = m.cstate(run).state.get("terminated")
        codes.append(terminated["exitCode"] if terminated else 137)
    return "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"


def record_end(m):
    """The pod's last state: its final phase and reason, each container's readiness, and
    Ready/ContainersReady false (PodCompleted)."""
    m.state.phase = final(m)
    if m.final_reason:
        m.state.reason, m.state.message = m.final_reason
    m.state.pause = None
    for run in m.runs.values():
        cstate = m.cstate(run)
        terminated = cstate.state.get("terminated") or {}
        # An init container that completed stays ready (prober_manager.go).
        cstate.ready = lifecycle.init_container_ready(run.kind, terminated.get("exitCode"))
        cstate.drop("nextStart")
    for kind in ("ContainersReady", "Ready"):
        cond = m.state.conditions.get(kind)
        if cond and cond.status:
            cond.status, cond.reason, cond.message = False, "PodCompleted", None
            cond.lastTransitionTime = now_rfc3339()
