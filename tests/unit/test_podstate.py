"""store/podstate.py: state.json as typed records, round-tripped exactly.

The samples in state_samples/ are state.json files the monitor wrote while the integration
tests ran (pending, running, failed, succeeded; with and without pause, network, restarts).
"""
import glob
import json
import os

import pytest

from nsPod.store import podstate
from nsPod.store.podstate import (ABSENT, Condition, ContainerState, ContainerStatus, Network,
                                  PodState, Proc)
from nsPod.store.state import ProcessRef

SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "state_samples", "*.json")))


def test_there_are_samples():
    assert len(SAMPLES) >= 5


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_real_state_files_round_trip_exactly(path):
    with open(path) as f:
        text = f.read()
    data = json.loads(text)
    state = PodState.from_json(data)
    assert state.to_json() == data
    # The file as write_json writes it: byte for byte.
    assert json.dumps(state.to_json(), indent=1, sort_keys=True) == text
    assert not state.extra  # every key of a real file is in the schema
    for cstate in state.containers.values():
        assert isinstance(cstate, ContainerStatus) and not cstate.extra
        assert isinstance(cstate.state, ContainerState) and not cstate.state.extra
    if state.network:
        assert isinstance(state.network, Network) and not state.network.extra


def test_absent_keys_stay_absent_and_null_stays_null():
    state = PodState.from_json({"phase": "Pending", "cgroup": None})
    assert state.cgroup is None and state.has("cgroup")
    assert state.network is ABSENT and not state.has("network") and not state.network
    assert state.to_json() == {"phase": "Pending", "cgroup": None}


def test_unknown_keys_are_kept():
    data = {"phase": "Running", "future": {"x": 1},
            "containers": {"a": {"restartCount": 1, "newField": True}}}
    state = PodState.from_json(data)
    assert state.extra == {"future": {"x": 1}}
    assert state.containers["a"].extra == {"newField": True}
    assert state.to_json() == data


def test_drop_removes_a_key():
    cstate = ContainerStatus.from_json({"pid": 5, "pidStartTime": 7, "ready": True})
    cstate.drop("pid")
    assert cstate.to_json() == {"pidStartTime": 7, "ready": True}


def test_proc():
    proc = Proc.from_json({"pid": 12, "startTime": 34})
    assert proc.to_json() == {"pid": 12, "startTime": 34}
    ref = proc.ref()
    assert isinstance(ref, ProcessRef) and (ref.pid, ref.start_time) == (12, 34)
    assert Proc.from_json({}).ref() is None
    assert Proc.from_json({"pid": 12}).ref().start_time is None


def test_container_state():
    data = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "t"}}
    cs = ContainerState.from_json(data)
    assert cs.terminated["exitCode"] == 1 and cs.running is ABSENT and cs.waiting is ABSENT
    assert cs.to_json() == data
    assert ContainerState.from_json({}).to_json() == {}


def test_container_status():
    data = {"state": {"running": {"startedAt": "t"}}, "lastState": {}, "restartCount": 2,
            "ready": False, "started": True, "init": False, "everStarted": True, "pid": 9,
            "pidStartTime": 10, "namespaces": {"net": "net:[1]"}, "cgroup": "p/ctr-a",
            "log": "logs/a/2.log", "oomKills": 0, "nextStart": 1.5}
    cstate = ContainerStatus.from_json(data)
    assert cstate.state.running == {"startedAt": "t"} and cstate.lastState.to_json() == {}
    assert (cstate.restartCount, cstate.pid, cstate.log) == (2, 9, "logs/a/2.log")
    assert cstate.to_json() == data
    assert ContainerStatus.from_json(data) == cstate
    assert ContainerStatus() == ContainerStatus.from_json({})


def test_condition():
    data = {"status": True, "lastTransitionTime": "t", "reason": None, "message": None}
    cond = Condition.from_json(data)
    assert cond.status is True and cond.reason is None
    assert cond.to_json() == data


def test_network():
    data = {"bridge": "br", "subnet": "10.0.0.0/24", "hostVeth": "v", "podVeth": "eth0",
            "netns": "/run/netns/x", "netnsInode": 3, "staleNetnsInode": 2, "ip": "10.0.0.2",
            "mac": "aa", "gateway": "10.0.0.1", "prefixLength": 24}
    assert Network.from_json(data).to_json() == data
    assert Network.from_json(data).staleNetnsInode == 2


def test_pod_state():
    data = {"phase": "Failed", "reason": "R", "message": "M", "startTime": "t",
            "monitor": {"pid": 1, "startTime": 2}, "pause": None, "namespaces": {},
            "mounts": ["/m"], "cgroup": None, "network": None, "podIP": "10.0.0.2",
            "hostPorts": [[8080, 80]], "initialized": True,
            "conditions": {"Ready": {"status": False}},
            "containers": {"a": {"restartCount": 0}}}
    state = PodState.from_json(data)
    assert isinstance(state.monitor, Proc) and state.pause is None
    assert state.conditions["Ready"].status is False
    assert state.container("a").restartCount == 0
    assert state.container("missing").to_json() == {}
    assert state.to_json() == data


def test_every_field_is_listed_once():
    """The schema: each record's fields, as the file spells them."""
    assert PodState.fields == ("phase", "reason", "message", "startTime", "monitor", "pause",
                               "namespaces", "mounts", "cgroup", "network", "podIP",
                               "hostPorts", "initialized", "conditions", "containers")
    assert "pidStartTime" in ContainerStatus.fields and len(set(ContainerStatus.fields)) == \
        len(ContainerStatus.fields)


def test_read(tmp_path):
    class Dir:
        def __init__(self, data):
            self.data = data

        def read_state(self):
            return self.data
    assert podstate.read(Dir(None)) is None
    assert podstate.read(Dir({"phase": "Running"})).phase == "Running"


def test_an_empty_record_is_false_as_the_empty_dict_was():
    assert not ContainerState.from_json({}) and ContainerState(running={"startedAt": "t"})
    assert not Network.from_json({}) and not Proc() and Condition(status=False)


@pytest.mark.parametrize("data", [[], {"containers": []}, {"containers": {"a": 5}},
                                  {"pause": "x"}, {"network": 1}],
                         ids=["list", "containers-list", "container-int", "pause-str",
                              "network-int"])
def test_a_state_file_of_the_wrong_shape_is_a_state_error(data):
    from nsPod.errors import StateError
    with pytest.raises(StateError, match="state.json"):
        PodState.from_json(data)


def test_teardown_reads_and_clears_the_records(monkeypatch):
    """The (do, undo) table's steps on a PodState: what they undo is cleared on the record,
    and anything_left sees processes, mounts, cgroups and network."""
    from nsPod.monitor import teardown
    from nsPod.kernel import mounts
    from nsPod.kernel.cgroups import parents
    from nsPod.net import client
    detached, removed, nets = [], [], []
    monkeypatch.setattr(mounts, "detach", detached.append)
    monkeypatch.setattr(parents, "remove", lambda root, parent, name: removed.append(name))
    monkeypatch.setattr(client, "detach", lambda root, pod, bridge, subnet, **kw:
                        nets.append((bridge, subnet, kw["record"])))
    state = PodState.from_json({
        "phase": "Running", "pause": None, "mounts": ["/a", "/b"], "cgroup": "p/pod1",
        "network": {"bridge": "br0", "subnet": "10.0.0.0/24", "ip": "10.0.0.2"},
        "containers": {"c": {"restartCount": 0}}})
    assert teardown.anything_left(state)
    teardown.undo("/root", "web", state, lambda step, e: pytest.fail(str(e)))
    assert detached == ["/b", "/a"] and removed == ["pod1"]
    assert nets == [("br0", "10.0.0.0/24",
                     {"bridge": "br0", "subnet": "10.0.0.0/24", "ip": "10.0.0.2"})]
    assert state.mounts == [] and state.cgroup is None and state.network is None
    assert not teardown.anything_left(state)
    state.containers["c"].pid = 5
    assert teardown.anything_left(state)
