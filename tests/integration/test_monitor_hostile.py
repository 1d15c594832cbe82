"""The monitor never blocks on what a container or a remote client controls; its timers take
any number a manifest holds; a container's failure to start is that container's StartError.

Nothing here asserts a duration: each command that used to hang runs under a subprocess
timeout (the `nspod` fixture's), so a hang fails the test instead of stalling the suite.
"""
import json
import os
import signal
import socket
import subprocess
import time

import sys

import pytest

from busybox import make_rootfs
from helpers import container, container_status, pod_yaml, wait_for, wait_phase

GUARD = 60   # seconds a command may take before it counts as hung
NSPOD = [sys.executable, "-P", "-m", "nsPod"]
# PID 1 of a container ignores SIGTERM unless it handles it: this one ends at SIGTERM, so a
# stop returns at once whatever the grace period.
ENDS_AT_SIGTERM = "trap 'exit 0' TERM; sleep 1000 & wait"

FLOOD = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    try:
        while True:
            c.sendall(b"x" * 65536)
    except OSError:
        c.close()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_port_client_that_never_reads_does_not_block_the_monitor(nspod):
    port = free_port()
    text = pod_yaml("hp", f"""\
    - name: web
      command: {json.dumps(["python3", "-c", FLOOD])}
      ports:
        - containerPort: 8080
          hostPort: {port}
""", grace=5)
    nspod.run_yaml(text)
    wait_for(lambda: "listening" in nspod("logs", "hp").stdout, what="the server")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(GUARD)
    client.connect(("127.0.0.1", port))
    try:
        assert client.recv(1024)   # the relay works; from now on the client reads nothing
        # The pod floods, the client's window is shut: a relay that blocked in sendall would
        # leave the control socket unanswered and these would hang.
        for _ in range(3):
            assert nspod("exec", "hp", "--", "true", timeout=GUARD).returncode == 0
            assert nspod.inspect("hp")["status"]["phase"] == "Running"
        nspod("stop", "hp", timeout=GUARD)
        nspod("rm", "-f", "hp", timeout=GUARD)
    finally:
        client.close()


# --- /etc/passwd and /etc/group as a container can make them ---------------------------------

def hostile_passwd(etc, kind):
    passwd = os.path.join(etc, "passwd")
    os.unlink(passwd)
    if kind == "fifo":
        os.mkfifo(passwd)
    elif kind == "link-to-dev-zero":
        os.symlink("/dev/zero", passwd)   # in the container: its own /dev/zero
    else:
        with open(passwd, "wb") as f:
            f.truncate(20 << 30)          # 20 GB of holes, not one newline


def etc_pod(nspod, name, etc, user=None):
    rootfs = make_rootfs(os.path.join(nspod.workdir, "rootfs"))
    extra = f"      securityContext: {{runAsUser: {user}}}\n" if user is not None else ""
    return pod_yaml(name, f"""\
    - name: a
      image: {json.dumps(rootfs)}
      command: ["sleep", "1000"]
      volumeMounts:
        - {{name: etc, mountPath: /etc}}
      readinessProbe:
        exec: {{command: ["true"]}}
        periodSeconds: 1
        failureThreshold: 1
{extra}""", volumes=f"""\
    - name: etc
      hostPath: {{path: {json.dumps(etc)}, type: Directory}}
""")


@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero", "sparse-20g"])
def test_a_hostile_passwd_is_a_clear_failure_of_exec_and_of_the_next_start(nspod, kind):
    """runc reads the container's /etc/passwd to resolve the user; so does nspod, in the
    container's child, bounded: a FIFO, a device or a giant file fails exec and the container's
    start with a line naming /etc/passwd, and blocks neither the monitor nor the CLI."""
    etc = os.path.join(nspod.workdir, "etc")
    os.makedirs(etc)
    with open(os.path.join(etc, "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    nspod.run_yaml(etc_pod(nspod, "pw", etc))
    wait_for(lambda: container_status(nspod.inspect("pw"), "a")["ready"], what="readiness")
    hostile_passwd(etc, kind)
    # The exec probe cannot run now: it fails (the container turns unready), the monitor
    # goes on.
    wait_for(lambda: not container_status(nspod.inspect("pw"), "a")["ready"],
             what="the probe's failure")

    result = nspod("exec", "pw", "--", "true", check=False, timeout=GUARD)
    assert result.returncode == 126
    assert "/etc/passwd" in result.stderr and "Traceback" not in result.stderr
    assert ("a FIFO" in result.stderr if kind == "fifo" else
            "a character device" in result.stderr if kind == "link-to-dev-zero" else
            "larger than 1 MiB" in result.stderr), result.stderr

    # The next start of the container (a restart) fails as a StartError of that container.
    nspod("restart", "pw", "a", timeout=GUARD)

    def start_error():
        state = container_status(nspod.inspect("pw"), "a")["state"]
        return state.get("terminated", {}).get("reason") == "StartError" and state
    state = wait_for(start_error, what="the StartError")
    assert "/etc/passwd" in state["terminated"]["message"]
    # The monitor is free: it answers and the pod goes away.
    nspod("rm", "-f", "pw", timeout=GUARD)


def test_run_with_a_fifo_passwd_on_a_host_path_does_not_block(nspod):
    etc = os.path.join(nspod.workdir, "etc")
    os.makedirs(etc)
    os.mkfifo(os.path.join(etc, "passwd"))
    result = nspod("run", nspod.manifest(etc_pod(nspod, "pf", etc)), check=False, timeout=GUARD)
    assert "Traceback" not in result.stderr
    state = container_status(wait_phase(nspod, "pf", ("Failed",)), "a")["state"]
    assert state["terminated"]["reason"] == "StartError"
    assert "not a regular file (a FIFO): /etc/passwd" in state["terminated"]["message"]
    nspod("rm", "-f", "pf", timeout=GUARD)


def test_a_fifo_dev_null_does_not_block_exec(nspod):
    """exec's stdin is the host's /dev/null, opened before it joins the container: the
    container's own /dev/null may be anything, a FIFO whose open would wait forever."""
    # /dev/null is a bind mount (it cannot be unlinked); with CAP_SYS_ADMIN a FIFO can be
    # mounted over it.
    nspod.run_yaml(pod_yaml("dn", container(
        "a", "mkfifo /tmp/f && mount --bind /tmp/f /dev/null && sleep 1000",
        extra="      securityContext: {capabilities: {add: [SYS_ADMIN]}}\n")))
    wait_for(lambda: nspod("exec", "dn", "--", "test", "-p", "/dev/null",
                           check=False).returncode == 0, what="the FIFO")
    assert nspod("exec", "dn", "--", "echo", "ran", timeout=GUARD).stdout == "ran\n"


def test_a_giant_termination_message_is_read_bounded(nspod):
    """The terminationMessagePath file is read by the monitor: at most 4096 bytes (the
    kubelet's limit), non-blocking, never through a link (unit: test_monitor_units)."""
    write = "open('/dev/termination-log', 'w').write('m' * 10**7)"
    nspod.run_yaml(pod_yaml("tm", container("a", f"python3 -c \"{write}\"; exit 3")))
    state = wait_for(lambda: container_status(nspod.inspect("tm"), "a")["state"]
                     .get("terminated"), what="the container's end")
    assert state["message"] == "m" * 4096


# --- timers take any number a manifest holds ---------------------------------------------------

def test_a_30_day_deadline_probe_period_and_grace_do_not_end_the_pod(nspod):
    """epoll takes no wait longer than ~24.8 days; the monitor used to die with
    OverflowError ('timeout is too large') and the pod with it."""
    month = 30 * 86400
    text = pod_yaml("far", f"""\
    - name: a
      command: ["sh", "-c", {json.dumps(ENDS_AT_SIGTERM)}]
      livenessProbe:
        exec: {{command: ["true"]}}
        initialDelaySeconds: {month}
        periodSeconds: {month}
""", extra_spec=f"  activeDeadlineSeconds: {month}\n", grace=month)
    nspod.run_yaml(text)
    nspod("exec", "far", "--", "true")
    obj = nspod.inspect("far")
    assert obj["status"]["phase"] == "Running"
    assert container_status(obj, "a")["state"].get("running")
    # A stop with the pod's 30-day grace period (its SIGKILL timer is set): the container
    # ends at SIGTERM, so it returns at once.
    nspod("stop", "far", timeout=GUARD)
    assert nspod.inspect("far")["status"]["phase"] in ("Failed", "Succeeded")
    nspod("rm", "far")


def test_stop_timeout_out_of_range_is_a_usage_error(nspod):
    nspod.run_yaml(pod_yaml("st", container("a", ENDS_AT_SIGTERM)))
    for command in (("stop", "st"), ("rm", "-f", "st")):
        result = nspod(*command, "--timeout", "99999999999", check=False)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "--timeout" in result.stderr, result.stderr
        assert nspod.inspect("st")["status"]["phase"] == "Running"
    # The largest accepted value works (the container ends at SIGTERM).
    nspod("stop", "st", "--timeout", str(2**31 - 1), timeout=GUARD)


# --- start errors and signals ----------------------------------------------------------------

def test_a_start_failure_outside_the_child_is_the_containers_start_error(nspod):
    """A step the monitor itself takes to start a container (here: making its log directory,
    where the test put a file) fails that container with StartError, not the pod's monitor."""
    nspod.run_yaml(pod_yaml("se", container("good") + container("bad")))
    # A file where the restarted container's log directory goes.
    logs = os.path.join(nspod.root, "pods", "se", "logs", "bad")
    for name in os.listdir(logs):
        os.unlink(os.path.join(logs, name))
    os.rmdir(logs)
    with open(logs, "w") as f:
        f.write("in the way\n")
    nspod("restart", "se", "bad", timeout=GUARD)

    def start_error():
        state = container_status(nspod.inspect("se"), "bad")["state"]
        return state.get("terminated", {}).get("reason") == "StartError" and state
    state = wait_for(start_error, what="the StartError")
    assert "logs/bad" in state["terminated"]["message"]
    obj = nspod.inspect("se")
    assert container_status(obj, "good")["state"].get("running")
    nspod("exec", "se", "-c", "good", "--", "true")
    os.unlink(logs)
    nspod("rm", "-f", "se", timeout=GUARD)


def monitor_pid(nspod, pod):
    try:
        with open(os.path.join(nspod.root, "pods", pod, "state.json")) as f:
            return json.load(f)["monitor"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_second_signal_during_setup_does_not_interrupt_the_undoing(nspod):
    """Two signals reach the monitor at once while it makes the pod (sent while it is
    stopped, from the moment it wrote its state, i.e. its handlers are in place): the first
    interrupts the making, the second must not interrupt the undoing. It undoes the pod
    once, entirely, and says so; the fixture's leak check proves nothing is left."""
    many = "".join(container(f"c{i}") for i in range(12))
    path = nspod.manifest(pod_yaml("sig", many))
    env = dict(os.environ, **dict([nspod.marker.split("=")]))
    cli = subprocess.Popen([*NSPOD, *nspod.global_args(), "run", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    nspod.pod_names.add("sig")
    pid = None
    deadline = time.monotonic() + GUARD
    while pid is None and cli.poll() is None and time.monotonic() < deadline:
        pid = monitor_pid(nspod, "sig")
    if pid is not None:
        try:
            os.kill(pid, signal.SIGSTOP)
            # Pending together: Python runs SIGINT's handler first, SIGTERM's right after,
            # wherever the first one's exception has got to by then.
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    out, err = cli.communicate(timeout=GUARD)
    assert "Traceback" not in err and "internal error" not in err
    if pid is None:
        pytest.skip("the pod was made before its state could be read: nothing was tested")
    assert cli.returncode == 1 and "interrupted by signal" in err, err
    # `run` removed the pod once its monitor had undone it: nothing to find, nothing left.
    assert not os.path.exists(os.path.join(nspod.root, "pods", "sig"))


def test_rm_removes_an_empty_dir_nested_deeper_than_pythons_recursion(nspod):
    """shutil.rmtree recurses (and holds a descriptor per level): a container that nests
    directories 3000 deep in an emptyDir made `rm` fail with RecursionError."""
    nest = ("import os\\nos.chdir('/data')\\nfor _ in range(3000):\\n"
            "    os.mkdir('d'); os.chdir('d')\\nprint('nested', flush=True)")
    nspod.run_yaml(pod_yaml("deep", f"""\
    - name: a
      command: ["sh", "-c", {json.dumps(f'python3 -c "$(printf "{nest}")" && sleep 1000')}]
      volumeMounts:
        - {{name: data, mountPath: /data}}
""", volumes="""\
    - name: data
      emptyDir: {}
"""))
    wait_for(lambda: "nested" in nspod("logs", "deep").stdout, timeout=GUARD, what="the nesting")
    result = nspod("rm", "-f", "deep", timeout=GUARD)
    assert result.stdout == "deep\n" and not result.stderr
    assert not os.path.exists(os.path.join(nspod.root, "pods", "deep"))


def test_a_huge_netd_idle_time_is_clamped(nspod):
    """NSPOD_NETD_IDLE=1e9 made netd's first wait raise OverflowError: it died at each start
    (the pod got its network only through the client's retries)."""
    from nsPod.net import client as netclient
    nspod("run", nspod.manifest(pod_yaml("idle", container("a"))), env={"NSPOD_NETD_IDLE": "1e9"},
          timeout=GUARD)
    assert nspod.inspect("idle")["status"]["podIP"]
    assert netclient.running(nspod.root)   # still there, waiting for its next request
    with open(os.path.join(nspod.root, "network", "netd.log")) as f:
        assert "Traceback" not in f.read()
    nspod("rm", "-f", "idle", timeout=GUARD)
