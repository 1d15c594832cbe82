"""Memory and CPU limits that hold, admission, OOMKilled, stats/top — on whatever cgroup version
the kernel has: this file also runs inside the cgroup v2 guest (tests/vm)."""
import json
import os
import secrets

from helpers import container, container_status, pod_yaml, wait_for, wait_terminated

HOG = "python3 -c \"import time; b = bytearray({mb} * 2**20); print('survived', flush=True); time.sleep(100)\""


def limited(name, command, memory=None, cpu=None, requests=""):
    extra = ""
    if memory or cpu:
        limits = ", ".join(f"{k}: {v}" for k, v in (("memory", memory), ("cpu", cpu)) if v)
        extra = f"      resources:\n        limits: {{{limits}}}\n"
        if requests:
            extra += f"        requests: {{{requests}}}\n"
    return container(name, command, extra=extra)


def cgroup_file(nspod, rel, name):
    """A cgroup control file of the pod, from whichever hierarchy holds it."""
    for base in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"):
        path = os.path.join(base, rel, name)
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
    raise FileNotFoundError(f"{rel}/{name}")


def v2():
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def test_container_limit_oom_kills_only_that_container(nspod):
    text = pod_yaml("p", limited("hog", HOG.format(mb=200), memory="50Mi")
                    + limited("calm", "sleep 1000", memory="50Mi"))
    nspod.run_yaml(text)
    end = wait_terminated(nspod, "p", "hog", timeout=60)
    assert (end["exitCode"], end["reason"]) == (137, "OOMKilled")
    assert "survived" not in nspod("logs", "p", "hog").stdout
    obj = nspod.inspect("p")
    assert obj["status"]["phase"] == "Running"
    assert "running" in container_status(obj, "calm")["state"]
    stats = nspod("stats", "p").stdout.splitlines()
    hog_row = next(r.split() for r in stats if r.startswith("hog"))
    # One OOM kill; on cgroup v2 memory.oom.group takes the whole container (sh and python).
    assert hog_row[2] == "50Mi" and int(hog_row[5]) >= 1


def test_pod_limit_holds_when_containers_have_none_and_names_the_victim(nspod):
    text = pod_yaml("p", container("hog", HOG.format(mb=200)) + container("calm"),
                    extra_spec="  resources:\n    limits: {memory: 100Mi}\n")
    nspod.run_yaml(text)
    end = wait_terminated(nspod, "p", "hog", timeout=60)
    assert (end["exitCode"], end["reason"]) == (137, "OOMKilled")
    obj = nspod.inspect("p")
    assert "running" in container_status(obj, "calm")["state"]
    pod_cgroup = obj["runtime"]["cgroup"]
    limit = cgroup_file(nspod, pod_cgroup, "memory.max" if v2() else "memory.limit_in_bytes")
    assert int(limit) == 100 * 2**20


def test_tmpfs_pages_are_charged_to_the_pod(nspod):
    volume = "    - name: mem\n      emptyDir: {medium: Memory}\n"
    mount = "        - name: mem\n          mountPath: /m\n"
    writer = container("w", "dd if=/dev/zero of=/m/f bs=1M count=40 2>/dev/null; echo wrote; sleep 1000",
                       mount, extra="      resources:\n        limits: {memory: 200Mi}\n")
    filler = container("big", "exec dd if=/dev/zero of=/m/g bs=1M count=100",
                       mount, extra="      resources:\n        limits: {memory: 48Mi}\n")
    nspod.run_yaml(pod_yaml("p", writer + filler, volumes=volume))
    wait_for(lambda: "wrote" in nspod("logs", "p", "w").stdout, timeout=30, what="the writer")
    row = next(r.split() for r in nspod("stats", "p").stdout.splitlines() if r.startswith("w "))
    usage = row[1]
    assert usage.lstrip("~").endswith("Mi") and float(usage.lstrip("~")[:-2]) >= 40, row
    end = wait_terminated(nspod, "p", "big", timeout=60)
    assert end["reason"] == "OOMKilled"
    assert end["exitCode"] == 137


def test_limits_land_in_the_cgroups_and_qos_class(nspod):
    text = pod_yaml("p", limited("a", "sleep 1000", memory="64Mi", cpu="500m",
                                 requests="memory: 64Mi, cpu: 500m"))
    nspod.run_yaml(text)
    obj = nspod.inspect("p")
    assert obj["status"]["qosClass"] == "Guaranteed"
    # Named as the kubelet's cgroupfs driver names it: pod<uid>, unique per pod.
    pod_rel = f"{nspod.cgroup_parent.strip('/')}/pod{obj['metadata']['uid']}"
    rel = obj["runtime"]["containers"]["a"]["cgroup"]
    assert rel == f"{pod_rel}/ctr-a"
    assert obj["runtime"]["cgroup"] == pod_rel
    if v2():
        assert cgroup_file(nspod, rel, "memory.max") == str(64 * 2**20)
        assert cgroup_file(nspod, rel, "cpu.max") == "50000 100000"
        assert cgroup_file(nspod, rel, "memory.oom.group") == "1"
    else:
        assert cgroup_file(nspod, rel, "memory.limit_in_bytes") == str(64 * 2**20)
        assert cgroup_file(nspod, rel, "cpu.cfs_quota_us") == "50000"
        assert cgroup_file(nspod, rel, "cpu.shares") == "512"
    # Every process of the pod is in its cgroups: pause in its own leaf, the container in its.
    pid = obj["runtime"]["containers"]["a"]["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert any(line.rstrip().endswith(f"{pod_rel}/ctr-a") for line in f)
    with open(f"/proc/{obj['runtime']['pausePid']}/cgroup") as f:
        assert any(line.rstrip().endswith(f"{pod_rel}/_pause") for line in f)
    exec_cgroup = nspod("exec", "p", "--", "cat", "/proc/self/cgroup").stdout
    assert any(line.endswith(f"{pod_rel}/ctr-a") for line in exec_cgroup.splitlines())
    top = nspod("top", "p").stdout.splitlines()
    assert top[0].split() == ["CONTAINER", "PID", "USER", "COMMAND"]
    assert any(r.split()[:2] == ["a", str(pid)] for r in top[1:])
    nspod.run_yaml(pod_yaml("q", limited("b", "sleep 1000", memory="64Mi")))
    assert nspod.inspect("q")["status"]["qosClass"] == "Burstable"
    nspod.run_yaml(pod_yaml("r", container("c")))
    assert nspod.inspect("r")["status"]["qosClass"] == "BestEffort"


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024


def test_admission_places_the_pod_as_one_unit(nspod):
    """The seed's example: App 1Gi + LogCollector 512Mi fit in 2Gi, not in 1.25Gi."""
    text = pod_yaml("seed", limited("app", "sleep 1000", memory="1Gi")
                    + limited("logcollector", "sleep 1000", memory="512Mi"))
    manifest = nspod.manifest(text)
    gib = 2**30
    refused = nspod("run", manifest, check=False,
                    env={"NSPOD_MEMORY_RESERVE": str(mem_available() - gib - gib // 4)})
    assert refused.returncode == 1
    line, = refused.stderr.splitlines()
    assert line.startswith("error: pod seed needs 1.5Gi (app 1Gi, logcollector 512Mi) but only ")
    assert nspod.pods() == []
    admitted = nspod("run", manifest, check=False,
                     env={"NSPOD_MEMORY_RESERVE": str(mem_available() - 2 * gib)})
    assert admitted.returncode == 0, admitted.stderr
    # What this pod holds now counts against the next one.
    second = nspod("run", nspod.manifest(text.replace("name: seed", "name: seed2")), check=False,
                   env={"NSPOD_MEMORY_RESERVE": str(mem_available() - 2 * gib)})
    assert second.returncode == 1 and "held by other pods" in second.stderr
    assert nspod.pods() == ["seed"]


def test_oversized_pod_is_refused_with_nothing_created(nspod):
    text = pod_yaml("huge", limited("a", "sleep 1000", memory="100Ti"))
    result = nspod("run", nspod.manifest(text), check=False)
    assert result.returncode == 1 and "needs 100Ti" in result.stderr
    assert nspod.pods() == []


def test_bad_quantity_is_input_error(nspod):
    text = pod_yaml("p", limited("a", "sleep 1", memory="12XB"))
    result = nspod("run", nspod.manifest(text), check=False)
    assert result.returncode == 2
    assert 'spec.containers[0].resources.limits.memory: "12XB" is not a quantity' in result.stderr


# --- issue 9: cgroups never adopted, unique per pod, containers' leftovers killed ----------


def running(nspod, pod, name):
    return "running" in container_status(nspod.inspect(pod), name)["state"]


def test_a_container_named_tasks_gets_its_cgroup(nspod):
    """`tasks` is a valid container name; every cgroup v1 directory has a `tasks` file, so
    a container's leaf is named ctr-<name>, never colliding with an interface file."""
    nspod.run_yaml(pod_yaml("tasks-pod", limited("tasks", "sleep 1000", memory="64Mi")))
    obj = nspod.inspect("tasks-pod")
    assert "running" in container_status(obj, "tasks")["state"]
    rel = obj["runtime"]["containers"]["tasks"]["cgroup"]
    assert rel.endswith("/ctr-tasks")
    assert cgroup_file(nspod, rel, "memory.max" if v2() else "memory.limit_in_bytes") == \
        str(64 * 2**20)
    top = nspod("top", "tasks-pod").stdout.splitlines()
    assert any(r.split()[:2] == ["tasks", str(obj["runtime"]["containers"]["tasks"]["pid"])]
               for r in top[1:])


def test_one_pod_name_in_two_state_roots_under_one_parent(nspod):
    """Pod cgroups are named pod<uid>, as the kubelet's cgroupfs driver names them: two pods
    called p (two state roots, one --cgroup-parent) have two cgroups, and removing one
    leaves the other's processes alone."""
    text = pod_yaml("twin", container("c"), extra_spec="  hostNetwork: true\n")
    other_root = os.path.join(nspod.workdir, "other-root")
    other = ["--root", other_root, "--cgroup-parent", nspod.cgroup_parent]
    try:
        # The other root's pod first: the parent level is its to remove when it goes last.
        result = nspod(*other, "run", nspod.manifest(text))
        assert result.stdout.strip() == "twin"
        nspod.run_yaml(text)
        mine = nspod.inspect("twin")
        theirs = json.loads(nspod(*other, "inspect", "twin").stdout)
        assert mine["runtime"]["cgroup"] != theirs["runtime"]["cgroup"]
        their_pid = theirs["runtime"]["containers"]["c"]["pid"]
        nspod("rm", "-f", "twin")
        assert "running" in container_status(json.loads(nspod(*other, "inspect", "twin").stdout),
                                             "c")["state"]
        assert os.path.exists(f"/proc/{their_pid}")
    finally:
        nspod(*other, "rm", "-f", "--timeout", "0", "twin", check=False)


def test_a_cpu_limit_the_kernel_refuses_leaves_no_cgroup_level(nspod):
    """The cgroup parent's levels nspod made are recorded even when a limit written after
    them is refused (here a CFS quota over the kernel's maximum): the leak check finds no
    level of the test's parent left."""
    text = pod_yaml("refused", limited("c", "sleep 1000", cpu="200000000"),
                    extra_spec="  hostNetwork: true\n")
    refused = nspod("run", nspod.manifest(text), check=False)
    assert refused.returncode == 1
    assert ("cpu.max" if v2() else "cpu.cfs_quota_us") in refused.stderr
    assert "Invalid argument" in refused.stderr
    assert nspod.pods() == []


def _processes_named(cmdline):
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().rstrip(b"\0").split(b"\0") == cmdline:
                        found.add(_identity(int(entry)))
            except OSError:
                pass
    return found - {None}


def _identity(pid):
    """(pid, start time) of a live process (not a zombie); None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (pid, int(fields[19]))


def test_a_restarted_containers_leftover_processes_are_killed(nspod):
    """The kubelet's runtimes kill the container's whole cgroup when its main process ends:
    a background child that survives the exit (here re-parented to pause, the pod sharing
    one pid namespace) must not outlive it into the restart."""
    seconds = str(100000 + secrets.randbelow(800000))  # names this test's sleep
    text = pod_yaml("leftovers", container("c", f"sleep {seconds} & sleep 0.3; exit 1"),
                    extra_spec="  shareProcessNamespace: true\n  hostNetwork: true\n")
    nspod.run_yaml(text.replace("restartPolicy: Never", "restartPolicy: Always"),
                   "--restart-backoff", "0.5s:1s")
    first = wait_for(lambda: _processes_named([b"sleep", seconds.encode()]), timeout=30,
                     what="the container's background sleep")
    wait_for(lambda: container_status(nspod.inspect("leftovers"), "c")["restartCount"] >= 1,
             timeout=30, what="the container's restart")
    assert all(_identity(pid) != (pid, start) for pid, start in first), \
        "the first run's background sleep outlived its container"


def test_apply_sets_every_limit_or_none(nspod):
    """A limit the kernel refuses partway through `apply` (b's CFS quota over the maximum,
    after a's memory was raised) puts back what was set: a keeps its limit, nothing
    restarts, the pod keeps its old manifest."""
    def pod(a_memory, b_cpu):
        return pod_yaml("applied", limited("a", "sleep 1000", memory=a_memory, cpu="100m")
                        + limited("b", "sleep 1000", memory="64Mi", cpu=b_cpu),
                        extra_spec="  hostNetwork: true\n")

    nspod.run_yaml(pod("64Mi", "100m"))
    before = nspod.inspect("applied")
    a_rel = before["runtime"]["containers"]["a"]["cgroup"]
    limit_file = "memory.max" if v2() else "memory.limit_in_bytes"
    refused = nspod("apply", nspod.manifest(pod("128Mi", "200000000"), "v2.yaml"), check=False)
    assert refused.returncode == 1
    assert ("cpu.max" if v2() else "cpu.cfs_quota_us") in refused.stderr
    assert cgroup_file(nspod, a_rel, limit_file) == str(64 * 2**20)
    after = nspod.inspect("applied")
    assert after["spec"] == before["spec"]
    for name in ("a", "b"):
        status = container_status(after, name)
        assert status["restartCount"] == 0 and "running" in status["state"]
    # what the kernel accepts still applies
    nspod("apply", nspod.manifest(pod("128Mi", "100m"), "v3.yaml"))
    assert cgroup_file(nspod, a_rel, limit_file) == str(128 * 2**20)
