"""`nspod cri` driven by the real crictl (cri-tools v1.34.0), as root, under the leak check:
pull from a local docker-registry (busybox-static images pushed by skopeo), runp, create,
start, ps, exec, logs, stats, inspectp, stop, rm, stopp, rmp, images, rmi; the kubelet's
sequence leaves nothing behind; CRI and nspod see each other's pods."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cri"))

CRICTL = os.environ.get("CRICTL") or shutil.which("crictl") or "/var/cache/nspod-go/bin/crictl"
NSPOD = [sys.executable, "-P", "-m", "nsPod"]


@pytest.fixture(scope="module")
def registry():
    import cri_images
    from test_registry import REGISTRY, SKOPEO
    missing = [p for p in (REGISTRY, SKOPEO, CRICTL) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: install docker-registry and skopeo (apt), "
                    "crictl (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0)")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("no /bin/busybox: install busybox-static")
    import tempfile
    base = tempfile.mkdtemp(prefix="nspod-cri-registry-")
    reg = cri_images.Registry(base, "registry")
    try:
        path = cri_images.layout(base, "busybox")
        reg.busybox = reg.push(path, "busybox:1")
        reg.other = reg.push(cri_images.layout(base, "other", [("o", "file", b"o", 0o644)]),
                             "other:1")
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


class Cri:
    def __init__(self, nspod, registry):
        self.nspod = nspod
        self.sock = f"unix://{nspod.workdir}/cri.sock"
        conf = os.path.join(nspod.workdir, "registries.conf")
        with open(conf, "w") as f:
            f.write(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
        self.log = open(os.path.join(nspod.workdir, "cri.log"), "wb")
        key, value = nspod.marker.split("=")
        env = dict(os.environ, NSPOD_REGISTRIES_CONF=conf, **{key: value})
        self.proc = subprocess.Popen(NSPOD + nspod.global_args() + ["cri", "--listen", self.sock],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock[len("unix://"):]):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.server_log()
            time.sleep(0.05)

    def command(self, *args):
        return [CRICTL, "--config", "/dev/null", "-r", self.sock, "-i", self.sock, "-t", "60s",
                *args]

    def __call__(self, *args, check=True, input=None):
        r = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=120,
                           input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"crictl {' '.join(args)}: {r.returncode}\n{r.stdout}\n"
                                 f"{r.stderr}\nserver:\n{self.server_log()}")
        return r

    def json(self, *args):
        return json.loads(self(args[0], "-o", "json", *args[1:]).stdout)

    def server_log(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


@pytest.fixture
def cri(nspod, registry):
    c = Cri(nspod, registry)
    try:
        yield c
    finally:
        c.stop()
        log = c.server_log()
        assert "Traceback" not in log and "internal error" not in log, log


def write(nspod, name, doc):
    path = os.path.join(nspod.workdir, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def sandbox(nspod, name="web", **extra):
    return write(nspod, f"{name}-pod.json", {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "attempt": 0},
        "log_directory": os.path.join(nspod.workdir, "logs", name), "linux": {}, **extra})


def container(nspod, image, name="app", command=("sh", "-c", "echo hello; echo oops >&2; "
                                                  "exec sleep 1000"), **extra):
    return write(nspod, f"{name}-ctr.json", {
        "metadata": {"name": name}, "image": {"image": image}, "command": list(command),
        "log_path": f"{name}/0.log", "linux": {}, **extra})


def zombies_of(parent):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and int(fields[1]) == parent:
            found.append(pid)
    return found


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_kubelet_sequence_leaves_nothing(cri, nspod, registry):
    """pull, runp -> create -> start -> exec -> logs -> stats -> stop -> rm -> stopp -> rmp."""
    cri("pull", registry.busybox)
    images = cri.json("images")["images"]
    assert [registry.busybox] == [t for i in images for t in i["repoTags"]]
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    assert len(pod_id) == 64
    status = cri.json("inspectp", pod_id)["status"]
    assert status["state"] == "SANDBOX_READY"
    assert status["network"]["ip"].startswith(nspod.subnet.rsplit(".", 2)[0])
    ctr = cri("create", pod_id, container(nspod, registry.busybox), sandbox(nspod)).stdout.strip()
    assert cri.json("inspect", ctr)["status"]["state"] == "CONTAINER_CREATED"
    cri("start", ctr)
    assert cri.json("inspect", ctr)["status"]["state"] == "CONTAINER_RUNNING"
    assert [c["id"] for c in cri.json("ps")["containers"]] == [ctr]
    assert cri("exec", "-s", ctr, "sh", "-c", "echo out; echo $$").stdout.split()[0] == "out"
    exec_ = cri("exec", "-s", ctr, "sh", "-c", "echo err >&2; exit 3", check=False)
    assert exec_.returncode != 0 and "exited with 3: err" in exec_.stderr
    wait_for(lambda: "hello" in cri("logs", ctr).stdout, "the container's output in its log")
    logs = cri("logs", ctr)
    assert logs.stdout == "hello\n" and "oops" in logs.stderr
    # The kubelet's log path: a CRI record per line.
    with open(os.path.join(nspod.workdir, "logs", "web", "app", "0.log")) as f:
        first = f.readline().split(" ", 3)
    assert first[1:] == ["stdout", "F", "hello\n"] and first[0].endswith("Z")
    stats = cri.json("stats", ctr)["stats"][0]
    assert int(stats["memory"]["workingSetBytes"]["value"]) > 0
    cri("stop", "-t", "5", ctr)
    status = cri.json("inspect", ctr)["status"]
    assert status["state"] == "CONTAINER_EXITED" and status["exitCode"] == 143
    # Never restarted by nspod: the kubelet decides.
    time.sleep(0.5)
    assert cri.json("inspect", ctr)["status"]["state"] == "CONTAINER_EXITED"
    assert cri.json("inspectp", pod_id)["status"]["state"] == "SANDBOX_READY"
    cri("rm", ctr)
    assert cri.json("ps", "-a")["containers"] == []
    assert not os.path.lexists(os.path.join(nspod.workdir, "logs", "web", "app", "0.log"))
    cri("stopp", pod_id)
    assert cri.json("inspectp", pod_id)["status"]["state"] == "SANDBOX_NOTREADY"
    cri("rmp", pod_id)
    assert cri.json("pods")["items"] == []
    assert nspod.pods() == []
    # The pod's monitor was the server's child: reaped, not left a zombie.
    wait_for(lambda: not zombies_of(cri.proc.pid), "the monitor reaped by the server")
    cri("rmi", registry.busybox)
    assert cri.json("images")["images"] == []


def test_a_container_that_ends_is_not_restarted_and_the_sandbox_stays(cri, nspod, registry):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sh", "-c", "exit 7"]),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    wait_for(lambda: cri.json("inspect", ctr)["status"]["state"] == "CONTAINER_EXITED",
             "the container to end")
    assert cri.json("inspect", ctr)["status"]["exitCode"] == 7
    time.sleep(0.5)
    assert cri.json("inspectp", pod_id)["status"]["state"] == "SANDBOX_READY"
    # For nspod too the pod runs on (not Failed): `nspod ps` lists it.
    assert " Running " in nspod("ps").stdout
    # The kubelet's next attempt: a new container of the same name.
    again = cri("create", pod_id, write(nspod, "again.json", {
        "metadata": {"name": "app", "attempt": 1}, "image": {"image": registry.busybox},
        "command": ["sleep", "1000"], "linux": {}}), sandbox(nspod)).stdout.strip()
    cri("start", again)
    assert cri.json("inspect", again)["status"]["state"] == "CONTAINER_RUNNING"
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_nspod_and_cri_see_each_others_pods(cri, nspod, registry):
    made = nspod.run_yaml("""
        apiVersion: v1
        kind: Pod
        metadata: {name: byrun, labels: {app: demo}}
        spec:
          containers:
          - name: c
            command: [sleep, "1000"]
    """)
    assert made == "byrun"
    pods = cri.json("pods")["items"]
    assert [(p["metadata"]["name"], p["labels"]) for p in pods] == \
        [("byrun", {"app": "demo", "nspod.io/made-by": "nspod"})]
    assert len(cri.json("pods", "--label", "app=demo")["items"]) == 1
    assert cri.json("pods", "--label", "app=other")["items"] == []
    assert [c["metadata"]["name"] for c in cri.json("ps")["containers"]] == ["c"]
    pod_id = cri("runp", sandbox(nspod, "fromcri")).stdout.strip()
    names = nspod("ps").stdout
    assert "fromcri-" in names and "byrun" in names
    cri("stopp", pod_id)
    cri("rmp", pod_id)
    nspod("rm", "-f", "byrun")


def test_hostile_requests_are_refused_and_leave_nothing(cri, nspod, registry):
    bad = write(nspod, "bad-pod.json", {"metadata": {"name": "../../etc", "namespace": "default",
                                                  "uid": "x"}})
    r = cri("runp", bad, check=False)
    assert r.returncode != 0 and "config.metadata.name" in r.stderr
    bad = sandbox(nspod, "logs", log_directory="/tmp/../etc")
    r = cri("runp", bad, check=False)
    assert r.returncode != 0 and "config.log_directory" in r.stderr
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    for doc, field in (
            ({"log_path": "../../../etc/passwd"}, "config.log_path"),
            ({"mounts": [{"container_path": "/x", "host_path": "/etc/../root"}]},
             "config.mounts[0].host_path"),
            ({"working_dir": "relative"}, "config.working_dir"),
            ({"linux": {"resources": {"oom_score_adj": 99999}}},
             "config.linux.resources.oom_score_adj")):
        r = cri("create", pod_id, container(nspod, registry.busybox, **doc), sandbox(nspod),
                check=False)
        assert r.returncode != 0 and field in r.stderr, (field, r.stderr)
    assert cri.json("ps", "-a")["containers"] == []
    assert not os.path.exists("/etc/passwd.nspod") and os.path.isfile("/etc/passwd")
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_localhost_seccomp_profile_is_applied(cri, nspod, registry):
    profile = os.path.join(nspod.workdir, "no-chmod.json")
    with open(profile, "w") as f:
        json.dump({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}, f)
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sleep", "1000"],
                                          linux={"security_context": {"seccomp": {
                                              "profile_type": 2, "localhost_ref": profile}}}),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    r = cri("exec", "-s", ctr, "sh", "-c", "touch /tmp/x && chmod 600 /tmp/x", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    assert cri("exec", "-s", ctr, "sh", "-c", "grep Seccomp: /proc/self/status").stdout.split() \
        == ["Seccomp:", "2"]
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_host_port_mapping_relays_to_the_pod(cri, nspod, registry):
    import socket
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cri("pull", registry.busybox)
    pod = sandbox(nspod, port_mappings=[{"container_port": 8080, "host_port": port}])
    pod_id = cri("runp", pod).stdout.strip()
    # The port is taken now: a second sandbox asking for it is refused, and nothing is made.
    r = cri("runp", sandbox(nspod, "second", port_mappings=[{"container_port": 1,
                                                             "host_port": port}]), check=False)
    assert r.returncode != 0 and f"hostPort {port}" in r.stderr
    assert len(nspod.pods()) == 1
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=[
        "sh", "-c", "echo served > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]),
        pod).stdout.strip()
    cri("start", ctr)

    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as r:
                return r.read()
        except OSError:
            return None
    wait_for(lambda: fetch() == b"served\n", "the page through the host port")
    cri("rmp", "-f", pod_id)
    assert fetch() is None
    assert nspod.pods() == []


def test_container_events_stream(cri, nspod, registry):
    """GetContainerEvents, read by a Python gRPC client while crictl makes and removes."""
    import threading
    from nsPod.cri.protocol import channel, pb, runtime_stub
    ch = channel(cri.sock)
    events = []
    call = runtime_stub(ch).GetContainerEvents(pb.GetEventsRequest())

    def read():
        try:
            for ev in call:
                events.append((ev.container_id, ev.container_event_type))
        except Exception:
            pass        # cancelled at the end
    reader = threading.Thread(target=read)
    reader.start()
    try:
        time.sleep(0.5)
        cri("pull", registry.busybox)
        pod_id = cri("runp", sandbox(nspod)).stdout.strip()
        ctr = cri("create", pod_id, container(nspod, registry.busybox), sandbox(nspod)).stdout.strip()
        cri("start", ctr)
        cri("rmp", "-f", pod_id)
        wait_for(lambda: (pod_id, pb.CONTAINER_DELETED_EVENT) in events, "the sandbox's end")
    finally:
        call.cancel()
        reader.join(10)
        ch.close()
    kinds = [k for c, k in events if c == ctr]
    assert kinds[:2] == [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT], events
    assert nspod.pods() == []


def test_a_container_that_cannot_start_is_a_start_error(cri, nspod, registry):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["/no/such"]),
              sandbox(nspod)).stdout.strip()
    r = cri("start", ctr, check=False)
    assert r.returncode != 0 and "StartError" in r.stderr
    status = cri.json("inspect", ctr)["status"]
    assert (status["state"], status["reason"]) == ("CONTAINER_EXITED", "StartError")
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_masked_and_readonly_paths(cri, nspod, registry):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sleep", "1000"],
                                          linux={"security_context": {
                                              "masked_paths": ["/bin/ls"],
                                              "readonly_paths": ["/tmp"]}}),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    r = cri("exec", "-s", ctr, "/bin/ls", check=False)
    assert r.returncode != 0 and "ermission denied" in r.stderr, r
    r = cri("exec", "-s", ctr, "touch", "/tmp/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_exec_sync_timeout_ends_the_command(cri, nspod, registry):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sleep", "1000"]),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    r = cri("exec", "-s", "--timeout", "1", ctr, "sleep", "4321", check=False)
    assert r.returncode != 0 and "timed out" in r.stderr, r
    # The command is gone, not left running in the container.
    wait_for(lambda: "sleep 4321" not in cri("exec", "-s", ctr, "ps").stdout,
             "the timed-out command to end")
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_update_container_resources_writes_the_cgroup(cri, nspod, registry):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sleep", "1000"]),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    cri("update", "--memory", str(96 << 20), ctr)
    doc = cri.json("inspect", ctr)
    cgroup = doc["info"]["cgroup"]
    for path in (f"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes",
                 f"/sys/fs/cgroup/{cgroup}/memory.max"):
        if os.path.exists(path):
            with open(path) as f:
                assert int(f.read()) == 96 << 20
            break
    else:
        pytest.fail(f"no memory limit file for cgroup {cgroup}")
    r = cri("update", "--memory", "-5", ctr, check=False)
    assert r.returncode != 0
    cri("rmp", "-f", pod_id)
    assert nspod.pods() == []


def test_host_to_container_mount_propagation(cri, nspod, registry):
    """A mount made on the host under a HOST_TO_CONTAINER mount appears in the container;
    a private mount's does not; nothing the container mounts reaches the host."""
    shared = os.path.join(nspod.workdir, "shared")
    private = os.path.join(nspod.workdir, "private")
    for d in (shared, private):
        os.makedirs(d)
    subprocess.run(["mount", "--bind", shared, shared], check=True)
    subprocess.run(["mount", "--make-rshared", shared], check=True)
    made = []
    try:
        cri("pull", registry.busybox)
        pod_id = cri("runp", sandbox(nspod)).stdout.strip()
        ctr = cri("create", pod_id, container(nspod, registry.busybox, command=["sleep", "1000"],
                                              mounts=[{"container_path": "/shared",
                                                       "host_path": shared, "propagation": 1},
                                                      {"container_path": "/private",
                                                       "host_path": private}]),
                  sandbox(nspod)).stdout.strip()
        cri("start", ctr)
        for d in (shared, private):
            os.makedirs(os.path.join(d, "sub"))
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                            os.path.join(d, "sub")], check=True)
            made.append(os.path.join(d, "sub"))
            with open(os.path.join(d, "sub", "file"), "w") as f:
                f.write("from the host\n")
        assert cri("exec", "-s", ctr, "cat", "/shared/sub/file").stdout.strip() == "from the host"
        r = cri("exec", "-s", ctr, "cat", "/private/sub/file", check=False)
        assert r.returncode != 0
        cri("rmp", "-f", pod_id)
    finally:
        for m in made + [shared]:
            subprocess.run(["umount", "-l", m], check=False)
    assert nspod.pods() == []


@pytest.mark.parametrize("args, words", [
    (["--listen", "tcp://0.0.0.0:1"], "--listen"),
    (["--listen", "unix://relative/sock"], "--listen"),
    (["--stream-address", "not-an-ip"], "--stream-address")])
def test_bad_cri_flags_are_one_line_exit_2_and_nothing_made(nspod, args, words):
    r = nspod("cri", *args, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r
    assert not os.path.exists(nspod.root)


def test_concurrent_requests(cri, nspod, registry):
    """The kubelet asks in parallel: sandboxes made, exec'd and removed at once."""
    from concurrent.futures import ThreadPoolExecutor
    cri("pull", registry.busybox)

    def one(i):
        pod = sandbox(nspod, f"par{i}")
        pod_id = cri("runp", pod).stdout.strip()
        ctr = cri("create", pod_id, container(nspod, registry.busybox, name=f"c{i}",
                                              command=["sleep", "1000"]), pod).stdout.strip()
        cri("start", ctr)
        out = cri("exec", "-s", ctr, "echo", f"hi{i}").stdout.strip()
        return pod_id, out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert [out for _, out in results] == [f"hi{i}" for i in range(4)]
    assert len({p for p, _ in results}) == 4
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: cri("rmp", "-f", p[0]), results))
    assert nspod.pods() == []


def running_container(cri, nspod, registry, command, **extra):
    cri("pull", registry.busybox)
    pod_id = cri("runp", sandbox(nspod)).stdout.strip()
    ctr = cri("create", pod_id, container(nspod, registry.busybox, command=command, **extra),
              sandbox(nspod)).stdout.strip()
    cri("start", ctr)
    return pod_id, ctr


def test_attach_with_stdin_to_a_container_made_with_stdin(cri, nspod, registry):
    """crictl attach -i to `sh` created with stdin and stdin_once: what is written runs, its
    output comes back (stdout and stderr apart), the end of input ends the shell and the
    attach; a container without stdin drops the input and shows its output."""
    _, ctr = running_container(cri, nspod, registry, ["sh"], stdin=True, stdin_once=True)
    done = cri("attach", "-i", ctr, input="echo hello; echo oops >&2\n")
    assert done.stdout == "hello\n" and "oops" in done.stderr
    wait_for(lambda: cri.json("inspect", ctr)["status"]["state"] == "CONTAINER_EXITED",
             "the shell to end at the end of its stdin (stdin_once)")
    assert cri.json("inspect", ctr)["status"]["exitCode"] == 0
    again = cri("attach", ctr, check=False)
    assert again.returncode != 0 and "not running" in again.stderr


def test_tty_attach_with_resize(cri, nspod, registry):
    """crictl attach -i -t on a terminal (a pty this test holds): the container's terminal
    takes its size and follows a resize (SIGWINCH to crictl), input typed comes back."""
    import fcntl
    import select
    import struct
    import termios
    _, ctr = running_container(cri, nspod, registry, ["sh", "-c", "while read line; do "
                                                      "echo got:$line; stty size; done"],
                               stdin=True, tty=True)
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    proc = subprocess.Popen(cri.command("attach", "-i", "-t", ctr), stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    got = b""

    def type_until(line, wanted):
        """Type the line (again each second: the size and the keys are separate streams)
        until the container's answer holds `wanted`."""
        nonlocal got
        deadline = time.monotonic() + 30
        while wanted not in got:
            assert time.monotonic() < deadline and proc.poll() is None, (wanted, got)
            os.write(master, line)
            until = time.monotonic() + 1
            while wanted not in got and time.monotonic() < until:
                if select.select([master], [], [], 0.2)[0]:
                    got += os.read(master, 4096)

    try:
        type_until(b"one\r", b"got:one\r\n33 77")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 88, 0, 0))
        type_until(b"two\r", b"got:two\r\n44 88")
        os.write(master, b"\x04")   # ^D: the loop's read ends, so do the container and attach
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
