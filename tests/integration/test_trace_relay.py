"""--trace through the monitor: add, restart, exec, debug and rm narrate the steps taken for
them (the monitor relays its own and its children's), as text or as JSON records."""
import json
import os
import socket
import time

from helpers import container, pod_yaml, wait_for

SETUP_STEPS = ("setns(", "mount(", "pivot_root(")


def _json_steps(stderr):
    """The --trace=json records among stderr's lines (other lines: warnings, errors)."""
    steps = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            steps.append(json.loads(line))
    return steps


def _pod(nspod, name="p"):
    """A pod with one container; grace period 0, so that a restart is at once."""
    return nspod.run_yaml(pod_yaml(name, container("app", "exec sleep 1000"), grace=0))


def test_trace_add_narrates_the_containers_setup(nspod):
    _pod(nspod)
    result = nspod("--trace", "add", "p", "second", "--", "sleep", "1000")
    assert result.stdout.strip() == "second"
    for step in SETUP_STEPS + ("unshare(CLONE_NEWNS)", "mount(/proc/"):
        assert step in result.stderr, (step, result.stderr)
    # In order: joining pause's namespaces, then the mounts, then pivot_root.
    err = result.stderr
    assert err.index("setns(") < err.index("unshare(CLONE_NEWNS)") < err.index("pivot_root(")
    pid = nspod.inspect("p")["runtime"]["containers"]["second"]["pid"]
    assert f"nspod[{pid}]: pivot_root(" in err



def test_trace_json_records_parse_with_pid_result_and_duration(nspod):
    _pod(nspod)
    result = nspod("--trace=json", "add", "p", "second", "--", "sleep", "1000")
    steps = _json_steps(result.stderr)
    assert steps and all(list(s) == ["pid", "syscall", "args", "result", "errno", "duration_ms"]
                         for s in steps)
    pid = nspod.inspect("p")["runtime"]["containers"]["second"]["pid"]
    by_call = {}
    for s in steps:
        by_call.setdefault(s["syscall"], []).append(s)
    for call in ("setns", "mount", "pivot_root", "unshare"):
        assert by_call.get(call), (call, sorted(by_call))
    pivot = by_call["pivot_root"][0]
    assert pivot["pid"] == pid and pivot["args"] == [".", "."]
    assert pivot["result"] == 0 and pivot["errno"] is None
    assert isinstance(pivot["duration_ms"], float) and pivot["duration_ms"] >= 0
    pause = nspod.inspect("p")["runtime"]["pausePid"]
    assert any(s["args"][0] == f"/proc/{pause}/ns/net" for s in by_call["setns"])
    # No plain lines mixed in.
    assert not any(line.startswith("nspod[") for line in result.stderr.splitlines())


def test_trace_restart_narrates_the_kill_and_the_new_start(nspod):
    _pod(nspod)
    old = nspod.inspect("p")["runtime"]["containers"]["app"]["pid"]
    result = nspod("--trace", "restart", "p", "app")
    new = nspod.inspect("p")["runtime"]["containers"]["app"]["pid"]
    assert new != old
    assert f"kill({old}, SIGKILL)" in result.stderr   # grace period 0
    assert f"nspod[{new}]: pivot_root(" in result.stderr
    assert result.stderr.index(f"kill({old}") < result.stderr.index("pivot_root(")


def test_trace_exec_and_debug_narrate_their_setns(nspod):
    _pod(nspod)
    pid = nspod.inspect("p")["runtime"]["containers"]["app"]["pid"]
    result = nspod("--trace", "exec", "p", "--", "true")
    for kind in ("ipc", "uts", "net", "pid", "mnt"):
        assert f"setns(/proc/{pid}/ns/{kind}," in result.stderr, kind
    result = nspod("--trace=json", "debug", "p", "--", "true")
    calls = {s["syscall"] for s in _json_steps(result.stderr)}
    assert {"setns", "mount", "pivot_root"} <= calls


def test_trace_rm_narrates_the_teardown(nspod):
    _pod(nspod)
    runtime = nspod.inspect("p")["runtime"]
    result = nspod("--trace", "rm", "-f", "--timeout", "0", "p")
    assert f"kill({runtime['containers']['app']['pid']}, SIGKILL)" in result.stderr \
        or f"kill({runtime['containers']['app']['pid']}, SIGTERM)" in result.stderr
    assert "rmdir(" in result.stderr and "umount2(" in result.stderr
    assert nspod.pods() == []


def test_a_caller_gone_mid_relay_harms_nothing(nspod):
    """A traced request whose caller hangs up at once, and one whose caller never reads:
    the monitor drops them and the pod and its next command go on."""
    _pod(nspod)
    control = os.path.join(nspod.root, "pods", "p", "control.sock")
    request = (json.dumps({"op": "restart", "container": "app", "trace": True}) + "\n").encode()

    def restarts():
        return nspod.inspect("p")["status"]["containerStatuses"][0]["restartCount"]

    gone = socket.socket(socket.AF_UNIX)
    gone.connect(control)
    gone.sendall(request)
    gone.close()
    wait_for(lambda: restarts() == 1, what="the first restart")
    # One that stays connected and reads nothing, with a tiny receive buffer.
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.connect(control)
    stuck.sendall(request)
    try:
        wait_for(lambda: restarts() == 2, what="the second restart")
        result = nspod("--trace", "add", "p", "after", "--", "sleep", "1000")
        assert "pivot_root(" in result.stderr
        assert nspod.inspect("p")["status"]["phase"] == "Running"
        assert "after" in nspod.inspect("p")["runtime"]["containers"]
        # The stuck caller got what fit, the answer included or not, and is hung up on
        # (ANSWER_TIMEOUT) rather than waited for.
        stuck.settimeout(10)
        received = b""
        while True:
            chunk = stuck.recv(65536)
            if not chunk:
                break
            received += chunk
        assert received.startswith(b'{"trace": {')
    finally:
        stuck.close()
    nspod("exec", "p", "-c", "after", "--", "true")


def test_explain_shows_the_kernels_inodes_mounts_and_limits(nspod):
    volume = "  - name: data\n    emptyDir: {medium: Memory, sizeLimit: 16Mi}\n"
    mounts = "      - name: data\n        mountPath: /data\n"
    limits = "      resources:\n        limits: {memory: 64Mi}\n"
    nspod.run_yaml(pod_yaml("p", container("app", "exec sleep 1000", mounts=mounts, extra=limits)
                            + container("done", "exit 3"), volumes=volume, grace=0))
    wait_for(lambda: "terminated" in nspod.inspect("p")["status"]["containerStatuses"][1]["state"],
             what="container done to end")
    picture = json.loads(nspod("explain", "p", "-o", "json").stdout)
    runtime = nspod.inspect("p")["runtime"]
    pause, app = runtime["pausePid"], runtime["containers"]["app"]["pid"]
    assert picture["pause"]["pid"] == pause and picture["problems"] == []
    for kind in ("net", "ipc", "uts"):
        inode = os.stat(f"/proc/{pause}/ns/{kind}").st_ino
        assert picture["pause"]["namespaces"][kind] == {"inode": inode, "sharing": "pod"}
    containers = {c["name"]: c for c in picture["containers"]}
    ns = containers["app"]["namespaces"]
    for kind in ("net", "ipc", "uts", "pid", "mnt", "cgroup"):
        assert ns[kind]["inode"] == os.stat(f"/proc/{app}/ns/{kind}").st_ino, kind
    assert {k for k, v in ns.items() if v["sharing"] == "pod"} == {"net", "ipc", "uts"}
    assert {k for k, v in ns.items() if v["sharing"] == "own"} == {"pid", "mnt"}
    assert containers["app"]["root"]["fstype"] == "overlay"
    data = next(m for m in containers["app"]["mounts"] if m["target"] == "/data")
    assert data["kernel"] == {"fstype": "tmpfs", "readOnly": False}
    assert data["source"] == os.path.join(nspod.root, "pods", "p", "volumes", "data")
    limits = containers["app"]["cgroup"]["limits"]
    assert limits.get("memory.max", limits.get("memory.limit_in_bytes")) == str(64 << 20)
    assert containers["done"]["status"] == "terminated" and containers["done"]["pid"] is None
    assert containers["done"]["detail"] == "Error, exit 3"
    net = picture["network"]
    assert net["podIP"] in net["kernel"]["podAddresses"]
    assert net["hostVeth"] in net["kernel"]["bridgePorts"]
    assert net["kernel"]["netnsInode"] == os.stat(f"/proc/{pause}/ns/net").st_ino
    tree = nspod("explain", "p").stdout
    assert f"pause  pid {pause}" in tree and f"container app  [app]  running  pid {app}" in tree
    assert f"net {os.stat(f'/proc/{app}/ns/net').st_ino}" in tree
    assert f"mnt {os.stat(f'/proc/{app}/ns/mnt').st_ino}" in tree
    assert "mount /data <- volume data" in tree and "[tmpfs rw]" in tree
    assert "container done  [app]  terminated (Error, exit 3)" in tree
    assert f"<-> {net['hostVeth']} on bridge {net['bridge']}" in tree
    # A stopped pod: pause and the containers shown as down, nothing made up.
    nspod("stop", "--timeout", "0", "p")
    stopped = json.loads(nspod("explain", "p", "-o", "json").stdout)
    assert stopped["pause"]["running"] is False
    assert all(c["pid"] is None and c["status"] == "terminated" for c in stopped["containers"])
    assert "pause  not running" in nspod("explain", "p").stdout


def test_explain_bad_input(nspod):
    assert nspod("explain", "../x", check=False).returncode == 2
    missing = nspod("explain", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert nspod("explain", "-o", "yaml", "nope", check=False).returncode == 2


def test_trace_json_run_and_add_init_and_stop(nspod):
    """`run` (its monitor narrates straight to the caller while the pod is made), `add --init`
    (answered when the init container has ended) and `stop`, all as JSON records only."""
    result = nspod("--trace=json", "run",
                   nspod.manifest(pod_yaml("p", container("app", "exec sleep 1000"), grace=0)))
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("{") for line in lines), result.stderr
    calls = {json.loads(line)["syscall"] for line in lines}
    assert {"unshare", "setns", "pivot_root", "sethostname", "netlink"} <= calls
    result = nspod("--trace=json", "add", "--init", "p", "once", "--", "true")
    steps = _json_steps(result.stderr)
    assert any(s["syscall"] == "pivot_root" for s in steps)
    result = nspod("--trace=json", "stop", "--timeout", "0", "p")
    steps = _json_steps(result.stderr)
    assert any(s["syscall"] == "umount2" for s in steps)
    assert any(s["syscall"] == "rmdir" and s["errno"] is None for s in steps)


def test_trace_format_bad_input(nspod):
    result = nspod("--trace=xml", "ps", check=False)
    assert result.returncode == 2
    assert result.stderr == "error: --trace: 'xml' is not a trace format (--trace or --trace=json)\n"
    assert "Traceback" not in result.stderr
    assert nspod("--trace=text", "ps").returncode == 0


def test_trace_apply_narrates_the_changed_containers_new_start(nspod):
    nspod("run", nspod.manifest(pod_yaml("p", container("app", "exec sleep 1000")
                                         + container("other"), grace=0)))
    pids = {k: v["pid"] for k, v in nspod.inspect("p")["runtime"]["containers"].items()}
    changed = nspod.manifest(pod_yaml("p", container("app", "exec sleep 999")
                                      + container("other"), grace=0), name="changed.yaml")
    result = nspod("--trace", "apply", changed)
    now = {k: v["pid"] for k, v in nspod.inspect("p")["runtime"]["containers"].items()}
    assert now["other"] == pids["other"] and now["app"] != pids["app"]
    assert f"kill({pids['app']}, SIGKILL)" in result.stderr
    assert f"nspod[{now['app']}]: pivot_root(" in result.stderr
    assert f"nspod[{pids['other']}]" not in result.stderr
