"""podd, the warm process of a state root (nsPod/podd/, nsPod/warm/): started on demand,
forks each command and each pod's monitor, and is no part of any pod's fault boundary.

The test process has the context of the commands it runs (namespaces, cgroups, Python), so
nsPod.warm.client finds the same podd they do.
"""
import ctypes
import json
import os
import signal
import socket
import subprocess

import pytest

from conftest import NSPOD
from helpers import container, pod_yaml, wait_for
from nsPod.warm import client, protocol


def one_pod(nspod, name, command="sleep 1000"):
    return nspod.run_yaml(pod_yaml(name, container("c", command)))


def monitor_pid(nspod, pod):
    with open(os.path.join(nspod.root, "pods", pod, "state.json")) as f:
        return json.load(f)["monitor"]["pid"]


def podd_up(nspod):
    """Start podd (any command does, once the root exists: `run` makes it) and wait until
    it listens."""
    os.makedirs(os.path.join(nspod.root, "pods"), mode=0o700, exist_ok=True)
    nspod("ps")
    return wait_for(lambda: client.running(nspod.root) and
                    os.path.exists(client.socket_path(nspod.root)) and
                    client.running(nspod.root), timeout=30, what="podd to listen")


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def status_field(pid, field):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[{"ppid": 1, "sid": 3}[field]])


def fd_kinds(pid, pod_dir):
    """What each fd of pid is, with the pod's own paths made relative and pipe, socket and
    anon_inode numbers dropped: comparable between two monitors."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith(pod_dir):
            target = "POD" + target[len(pod_dir):]
        kinds[int(fd)] = target.split(":")[0] if ":[" in target else target
    return kinds


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_podd_starts_on_demand_and_forks_detached_monitors_with_only_their_fds(nspod):
    # No root yet: the command runs in-process and its monitor is a fresh interpreter.
    one_pod(nspod, "cold")
    cold = monitor_pid(nspod, "cold")
    assert "monitor/__main__.py" in cmdline(cold)
    podd = podd_up(nspod)
    one_pod(nspod, "warm")
    warm = monitor_pid(nspod, "warm")
    assert "-m nsPod.podd" in cmdline(warm), "forked from podd, not exec'd"
    assert client.running(nspod.root) == podd, "the same podd served the command"
    # Detached: its own session, its parent neither podd nor the command.
    assert status_field(warm, "sid") == warm
    assert status_field(warm, "ppid") != podd
    # Exactly the fds a fresh monitor has: nothing of podd's (listener, lock, log), nothing
    # of the command's (its stdio, its socket to the client).
    for pid, pod in ((cold, "cold"), (warm, "warm")):
        wait_for(lambda: len(fd_kinds(pid, os.path.join(nspod.root, "pods", pod))) ==
                 len(fd_kinds(cold, os.path.join(nspod.root, "pods", "cold"))), timeout=10,
                 what="the monitor's fds to settle")
    cold_fds = fd_kinds(cold, os.path.join(nspod.root, "pods", "cold"))
    warm_fds = fd_kinds(warm, os.path.join(nspod.root, "pods", "warm"))
    assert sorted(cold_fds.values()) == sorted(warm_fds.values()), (cold_fds, warm_fds)
    assert warm_fds[0] == warm_fds[1] == "/dev/null" and warm_fds[2] == "POD/monitor.log"
    assert not [t for t in warm_fds.values() if "/warm/" in t]
    assert nspod("exec", "warm", "--", "true").returncode == 0


def test_sigkill_of_podd_harms_no_pod_and_commands_start_it_again(nspod):
    podd_up(nspod)
    one_pod(nspod, "long")
    one_pod(nspod, "short", "sleep 2; echo done; exit 3")
    monitors = {p: monitor_pid(nspod, p) for p in ("long", "short")}
    os.kill(client.running(nspod.root), signal.SIGKILL)
    wait_for(lambda: client.running(nspod.root) is None, what="podd to be gone")
    # The pod that ends after podd's death has its exit code and its log.
    def short_done():
        state = nspod.inspect("short")["status"]["containerStatuses"][0]["state"]
        return state.get("terminated")
    assert wait_for(short_done, timeout=30, what="the short pod to end")["exitCode"] == 3
    assert nspod("logs", "short", "c").stdout == "done\n"
    assert alive(monitors["long"])
    listed = nspod("ps").stdout
    assert "long" in listed and "Running" in listed
    podd_up(nspod)
    assert nspod("exec", "long", "--", "true").returncode == 0
    assert nspod("rm", "-f", "--timeout", "0", "long", "short").stdout.split() == ["long", "short"]
    assert not alive(monitors["long"])


def test_sigkill_of_one_forked_monitor_harms_no_other_pod(nspod):
    podd_up(nspod)
    one_pod(nspod, "victim")
    one_pod(nspod, "bystander")
    victim, bystander = monitor_pid(nspod, "victim"), monitor_pid(nspod, "bystander")
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), what="the victim's monitor to end")
    assert alive(bystander)
    assert nspod("exec", "bystander", "--", "true").returncode == 0
    assert nspod.inspect("bystander")["status"]["phase"] == "Running"
    nspod("rm", "-f", "--timeout", "0", "victim")
    listed = nspod("ps").stdout
    assert "bystander" in listed and "victim" not in listed


def test_podd_exits_when_idle_and_the_next_command_starts_it(nspod):
    os.makedirs(os.path.join(nspod.root, "pods"), mode=0o700)
    nspod("ps", env={"NSPOD_WARM_IDLE": "1"})    # starts podd, which keeps the idle time
    first = wait_for(lambda: client.running(nspod.root), timeout=30, what="podd to start")
    wait_for(lambda: client.running(nspod.root) is None, timeout=30, what="podd's idle exit")
    assert not os.path.exists(client.socket_path(nspod.root))
    nspod("ps")
    again = wait_for(lambda: client.running(nspod.root), timeout=30, what="podd to start again")
    assert again != first


def test_the_warm_path_can_be_turned_off(nspod):
    os.makedirs(os.path.join(nspod.root, "pods"), mode=0o700)
    nspod("ps", env={"NSPOD_WARM": "0"})
    nspod("ps", env={"NSPOD_WARM": "0"})
    assert client.running(nspod.root) is None
    one_pod_env = pod_yaml("cold-only", container("c"))
    nspod("run", nspod.manifest(one_pod_env), env={"NSPOD_WARM": "0"})
    assert "monitor/__main__.py" in cmdline(monitor_pid(nspod, "cold-only"))


def test_commands_through_podd_keep_the_callers_cwd_stdin_exit_codes_and_signals(nspod):
    podd_up(nspod)
    nspod.manifest(pod_yaml("rel", container("c")), name="rel.yaml")
    result = subprocess.run(NSPOD + nspod.global_args() + ["run", "rel.yaml"], cwd=nspod.workdir,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "rel\n", result.stderr
    nspod.pod_names.add("rel")
    assert "-m nsPod.podd" in cmdline(monitor_pid(nspod, "rel"))
    assert nspod("exec", "-i", "rel", "--", "cat", input="from stdin").stdout == "from stdin"
    result = nspod("exec", "rel", "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert nspod("bogus", check=False).returncode == 2
    # A signal to the client reaches the command: exec passes SIGTERM on to its process.
    proc = subprocess.Popen(NSPOD + nspod.global_args() + ["exec", "rel", "--", "sh", "-c",
                            "trap 'exit 42' TERM; echo up; while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 42


def test_a_killed_client_kills_its_command(nspod):
    podd_up(nspod)
    one_pod(nspod, "p")
    marker = "997.25"           # `sleep 997.25`: this test's exec'd process, by its cmdline
    proc = subprocess.Popen(NSPOD + nspod.global_args() + ["exec", "p", "--", "sh", "-c",
                            f"echo up; exec sleep {marker}"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"

    def sleepers():
        return [pid for pid in os.listdir("/proc") if pid.isdigit() and alive(pid)
                and _cmdline_or_none(pid) == f"sleep {marker} "]
    # "up" comes from sh just before it execs sleep: wait for the exec.
    [sleeper] = wait_for(sleepers, timeout=30, what="the exec'd sleep")
    command = status_field(sleeper, "ppid")   # the process running `exec`: its reaper
    assert command != proc.pid and "-m nsPod.podd" in cmdline(command)
    proc.kill()
    proc.wait()
    # As when the command ran in the client: the command's process dies with it (what it
    # started lives on as before: exec's process is not tied to nspod's life).
    wait_for(lambda: not alive(command), timeout=30, what="the command's process to end")
    os.kill(int(sleeper), signal.SIGKILL)


def _cmdline_or_none(pid):
    try:
        return cmdline(pid)
    except OSError:
        return None


def _as_nobody_with_caps(path):
    """Connect to podd's socket as uid 65534 keeping root's capabilities (so the 0700
    directory does not stop it first): what SO_PEERCRED says is all podd can go by."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(28, 4, 0, 0, 0) != 0:          # PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP
        os._exit(3)
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    sock.settimeout(10)
    reply = sock.recv(protocol.MAX_REPLY)
    os._exit(0 if reply.startswith(b"E") else 1)


def test_a_connection_from_another_uid_is_refused(nspod):
    podd_up(nspod)
    path = client.socket_path(nspod.root)
    pid = os.fork()
    if pid == 0:
        try:
            _as_nobody_with_caps(path)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        pytest.skip("PR_SET_SECUREBITS refused here: cannot be another uid with root's caps")
    assert code == 0, "podd answered E and closed"
    assert nspod("ps").returncode == 0, "podd serves root on"


def test_hostile_requests_hold_up_nobody(nspod):
    podd_up(nspod)
    path = client.socket_path(nspod.root)
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)                      # says nothing, holds the connection
    half = socket.socket(socket.AF_UNIX)
    half.connect(path)
    half.sendall(b"NSPD\x00\x00\x10\x00v1\0run")   # a header promising more than comes
    for bad in (b"NSPD\xff\xff\xff\xff", b"GET / HTTP/1.0\r\n\r\n",
                protocol.encode_request(protocol.Request("run", ["ps"]))):  # no fds
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(bad)
            sock.settimeout(10)
            assert sock.recv(protocol.MAX_REPLY).startswith(b"E"), bad
    # Meanwhile commands are served, by podd.
    podd = client.running(nspod.root)
    one_pod(nspod, "served")
    assert "-m nsPod.podd" in cmdline(monitor_pid(nspod, "served"))
    assert client.running(nspod.root) == podd
    silent.close()
    half.close()


def test_a_root_too_long_for_podds_socket_runs_commands_in_process():
    """A state root whose podd socket path would pass sun_path's bound: no podd is started
    (it could not listen), every command runs in-process, and works."""
    from conftest import nspod_world
    with nspod_world() as world:
        long_root = os.path.join(world.workdir, "r" * 90)
        os.makedirs(os.path.join(long_root, "pods"), mode=0o700)
        os.chmod(long_root, 0o700)
        env = dict(os.environ)
        env.pop("NSPOD_TRACE", None)
        for _ in range(2):
            result = subprocess.run(NSPOD + ["--root", long_root, "ps"], capture_output=True,
                                    text=True, timeout=60, env=env)
            assert result.returncode == 0, result.stderr
        assert client.running(long_root) is None
        assert not os.path.exists(client.warm_dir(long_root)) or \
            not [n for n in os.listdir(client.warm_dir(long_root)) if n.endswith(".lock")]
