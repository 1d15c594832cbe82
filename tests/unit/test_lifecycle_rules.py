"""The kubelet's rules as nspod applies them: restart decisions, backoff, phase."""
import pytest

from nsPod.plan import lifecycle
from nsPod.plan.lifecycle import APP, INIT, SIDECAR


@pytest.mark.parametrize("kind,policy,code,expected", [
    (APP, "Always", 0, True), (APP, "Always", 1, True),
    (APP, "OnFailure", 0, False), (APP, "OnFailure", 1, True),
    (APP, "Never", 0, False), (APP, "Never", 1, False),
    (INIT, "Always", 0, False), (INIT, "Always", 1, True),
    (INIT, "OnFailure", 1, True), (INIT, "Never", 1, False),
    (SIDECAR, "Never", 0, True), (SIDECAR, "Never", 1, True),
])
def test_should_restart(kind, policy, code, expected):
    assert lifecycle.should_restart(kind, policy, code) is expected


def test_backoff_first_restart_immediate_then_doubling_to_max():
    b = lifecycle.Backoff(10, 300)
    delays = [b.next_delay(ran_for=1) for _ in range(8)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_resets_after_ten_minutes_of_running():
    b = lifecycle.Backoff(10, 300)
    for _ in range(4):
        b.next_delay(ran_for=1)
    assert b.next_delay(ran_for=600) == 0
    assert b.next_delay(ran_for=1) == 10


@pytest.mark.parametrize("policy,init_failed,init_done,states,phase", [
    ("Always", False, False, ["waiting"], "Pending"),
    ("Always", True, False, ["waiting"], "Failed"),
    ("Always", False, True, [], "Running"),
    ("Always", False, True, ["running", "waiting"], "Pending"),
    ("Always", False, True, ["running", "restarting"], "Running"),
    ("Always", False, True, ["restarting"], "Running"),
    ("OnFailure", False, True, ["succeeded", "succeeded"], "Succeeded"),
    ("Never", False, True, ["succeeded", "failed"], "Failed"),
    ("Never", False, True, ["succeeded", "running"], "Running"),
])
def test_pod_phase(policy, init_failed, init_done, states, phase):
    assert lifecycle.pod_phase(policy, init_failed, init_done, states) == phase


def test_conditions_name_what_is_missing():
    c = lifecycle.condition_reasons("Pending", False, "setup", ["app"])
    assert c["Initialized"] == (False, "ContainersNotInitialized",
                                "containers with incomplete status: [setup]")
    assert c["Ready"] == (False, "ContainersNotReady", "containers with unready status: [app]")
    assert lifecycle.condition_reasons("Running", True, "", [])["Ready"] == (True, None, None)
    assert lifecycle.condition_reasons("Succeeded", True, "", [])["Ready"][1] == "PodCompleted"


def test_termination_message():
    tm = lifecycle.termination_message
    assert tm("File", 1, "bad config\n", "log") == "bad config"
    assert tm("File", 1, "", "log") is None
    assert tm("FallbackToLogsOnError", 1, "", "a\nb\n") == "a\nb"
    assert tm("FallbackToLogsOnError", 0, "", "a\nb\n") is None
    assert len(tm("File", 1, "x" * 10000, "")) == 4096


# --- issue 9: the kubelet's semantics, rule by rule -----------------------------------------

@pytest.mark.parametrize("states,sidecars_running,phase", [
    (["succeeded"], True, "Running"),
    (["succeeded"], False, "Succeeded"),
    (["failed", "succeeded"], True, "Running"),
    (["failed", "succeeded"], False, "Failed"),
    (["running"], False, "Running"),
])
def test_phase_follows_the_sidecars_termination(states, sidecars_running, phase):
    """kubelet_pods.go getPhase counts a running restartable init container as running: a pod
    whose regular containers have all ended is Running until its sidecars have terminated."""
    assert lifecycle.pod_phase("Never", False, True, states, sidecars_running) == phase


def test_apps_finished_means_no_app_container_runs_again():
    """kuberuntime_manager.go computePodActions: no regular container to keep or start ->
    KillPod (which stops the sidecars)."""
    assert lifecycle.apps_finished(["succeeded", "failed"])
    assert not lifecycle.apps_finished(["succeeded", "restarting"])
    assert not lifecycle.apps_finished(["running", "succeeded"])
    assert not lifecycle.apps_finished([])


def test_a_terminal_phase_is_never_left():
    """kubelet_pods.go generateAPIPodStatus: pods are not allowed to transition out of
    terminal phases."""
    assert lifecycle.next_phase("Succeeded", "Running") == "Succeeded"
    assert lifecycle.next_phase("Failed", "Pending") == "Failed"
    assert lifecycle.next_phase("Running", "Succeeded") == "Succeeded"


def test_waiting_reason_before_the_first_start():
    """kubelet_pods.go convertToAPIContainerStatuses: the default waiting state is
    PodInitializing for every container (init and app) of a pod with init containers,
    ContainerCreating otherwise."""
    assert lifecycle.initial_waiting_reason(True) == "PodInitializing"
    assert lifecycle.initial_waiting_reason(False) == "ContainerCreating"


@pytest.mark.parametrize("kind,code,ready", [
    (INIT, 0, True), (INIT, 1, False), (INIT, None, False),
    (SIDECAR, 0, False), (APP, 0, False)])
def test_completed_init_container_is_ready(kind, code, ready):
    """prober/prober_manager.go UpdatePodStatus: an init container is ready once it has
    exited 0."""
    assert lifecycle.init_container_ready(kind, code) is ready


def test_start_order():
    """kuberuntime_manager.go computePodActions / computeInitContainerActions: app
    containers wait for initialization; an init container or sidecar waits for every earlier
    init container to complete and every earlier sidecar to have started; after
    initialization only sidecars are started again."""
    allowed = lifecycle.start_allowed
    assert not allowed(APP, False, [])
    assert allowed(APP, True, [])
    assert allowed(INIT, False, [])
    assert not allowed(INIT, False, [(INIT, False, False)])
    assert allowed(INIT, False, [(INIT, True, False), (SIDECAR, False, True)])
    assert not allowed(SIDECAR, False, [(SIDECAR, False, False)])
    assert allowed(SIDECAR, True, [])
    assert not allowed(INIT, True, [])


@pytest.mark.parametrize("policy,apps,make,skip", [
    ("OnFailure", [("a", 0), ("b", 137)], True, {"a"}),
    ("OnFailure", [("a", 0), ("b", 0)], False, {"a", "b"}),
    ("OnFailure", [("a", 1), ("b", None)], True, set()),
    ("Always", [("a", 0), ("b", 137)], True, set()),
    ("Never", [("a", 137)], False, set()),
    ("OnFailure", [], True, set()),
])
def test_after_sandbox_death(policy, apps, make, skip):
    """kuberuntime_manager.go computePodActions with createPodSandbox: under OnFailure the
    containers that succeeded are not started again, and with none left to start no sandbox
    is made; under Never none is made at all."""
    assert lifecycle.after_sandbox_death(policy, apps) == (make, skip)
