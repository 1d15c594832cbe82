"""Hostile names, planted state and other state roots, through the real CLI as root (issue 9).

Pod names are checked as the API server checks metadata.name (DNS-1123 subdomain, at most 253
characters) before any path is formed; a state root nspod did not make safely is refused; a
state.json is believed only about the pod's own processes and mounts; and a host-root container
sees no state root nspod has used on this host.
"""
import json
import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from conftest import NSPOD
from helpers import container, pod_yaml, wait_for
from nsPod.store import state
from nsPod.kernel.mounts import detach, mount_points

LONG_NAME = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}"   # 253 characters


def error_line(result, code):
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, f"exit {result.returncode}: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def sleeper():
    """A process that is not nspod's, with its pid and start time as state.json holds them."""
    proc = subprocess.Popen(["sleep", "1000"])
    return proc, state.process_start_time(proc.pid)


def plant(directory, pid, start, mount_point):
    """A pod directory as an attacker would plant it: pids and a mount that are not its own."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "pod.json"), "w") as f:
        json.dump({"manifest": {}, "plan": {"grace_seconds": 0, "containers": [],
                                            "init_containers": []}}, f)
    with open(os.path.join(directory, "state.json"), "w") as f:
        json.dump({"phase": "Running", "pause": {"pid": pid, "startTime": start},
                   "containers": {"c": {"pid": pid, "pidStartTime": start,
                                        "state": {"running": {}}}},
                   "mounts": [mount_point], "cgroup": None, "network": None}, f)


@pytest.fixture
def foreign_mount(nspod):
    """A tmpfs outside every pod directory, which no nspod command may unmount."""
    target = os.path.join(nspod.workdir, "foreign-mount")
    os.mkdir(target)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", target], check=True)
    try:
        yield target
    finally:
        detach(target)


# --- escapes through the POD argument -------------------------------------------------------

def test_rm_force_of_a_host_directory_touches_nothing(nspod):
    victim = os.path.join(nspod.workdir, "some", "host", "dir")
    os.makedirs(victim)
    open(os.path.join(victim, "keep"), "w").close()
    line = error_line(nspod("rm", "-f", victim, check=False), 2)
    assert "invalid pod name" in line
    assert os.listdir(victim) == ["keep"]


def test_rm_of_a_relative_path_out_of_the_root_touches_nothing(nspod):
    # <root>/pods/../../x is <workdir>/x: what `rm ../../x` removed before names were checked.
    victim = os.path.join(nspod.workdir, "x")
    os.makedirs(victim)
    open(os.path.join(victim, "keep"), "w").close()
    nspod("create", "--network", "none", "hostile-p")
    line = error_line(nspod("rm", "../../x", check=False), 2)
    assert "invalid pod name" in line and '"../../x"' in line
    assert os.listdir(victim) == ["keep"]
    assert nspod.pods() == ["hostile-p"]


@pytest.mark.parametrize("name", ["..", "."])
def test_rm_force_of_dot_and_dotdot_leaves_the_root_and_running_pods(nspod, name):
    nspod("create", "--network", "none", "hostile-p")
    # warm/ is podd's: the first command that finds the root made may make it.
    entries = lambda: sorted(e for e in os.listdir(nspod.root) if e != "warm")  # noqa: E731
    before = entries()
    line = error_line(nspod("rm", "-f", name, check=False), 2)
    assert "invalid pod name" in line
    assert entries() == before
    assert nspod.inspect("hostile-p")["status"]["phase"] == "Running"


def test_stop_of_a_directory_with_a_planted_state_kills_and_unmounts_nothing(
        nspod, foreign_mount):
    planted = os.path.join(nspod.workdir, "DIR")
    proc, start = sleeper()
    try:
        plant(planted, proc.pid, start, foreign_mount)
        line = error_line(nspod("stop", planted, check=False), 2)
        assert "invalid pod name" in line
        line = error_line(nspod("stop", "DIR", check=False), 2)
        assert proc.poll() is None
        assert foreign_mount in mount_points()
        assert sorted(os.listdir(planted)) == ["pod.json", "state.json"]
    finally:
        proc.kill()
        proc.wait()


def test_inspect_of_a_path_is_bad_input_not_not_found(nspod):
    line = error_line(nspod("inspect", "../etc", check=False), 2)
    assert line.startswith('error: invalid pod name "../etc"')


# --- planted state in a pod directory with a valid name -------------------------------------

@pytest.mark.parametrize("command", [["rm", "-f"], ["stop"], ["gc"]])
def test_a_planted_state_json_names_no_pid_or_mount_nspod_believes(nspod, foreign_mount, command):
    """pids are believed with their start time only when the process is the pod's (pause's
    binary, or in the pod's cgroup); mounts only inside the pod's own directory."""
    proc, start = sleeper()
    try:
        plant(os.path.join(nspod.root, "pods", "planted"), proc.pid, start, foreign_mount)
        os.makedirs(nspod.root, exist_ok=True)
        args = command + (["planted"] if command[0] != "gc" else [])
        result = nspod(*args, check=False)
        assert result.returncode == 0, result.stderr
        assert proc.poll() is None, "a process that is not the pod's was killed"
        assert foreign_mount in mount_points(), "a mount outside the pod's directory went"
    finally:
        proc.kill()
        proc.wait()
        nspod("rm", "-f", "planted", check=False)


# --- the state root -------------------------------------------------------------------------

def test_a_symlinked_root_is_refused(nspod):
    target = os.path.join(nspod.workdir, "elsewhere")
    os.mkdir(target, 0o700)
    os.symlink(target, nspod.root)
    line = error_line(nspod("create", "--network", "none", "p", check=False), 1)
    assert "is a symlink" in line
    assert os.listdir(target) == []
    os.unlink(nspod.root)


@pytest.mark.parametrize("entry", ["pods", "admission.lock", "network"])
def test_symlinks_planted_in_the_root_are_refused(nspod, entry):
    os.mkdir(nspod.root, 0o700)
    target = os.path.join(nspod.workdir, "elsewhere")
    os.mkdir(target)
    os.symlink(target, os.path.join(nspod.root, entry))
    for argv in (["create", "--network", "none", "hostile-p"], ["ps"], ["rm", "-f", "hostile-p"]):
        line = error_line(nspod(*argv, check=False), 1)
        assert f"{entry} is a symlink" in line
    assert os.listdir(target) == []
    os.unlink(os.path.join(nspod.root, entry))


def test_a_root_of_another_user_or_writable_by_others_is_refused(nspod):
    os.mkdir(nspod.root, 0o700)
    os.chown(nspod.root, 65534, 65534)
    assert "belongs to uid 65534" in error_line(nspod("ps", check=False), 1)
    os.chown(nspod.root, 0, 0)
    os.chmod(nspod.root, 0o777)
    assert "writable by group or others" in error_line(
        nspod("create", "--network", "none", "p", check=False), 1)
    os.chmod(nspod.root, 0o700)
    assert nspod.pods() == []


def test_the_root_is_made_0700(nspod):
    nspod("create", "--network", "none", "hostile-p")
    assert os.stat(nspod.root).st_mode & 0o777 == 0o700


# --- long names -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, network", [("p" * 70, "none"), (LONG_NAME, "none"),
                                           ("q" * 70, "bridge"), (LONG_NAME, "bridge")],
                         ids=["70", "253", "70-bridge", "253-bridge"])
def test_long_pod_names_work_end_to_end(nspod, name, network):
    """Kubernetes allows 253 characters; <root>/pods/<name>/control.sock is then far past
    sun_path's 108 bytes, so the socket is reached through /proc/self/fd."""
    text = pod_yaml(name, container("c", "echo hello; sleep 1000"),
                    extra_spec="  hostname: short\n")
    text = text.replace("metadata:\n",
                        f"metadata:\n  annotations: {{nspod.io/network: {network}}}\n")
    assert nspod("run", nspod.manifest(text)).stdout.strip() == name
    assert name in nspod("ps").stdout
    wait_for(lambda: "hello" in nspod("logs", name).stdout, what="the container's output")
    obj = nspod.inspect(name)
    assert obj["metadata"]["name"] == name and obj["status"]["phase"] == "Running"
    assert nspod("exec", name, "--", "hostname").stdout.strip() == "short"
    nspod("restart", name, "c")
    nspod("stop", "--timeout", "0", name)
    assert nspod("rm", name).stdout.strip() == name
    assert nspod.pods() == []


# --- other state roots ----------------------------------------------------------------------

def test_a_host_root_container_sees_no_other_state_root(nspod):
    """Root A holds a pod with an on-disk emptyDir and a secret in it; a host-root container
    of root B (on the same file system) can read neither it nor A's pod.json.

    Root A is outside /tmp: a container has a /tmp of its own, which would hide it anyway."""
    if os.stat("/var/tmp").st_dev != os.stat("/").st_dev:
        pytest.skip("/var/tmp is not on the root file system: a host-root container would "
                    "not see a root there in any case")
    other_dir = tempfile.mkdtemp(prefix="nspod-test-", dir="/var/tmp")
    other = os.path.join(other_dir, "root-a")

    def nspod_a(*args, check=True):
        argv = NSPOD + ["--root", other, "--cgroup-parent", nspod.cgroup_parent + "-a"] + list(args)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, **dict([nspod.marker.split("=")])))
        assert not check or result.returncode == 0, result.stderr
        return result

    writer = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: holder, annotations: {nspod.io/network: none}}
        spec:
          terminationGracePeriodSeconds: 0
          volumes: [{name: secret, emptyDir: {}}]
          containers:
          - name: c
            command: [sh, -c, "echo s3cret > /secret/token; sleep 1000"]
            volumeMounts: [{name: secret, mountPath: /secret}]
        """)
    path = nspod.manifest(writer, "a.yaml")
    try:
        nspod_a("run", path)
        token = os.path.join(other, "pods", "holder", "volumes", "secret", "token")
        wait_for(lambda: os.path.exists(token), what="the secret to be written")
        nspod("create", "--network", "none", "hostile-b")
        nspod("add", "hostile-b", "c", "--", "sleep", "1000")
        for target in (token, os.path.join(other, "pods", "holder", "pod.json")):
            result = nspod("exec", "hostile-b", "--", "cat", target, check=False)
            assert result.returncode != 0 and "s3cret" not in result.stdout, result.stdout
        listing = nspod("exec", "hostile-b", "--", "ls", "-a", other).stdout.split()
        assert "pods" not in listing
        # Nor the registry that names the roots.
        registry = nspod("exec", "hostile-b", "--", "ls", "-a", "/var/lib/nspod-roots").stdout
        assert registry.split() == [".", ".."], registry
        # The container still sees the rest of the host's file system.
        assert nspod("exec", "hostile-b", "--", "cat", "/etc/hostname", check=False).returncode == 0
    finally:
        nspod_a("rm", "-f", "--timeout", "0", "holder", check=False)
        shutil.rmtree(other_dir, ignore_errors=True)
