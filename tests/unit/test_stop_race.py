"""`nspod stop`/`rm -f` of a pod that goes down on its own at the same moment.

A pod whose containers have all ended (restartPolicy Never) is taken down by its monitor,
which closes the control requests it has not read yet and exits. The stop that was on its
way then sees a reset connection: the monitor's exit is the answer it wanted, not an error.
"""
import pytest

from nsPod.api import pods
from nsPod.errors import StateError


class FakePodDir:
    name = "web"

    def __init__(self, alive_checks):
        self.alive_checks = alive_checks   # how many more monitor_alive() calls say True

    def monitor_alive(self):
        self.alive_checks -= 1
        return self.alive_checks >= 0

    def read_pod(self):
        return {"plan": {"grace_seconds": 0}}


def patch(monkeypatch, pod_dir):
    monkeypatch.setattr(pods, "_enter", lambda config, names: None)
    monkeypatch.setattr(pods, "_existing", lambda config, name: pod_dir)
    monkeypatch.setattr(pods, "clean_up_after_monitor", lambda d: [])

    def reset(pod_dir, request, timeout):
        raise StateError("pod web: no answer from its monitor: Connection reset by peer")
    monkeypatch.setattr(pods.control, "request", reset)


def test_a_reset_from_a_monitor_that_then_exits_is_a_stop(monkeypatch):
    pod_dir = FakePodDir(alive_checks=3)      # alive for the first checks, then gone
    patch(monkeypatch, pod_dir)
    pods.stop(None, "web")


def test_a_reset_from_a_monitor_that_stays_is_the_error(monkeypatch):
    pod_dir = FakePodDir(alive_checks=10**9)
    patch(monkeypatch, pod_dir)
    monkeypatch.setattr(pods, "_wait_monitor_exit",
                        lambda d, timeout=10.0: (_ for _ in ()).throw(
                            StateError("pod web: its monitor did not exit after stopping")))
    with pytest.raises(StateError, match="Connection reset"):
        pods.stop(None, "web")
