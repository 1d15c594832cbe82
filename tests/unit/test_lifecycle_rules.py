"""The kubelet's rules as nspod applies them: restart decisions, backoff, phase."""
import pytest

from nsPod import lifecycle
from nsPod.lifecycle import APP, INIT, SIDECAR


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
