"""The kubelet's rules for a pod's life, as pure functions the monitor asks.

Restart decisions, crash-loop backoff, the pod's phase and its conditions: no processes, no
files, no clock of their own (time is passed in), so each rule is unit-tested on its own.
"""

RESET_AFTER = 600.0   # a container that ran this long starts its backoff afresh (kubelet: 10 min)

APP, INIT, SIDECAR = "app", "init", "sidecar"


def kind_of(plan):
    """"sidecar" for an init container with restartPolicy Always (a native sidecar)."""
    if not plan.init:
        return APP
    return SIDECAR if plan.lifecycle.get("restartPolicy") == "Always" else INIT


def should_restart(kind, pod_restart_policy, exit_code):
    """Whether a container that ended is started again (after its backoff)."""
    if kind == SIDECAR:
        return True
    if kind == INIT:
        # Init containers rerun until they succeed, unless the pod never restarts anything.
        return exit_code != 0 and pod_restart_policy != "Never"
    if pod_restart_policy == "Always":
        return True
    return pod_restart_policy == "OnFailure" and exit_code != 0


class Backoff:
    """Per container: the first restart is immediate, then base, 2*base, ... up to max; a run
    of RESET_AFTER seconds or more starts the sequence again."""

    def __init__(self, base, maximum):
        self.base = base
        self.maximum = maximum
        self.restarts = 0

    def next_delay(self, ran_for):
        if ran_for >= RESET_AFTER:
            self.restarts = 0
        delay = 0.0 if self.restarts == 0 else min(self.maximum,
                                                   self.base * 2 ** (self.restarts - 1))
        self.restarts += 1
        return delay

    def reset(self):
        self.restarts = 0


def pod_phase(restart_policy, init_failed, init_done, app_states):
    """Kubernetes' getPhase for the app containers' states.

    app_states: per app container "waiting" (never started), "running", "restarting"
    (ended, will start again), "succeeded" or "failed" (ended for good).
    """
    if init_failed:
        return "Failed"
    if not init_done or not app_states:
        return "Pending" if not init_done else "Running"
    if "waiting" in app_states:
        return "Pending"
    if "running" in app_states or "restarting" in app_states:
        return "Running"
    if all(s == "succeeded" for s in app_states):
        return "Succeeded"
    return "Failed"


def condition_reasons(phase, init_done, init_waiting_for, unready):
    """{condition type: (status, reason, message)} for Initialized, ContainersReady, Ready."""
    terminal = phase in ("Succeeded", "Failed")
    out = {"PodScheduled": (True, None, None)}
    if init_done:
        out["Initialized"] = (True, None, None)
    else:
        out["Initialized"] = (False, "ContainersNotInitialized",
                              f"containers with incomplete status: [{init_waiting_for}]")
    if terminal:
        ready = (False, "PodCompleted", None)
    elif unready:
        ready = (False, "ContainersNotReady",
                 f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready = (True, None, None)
    out["ContainersReady"] = ready
    out["Ready"] = ready
    return out


def termination_message(policy, exit_code, file_text, log_tail):
    """terminated.message: the file's text (4 KiB at most); FallbackToLogsOnError uses the
    log's last lines when the file is empty and the container failed."""
    message = (file_text or "")[:4096]
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = (log_tail or "").splitlines()[-80:]
        message = "\n".join(lines)[-2048:]
    return message.strip("\n") or None
