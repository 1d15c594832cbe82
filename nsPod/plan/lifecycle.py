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


def pod_phase(restart_policy, init_failed, init_done, app_states, sidecars_running=False):
    """Kubernetes' getPhase (pkg/kubelet/kubelet_pods.go) for the app containers' states.

    app_states: per app container "waiting" (never started), "running", "restarting"
    (ended, will start again), "succeeded" or "failed" (ended for good).
    sidecars_running: a native sidecar still runs. getPhase counts a running restartable init
    container as running, so a pod whose app containers have all ended stays Running until
    its sidecars have terminated too; terminated sidecars are not counted either way.
    """
    if init_failed:
        return "Failed"
    if not init_done or not app_states:
        return "Pending" if not init_done else "Running"
    if "waiting" in app_states:
        return "Pending"
    if "running" in app_states or "restarting" in app_states or sidecars_running:
        return "Running"
    if all(s == "succeeded" for s in app_states):
        return "Succeeded"
    return "Failed"


def apps_finished(app_states):
    """Every app container has ended for good: the pod is done and its sidecars are stopped
    (the kubelet's computePodActions kills the pod once no regular container is to run)."""
    return bool(app_states) and all(s in ("succeeded", "failed") for s in app_states)


def next_phase(old_phase, new_phase):
    """A pod never leaves a terminal phase (generateAPIPodStatus in kubelet_pods.go)."""
    if old_phase in ("Succeeded", "Failed"):
        return old_phase
    return new_phase


def initial_waiting_reason(has_init_containers):
    """The waiting reason of a container that has not started yet: PodInitializing in a pod
    with init containers (init and app containers alike), ContainerCreating otherwise
    (convertToAPIContainerStatuses' default waiting state in kubelet_pods.go)."""
    return "PodInitializing" if has_init_containers else "ContainerCreating"


def init_container_ready(kind, terminated_exit_code):
    """An init container that exited 0 is ready (prober_manager.go UpdatePodStatus); a
    sidecar's readiness is its probes', as an app container's."""
    return kind == INIT and terminated_exit_code == 0


def start_allowed(kind, initialized, earlier):
    """Whether a container may start now, by the kubelet's order (computePodActions,
    computeInitContainerActions in kuberuntime_manager.go).

    initialized: the pod's init containers have all completed (and its sidecars started).
    earlier: for an init container or sidecar, the (kind, completed, started) of each init
    container and sidecar before it in spec order.
    App containers wait for initialization; an init container or sidecar waits for every
    earlier init container to complete and every earlier sidecar to have started; once the
    pod is initialized only sidecars run again (init containers do not).
    """
    if kind == APP:
        return initialized
    if initialized:
        return kind == SIDECAR
    for other_kind, completed, started in earlier:
        if other_kind == INIT and not completed:
            return False
        if other_kind == SIDECAR and not started:
            return False
    return True


def after_sandbox_death(restart_policy, apps):
    """What a new sandbox runs after the old one died: (make_sandbox, app names to skip).

    apps: [(name, exit code of its last run or None)] in spec order, every app container.
    computePodActions (kuberuntime_manager.go): with OnFailure an app container whose last
    run succeeded is not started again; when none is left to start and the pod had been
    initialized, no new sandbox is made (the pod is done). Init containers run again from the
    first. With Never no new sandbox is made at all.
    """
    if restart_policy == "Never":
        return False, set()
    skip = set()
    if restart_policy == "OnFailure":
        skip = {name for name, code in apps if code == 0}
    if apps and len(skip) == len(apps):
        return False, skip
    return True, skip


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
