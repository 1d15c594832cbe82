"""--trace's records and formats (kernel/tracing.py), the monitor's relay of them
(monitor/relay.py) and `nspod explain`'s tree (api/explain.py): pure logic, no root."""
import fcntl
import json
import os
import selectors
import socket

import pytest

from nsPod import config
from nsPod.api import explain
from nsPod.api.session import trace_format_option
from nsPod.errors import InputError
from nsPod.kernel import tracing
from nsPod.monitor import relay as relays
from nsPod.monitor.timers import Timers


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


def _read(fd):
    try:
        return os.read(fd, 1 << 20).decode()
    except BlockingIOError:
        return ""


def test_json_records_have_stable_keys_result_errno_and_duration(pipe):
    r, w = pipe
    with tracing.using(("json", w)):
        with tracing.traced("mount", ["/x", "src=none"]):
            pass
        with pytest.raises(PermissionError):
            with tracing.traced("setns", ["/proc/1/ns/net", "CLONE_NEWNET"]):
                raise PermissionError(1, "nope")
        with tracing.traced("openat2", ["3", "a"]) as step:
            step.result = 7
        tracing.note("join namespaces", ["net", "pid=1"])
    records = [json.loads(line) for line in _read(r).splitlines()]
    assert [list(rec) for rec in records] == [list(tracing.KEYS)] * 4
    mount, setns, openat, join = records
    assert mount["syscall"] == "mount" and mount["args"] == ["/x", "src=none"]
    assert mount["result"] == 0 and mount["errno"] is None and mount["pid"] == os.getpid()
    assert isinstance(mount["duration_ms"], float) and mount["duration_ms"] >= 0
    assert setns["result"] is None and setns["errno"] == "EPERM"
    assert openat["result"] == 7
    assert join["duration_ms"] is None and join["result"] is None


def test_plain_lines_come_before_the_step_and_escape_control_characters(pipe):
    r, w = pipe
    with tracing.using(("text", w)):
        with tracing.traced("mount", ["/a\x1b[31m", "flags=MS_BIND"]):
            assert _read(r) == f"nspod[{os.getpid()}]: mount(/a\\x1b[31m, flags=MS_BIND)\n"
        with tracing.traced("write", ["/p", "1"], text="write /p 1"):
            pass
        with tracing.traced("setresuid", ["0"], text=""):   # part of another line
            pass
    assert _read(r) == f"nspod[{os.getpid()}]: write /p 1\n"


def test_nothing_is_narrated_when_tracing_is_off(pipe):
    r, w = pipe
    with tracing.using(("", w)):
        with tracing.traced("mount", ["/x"]) as step:
            step.result = 3
        tracing.note("x")
    assert _read(r) == ""


def test_a_full_pipe_drops_steps_and_says_how_many(pipe):
    r, w = pipe
    os.set_blocking(w, False)
    fcntl.fcntl(w, relays.F_SETPIPE_SZ, 4096)
    with tracing.using(("json", w)):
        for i in range(200):
            tracing.note("step", [str(i) * 20])
        dropped = tracing._dropped
        assert dropped > 0
        data = _read(r)
        tracing.note("after")
    lines = [json.loads(line) for line in (data + _read(r)).splitlines()]
    assert lines[-2]["syscall"] == "dropped" and lines[-2]["args"] == [str(dropped)]
    assert lines[-1]["syscall"] == "after"


def test_wire_lines_fit_an_atomic_pipe_write_and_come_back_checked():
    record = tracing.make_record("mount", ["x" * 5000] * 8, 0, None, 1.5)
    line = tracing.wire_line(record)
    assert len(line) <= tracing.PIPE_BUF
    back = tracing.record_from_wire(json.loads(line))
    assert back["syscall"] == "mount" and back["duration_ms"] == 1.5 and back["text"]
    for bad in ([], {"pid": "1", "syscall": "x", "args": []}, {"pid": 1, "syscall": 2, "args": []},
                {"pid": 1, "syscall": "x", "args": [1]}):
        assert tracing.record_from_wire(bad) is None
    odd = tracing.record_from_wire({"pid": 1, "syscall": "x", "args": [], "result": "7",
                                    "errno": 5, "duration_ms": True})
    assert (odd["result"], odd["errno"], odd["duration_ms"]) == (None, None, None)


def test_captured_records_stay_out_of_stderr(pipe):
    r, w = pipe
    with tracing.using(("text", w)):
        with tracing.captured() as records:
            with tracing.traced("netlink", ["create veth"], text="netlink: create veth"):
                pass
    assert _read(r) == ""
    assert records[0]["text"] == "netlink: create veth" and records[0]["result"] == 0


def test_the_global_trace_format_option():
    value_opts = {"--root", "--bridge"}
    assert trace_format_option(["--trace=json", "add", "p", "c", "--", "x", "--trace=json"],
                               value_opts) == ["--trace-format", "json", "add", "p", "c", "--",
                                               "x", "--trace=json"]
    # A value of another option, and anything after the command, are left alone.
    assert trace_format_option(["--root", "--trace=json", "ps"], value_opts) == \
        ["--root", "--trace=json", "ps"]
    assert trace_format_option(["--trace", "add"], value_opts) == ["--trace", "add"]


def test_trace_mode_from_flag_and_environment():
    assert config.trace_mode(True, {}) == "text"
    assert config.trace_mode("json", {}) == "json"
    assert config.trace_mode(None, {"NSPOD_TRACE": "1"}) == "text"
    assert config.trace_mode(None, {"NSPOD_TRACE": "json"}) == "json"
    assert config.trace_mode(None, {"NSPOD_TRACE": "1", "NSPOD_TRACE_FORMAT": "json"}) == "json"
    assert config.trace_mode(None, {"NSPOD_TRACE": "yes"}) == ""
    with pytest.raises(InputError, match="--trace"):
        config.trace_mode("xml", {})


class FakeMonitor:
    def __init__(self):
        self.now = 0.0
        self.timers = Timers(lambda: self.now)
        self.selector = selectors.DefaultSelector()


@pytest.fixture
def relay_world(monkeypatch):
    monkeypatch.setattr(relays, "RELAY_BUFFER", 2000)
    m = FakeMonitor()
    world = relays.Relays(m)
    yield m, world
    if world.read_fd is not None:
        os.close(world.read_fd)
        os.close(world.write_fd)


def _lines(sock):
    data = b""
    sock.settimeout(1)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return [json.loads(line) for line in data.splitlines()]
        data += chunk


def test_the_relay_sends_steps_then_the_answer_and_counts_what_did_not_fit(relay_world):
    m, world = relay_world
    caller, conn = socket.socketpair()
    relay = world.open(conn)
    for i in range(40):
        tracing.note("mount", [f"/{i:03d}" * 10])   # ~110 bytes a record: 2000 holds ~15
    world.pump()
    relay.answer({"ok": True})
    lines = _lines(caller)
    steps = [line["trace"] for line in lines[:-1]]
    assert lines[-1] == {"ok": True}
    assert steps[0]["args"] == ["/000" * 10]
    dropped = [s for s in steps if s["syscall"] == "dropped"]
    assert len(dropped) == 1 and int(dropped[0]["args"][0]) == 40 - (len(steps) - 1)
    assert not world.listening and tracing.mode() != "wire"


def test_a_caller_that_is_gone_or_stuck_never_holds_the_monitor(relay_world, monkeypatch):
    m, world = relay_world
    monkeypatch.setattr(relays, "RELAY_BUFFER", 1 << 20)
    caller, conn = socket.socketpair()
    relay = world.open(conn)
    caller.close()
    tracing.note("mount", ["/x"])
    world.pump()
    relay.answer({"ok": True})        # EPIPE: dropped, no exception
    assert relay.closed
    stuck, conn = socket.socketpair()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024)
    relay = world.open(conn)
    for i in range(1000):
        tracing.note("mount", [f"/{i}"])
        if i % 100 == 0:
            world.pump()
    world.pump()
    relay.answer({"ok": True})
    assert not relay.closed and relay.writing   # the rest waits for EVENT_WRITE
    m.now += relays.ANSWER_TIMEOUT + 1
    m.timers.run()
    assert relay.closed
    stuck.close()


def test_a_restart_is_answered_once_its_container_has_started(relay_world):
    m, world = relay_world
    caller, conn = socket.socketpair()
    relay = world.open(conn)
    relay.waiting = {"app"}
    world.answer_after_starts(relay, {"ok": True}, 30)
    assert not relay.answered
    world.started("other")
    assert not relay.answered
    world.started("app")
    assert relay.answered and _lines(caller)[-1] == {"ok": True}


def test_mountinfo_fields_are_decoded():
    text = ("36 35 0:31 / /data\\040dir rw,relatime shared:1 - tmpfs tmpfs rw,size=16384k\n"
            "37 35 0:32 / / rw - overlay overlay rw,lowerdir=/,upperdir=/u,workdir=/w\n"
            "garbage\n")
    data, root = explain.parse_mountinfo(text)
    assert data["mountPoint"] == "/data dir" and data["fstype"] == "tmpfs"
    assert explain._overlay_layers(root["superOptions"]) == {
        "lowerdir": "/", "upperdir": "/u", "workdir": "/w"}


def _picture():
    ns = {"net": {"inode": 11, "sharing": "pod"}, "pid": {"inode": 22, "sharing": "own"},
          "cgroup": {"inode": 33, "sharing": "host"}}
    return {
        "pod": "web", "phase": "Running", "uid": "u-1", "stateDir": "/r/pods/web",
        "pause": {"pid": 100, "running": True,
                  "namespaces": {"net": {"inode": 11, "sharing": "pod"},
                                 "cgroup": {"inode": 33, "sharing": "host"}}},
        "network": {"podIP": "10.89.0.2", "prefixLength": 24, "gateway": "10.89.0.1",
                    "podVeth": "eth0", "hostVeth": "nspabc", "bridge": "nspod0",
                    "netns": "/run/netns/nspod-web",
                    "kernel": {"bridgePorts": ["nspabc"], "netnsInode": 11,
                               "podAddresses": ["10.89.0.2"]}},
        "cgroup": {"path": "nspod/podu-1", "limits": {"memory.max": "536870912"},
                   "memoryUsage": 4096},
        "volumes": [{"name": "data", "kind": "emptyDir", "source": "/r/pods/web/volumes/data",
                     "sizeLimit": None, "mount": None}],
        "containers": [
            {"name": "app", "kind": "app", "status": "running", "detail": "", "pid": 101,
             "restartCount": 2, "namespaces": ns,
             "root": {"fstype": "overlay", "image": None, "lowerdir": "/", "upperdir": "/u"},
             "mounts": [{"target": "/data\x1b]0;x", "volume": "data", "source": "/s",
                         "subPath": None, "readOnly": False,
                         "kernel": {"fstype": "ext4", "readOnly": False}}],
             "cgroup": {"path": "nspod/podu-1/ctr-app", "limits": {"pids.max": "max"},
                        "memoryUsage": None}},
            {"name": "job", "kind": "init", "status": "terminated", "detail": "Completed, exit 0",
             "pid": None, "restartCount": 0, "namespaces": {}, "root": None, "mounts": [],
             "cgroup": None}],
        "problems": ["container app: volume x is not mounted at /x"],
    }


def test_the_tree_shows_sharing_inodes_and_what_is_down():
    tree = explain.render_tree(_picture())
    lines = tree.splitlines()
    assert lines[0] == "pod web  Running  uid u-1"
    assert lines[1] == "├─ pause  pid 100"
    assert "net 11  cgroup 33 (host)" in lines[2]
    assert "eth0 10.89.0.2/24 <-> nspabc on bridge nspod0 (gateway 10.89.0.1)" in tree
    assert "├─ container app  [app]  running  pid 101  restarts 2" in tree
    assert "shares with pause  net 11" in tree and "its own            pid 22" in tree
    assert "the host's         cgroup 33" in tree
    assert "root  overlay  over the host's /  lowerdir=/  upperdir=/u" in tree
    assert "mount /data\\x1b]0;x <- volume data (/s) [ext4 rw]" in tree   # escaped
    assert "memory.max 536870912" in tree and "memory in use 4096 bytes" in tree
    assert "└─ container job  [init]  terminated (Completed, exit 0)" in tree
    assert lines[-1] == "! container app: volume x is not mounted at /x"
    down = dict(_picture(), pause={"pid": None, "running": False, "namespaces": {}},
                network=None)
    assert "├─ pause  not running (the sandbox is down)" in explain.render_tree(down)


def test_a_forked_process_takes_its_mode_from_its_environment(monkeypatch):
    monkeypatch.setattr(tracing, "_mode", "")
    monkeypatch.setenv("NSPOD_TRACE", "json")
    tracing.reload_from_environment()
    assert tracing.mode() == "json"
    monkeypatch.setenv("NSPOD_TRACE", "0")
    tracing.reload_from_environment()
    assert tracing.mode() == "" and not tracing.enabled()
