"""Memory and CPU limits that hold, admission, OOMKilled, stats/top — on whatever cgroup version
the kernel has: this file also runs inside the cgroup v2 guest (tests/vm)."""
import os

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
