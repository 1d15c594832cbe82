"""`ps` reads every pod through one descriptor of the pods directory (state.scan_pods): the
same pods, the same checks against the kernel, and the same refusals as PodDir's reads."""
import json
import os
import subprocess

import pytest

from nsPod.config import Config
from nsPod.api import query
from nsPod.store import listing, state, status
from nsPod.store.podstate import PodState

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="list_pods checks the root as root")


def _pod(root, name, phase="Running", pod_state=True, monitor=None):
    pod_dir = state.PodDir(str(root), name)
    pod_dir.create()
    plan = {"name": name, "namespace": "default", "uid": f"uid-{name}",
            "containers": [{"name": "c0"}], "init_containers": []}
    pod_dir.write_pod({"manifest": {"metadata": {"name": name}, "spec": {}}, "plan": plan,
                       "created": "2026-01-01T00:00:00Z"})
    if pod_state:
        data = {"phase": phase, "startTime": "2026-01-01T00:00:00Z",
                "containers": {"c0": {"state": {"running": {}}, "ready": True,
                                      "restartCount": 2}}}
        if monitor is not None:
            data["containers"]["c0"].update(pid=monitor.pid, pidStartTime=monitor.start_time)
        pod_dir.write_state(data)
    return pod_dir


def test_scan_reads_each_pod_once_in_name_order(tmp_path):
    root = tmp_path / "root"
    for name in ("web", "api", "db"):
        _pod(root, name)
    _pod(root, "new", pod_state=False)       # the monitor has not written state.json yet
    scanned = listing.scan_pods(str(root))
    assert [p.name for p, _, _, _ in scanned] == ["api", "db", "new", "web"]
    by_name = {p.name: (doc, data, alive) for p, doc, data, alive in scanned}
    assert by_name["new"][1] is None
    assert by_name["web"][0]["plan"]["uid"] == "uid-web"
    assert by_name["web"][1]["phase"] == "Running"
    assert not any(alive for _, _, alive in by_name.values())   # no monitor holds a lock


def test_scan_skips_what_is_no_readable_pod(tmp_path):
    root = tmp_path / "root"
    _pod(root, "web")
    state.PodDir(str(root), "half").create()                   # claimed, no pod.json yet
    (root / "pods" / "Not_A_Pod").mkdir()
    (root / "pods" / "file").write_text("")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "pod.json").write_text("{}")
    (root / "pods" / "evil").symlink_to(victim)               # never followed
    broken = _pod(root, "broken")
    with open(broken.file("state.json"), "w") as f:
        f.write("{not json")
    linked = _pod(root, "linked")
    os.unlink(linked.file("pod.json"))
    os.symlink(victim / "pod.json", linked.file("pod.json"))   # a planted file: not read
    assert [p.name for p, _, _, _ in listing.scan_pods(str(root))] == ["web"]
    assert listing.scan_pods(str(tmp_path / "none")) == []


def test_scan_sees_a_held_monitor_lock_and_makes_no_lock_file(tmp_path):
    root = tmp_path / "root"
    held = _pod(root, "held")
    _pod(root, "free")
    fd = held.lock_monitor()
    try:
        found = {p.name: alive for p, _, _, alive in listing.scan_pods(str(root))}
    finally:
        os.close(fd)
    assert found == {"free": False, "held": True}
    assert not os.path.exists(os.path.join(str(root), "pods", "free", "monitor.lock"))


def test_list_pods_checks_the_kernel(tmp_path):
    """A pod whose monitor is gone is Unknown; a container pid that is not running (or was
    reused) is dropped; a held lock keeps the pod Running with its live container's pid."""
    root = tmp_path / "root"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        ref = state.ProcessRef.of(sleeper.pid)
        live = _pod(root, "live", monitor=ref)
        _pod(root, "orphan", monitor=state.ProcessRef(sleeper.pid, ref.start_time + 1))
        _pod(root, "done", phase="Succeeded")
        fd = live.lock_monitor()
        try:
            items = query.list_pods(Config(root=str(root)), include_all=True)
            running = query.list_pods(Config(root=str(root)))
        finally:
            os.close(fd)
    finally:
        sleeper.kill()
        sleeper.wait()
    phases = {i["metadata"]["name"]: i["status"]["phase"] for i in items}
    assert phases == {"done": "Succeeded", "live": "Running", "orphan": "Unknown"}
    assert [i["metadata"]["name"] for i in running] == ["live", "orphan"]
    pids = {i["metadata"]["name"]: i["runtime"]["containers"]["c0"].get("pid") for i in items}
    assert pids == {"done": None, "live": sleeper.pid, "orphan": None}


def test_list_pods_is_what_inspect_shows(tmp_path):
    """The fast listing builds the same objects as inspect's one-pod path."""
    root = tmp_path / "root"
    _pod(root, "web")
    _pod(root, "new", pod_state=False)
    config = Config(root=str(root))
    listed = {i["metadata"]["name"]: i for i in query.list_pods(config, include_all=True)}
    for name in ("web", "new"):
        one = query.inspect(config, name)
        assert json.dumps(listed[name], sort_keys=True) == json.dumps(one, sort_keys=True)


def test_state_records_read_from_the_file_equal_those_made():
    data = {"phase": "Running", "containers": {"c0": {"ready": True, "restartCount": 1}},
            "unknownKey": 5}
    read = PodState.from_json(data)
    assert read.to_json() == data
    assert read.container("c0").restartCount == 1 and not read.container("c0").has("pid")
    assert read.reason is not None and not read.has("reason")
    assert status.refresh(None, read, monitor_alive=True).phase == "Running"
    assert status.refresh(None, PodState.from_json(data), monitor_alive=False).phase == "Unknown"


def test_ps_table_rows_are_the_full_objects_table(tmp_path):
    """`ps` builds only the fields its table shows (status.pod_row): the same table as from
    the objects `-o json` lists, for a pod being made, running, orphaned, ended, with an IP."""
    from nsPod.api import render
    root = tmp_path / "root"
    live = _pod(root, "live")
    _pod(root, "orphan")
    _pod(root, "done", phase="Succeeded")
    _pod(root, "new", pod_state=False)
    ip = _pod(root, "withip")
    data = ip.read_state()
    data.update(podIP="10.1.2.3", phase="Failed")
    data["containers"]["c0"]["ready"] = False
    ip.write_state(data)
    config = Config(root=str(root))
    held = [live.lock_monitor(), ip.lock_monitor()]
    try:
        for include_all in (False, True):
            rows = query.list_pods(config, include_all, rows_only=True)
            full = query.list_pods(config, include_all)
            assert render.pods_table(rows) == render.pods_table(full)
            assert [r["status"]["phase"] for r in rows] == [f["status"]["phase"] for f in full]
    finally:
        for fd in held:
            os.close(fd)
    table = render.pods_table(query.list_pods(config, True, rows_only=True))
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert lines["orphan"][1:4] == ["Unknown", "1/1", "2"]
    assert lines["withip"][1:5] == ["Failed", "0/1", "2", "10.1.2.3"]
    assert lines["new"][1:3] == ["Pending", "0/1"]


def test_ps_rows_of_an_odd_state_file_go_the_checked_way(tmp_path):
    root = tmp_path / "root"
    odd = _pod(root, "odd")
    odd.write_state({"phase": "Running", "containers": ["not", "a", "map"]})
    _pod(root, "web")
    config = Config(root=str(root))
    assert status.pod_row({"plan": {"containers": []}}, {"containers": []}, True) is None
    names = [r["metadata"]["name"] for r in query.list_pods(config, True, rows_only=True)]
    assert names == [r["metadata"]["name"] for r in query.list_pods(config, True)] == ["web"]


@pytest.mark.parametrize("stamp", ["2026-01-01T00:00:00Z", "2026-02-28T23:59:59Z",
                                   "1999-12-31T12:30:05Z", "2024-02-29T10:00:00Z",
                                   "2026-02-29T10:00:00Z", "2026-13-01T00:00:00Z",
                                   "2026-01-01T24:00:00Z", "2026-01-01 00:00:00Z",
                                   "2026-01-0１T00:00:00Z", "nonsense", ""])
def test_age_reads_stamps_as_strptime_does(stamp):
    """render.age slices nspod's own stamps instead of calling strptime (per pod in `ps`):
    the same time for every stamp strptime takes, and "-" for every one it refuses."""
    import time
    from nsPod.api import render
    try:
        expected = time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")[:6]
    except ValueError:
        expected = None
    if expected is None:
        assert render.age(stamp) == "-" or not stamp
        with pytest.raises(ValueError):
            render._fields(stamp)
    else:
        assert tuple(render._fields(stamp)[:6]) == expected
        assert render.age(stamp) != "-"
