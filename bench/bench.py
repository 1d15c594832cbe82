#!/usr/bin/env python3
"""nspod benchmarks: wall-clock medians against floors measured in the same run.

    python3 bench/bench.py [--runs N] [--only a,b,c,d] [--nspod PATH] [--no-bytecode-cache]

Scenarios (README.md in this directory says what each one measures and why):
  a  CLI pod cycle: `nspod run` + `nspod rm -f --timeout 0` of a one-container pod,
     with a breakdown of where the time goes
  b  `nspod exec POD -- true` into a running pod
  c  library API: pod.run() of a 3-container pod, against a Python holder + 3 setns'd members
  d  PSS of monitor + pause per pod with 20 pods up, against 20 idle Python processes

Stdlib only. Needs root. Everything runs under a private state root in /tmp and a private
cgroup parent below this process's own cgroup; both are removed at the end, even on failure.
Exit status: 0 when every measurement ran (missed targets included), 1 when something broke.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 20
WARMUP = 2
MEMORY_PODS = 20

# Podman figures measured on this machine (../shared/anchors/podman/RESULTS.md), used when
# podman is not installed. Note the anchor pod cycle is create+start+rm of the infra
# container alone; the live measurement below also runs one container in the pod.
ANCHOR_POD_CYCLE_MS = 430.0
ANCHOR_EXEC_MS = 200.0
ANCHOR_PSS_PER_POD_MIB = 0.85

TARGET_CYCLE_VS_PODMAN = 0.3
TARGET_EXEC_VS_PODMAN = 0.4
TARGET_LIB_VS_FLOOR = 2.0

NS_FLAGS = ["--net", "--ipc", "--uts", "--pid", "--mount"]
# Where the Podman anchor harness keeps its rootfs and config (see its lib.sh).
ANCHORS_WORK = "/var/tmp/nspod-anchors"


class BenchError(Exception):
    """Something broke: the run cannot give honest figures (exit 1)."""


# --- small helpers --------------------------------------------------------------------------

class Stats:
    """Median, min and max of a list of samples (ms, or MiB for memory)."""

    def __init__(self, samples):
        if not samples:
            raise BenchError("no samples")
        self.samples = list(samples)
        self.median = statistics.median(self.samples)
        self.min = min(self.samples)
        self.max = max(self.samples)
        self.n = len(self.samples)

    def spread(self, digits=1):
        return f"{self.min:.{digits}f}-{self.max:.{digits}f}, n={self.n}"


def measure(action, runs, warmup=WARMUP):
    """Call action() warmup times untimed (caches, page cache, bytecode), then time each run."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return Stats(samples)


def run_checked(argv, env=None):
    """Run a command to completion; a non-zero exit is a broken benchmark, not a figure."""
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {' / '.join(tail)}")
    return proc.stdout


def own_cgroup():
    """This process's cgroup path: the memory hierarchy on v1/hybrid, else the v2 one."""
    v2 = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return path
            if controllers == "":
                v2 = path
    return v2 or "/"


def cgroup_mounts():
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")]


def mount_points_under(path):
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(prefix)]


def smaps_rollup_kib(pid):
    """{'Rss': KiB, 'Pss': KiB} of one process."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            match = re.match(r"(Rss|Pss):\s+(\d+) kB", line)
            if match:
                values[match.group(1)] = int(match.group(2))
    return values


def interpreter_of(script):
    """The Python that runs an installed console script: its shebang's interpreter."""
    with open(script, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    if not first.startswith("#!"):
        raise BenchError(f"{script}: not a Python console script (no #! line)")
    words = first[2:].split()
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1]) or words[1]
    return words[0]


def pod_manifest(name, containers=1):
    """A Kubernetes Pod of `containers` idle containers on the host's root (no image)."""
    lines = ["apiVersion: v1", "kind: Pod", f"metadata: {{name: {name}}}", "spec:",
             "  restartPolicy: Never", "  terminationGracePeriodSeconds: 0", "  containers:"]
    for i in range(containers):
        lines += [f"  - name: c{i}", '    command: [sleep, "1000"]']
    return "\n".join(lines) + "\n"


def fmt_ratio(value):
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2f}x"


# --- the world the benchmark runs in --------------------------------------------------------

class Bench:
    """Paths, environment and everything this run created (so that it can all be removed)."""

    def __init__(self, nspod, runs, bytecode_cache):
        self.nspod = nspod
        self.python = interpreter_of(nspod)
        self.runs = runs
        self.tmp = tempfile.mkdtemp(prefix="nspod-bench-")
        self.root = os.path.join(self.tmp, "root")
        suffix = os.path.basename(self.tmp)[len("nspod-bench-"):]
        self.cgroup_parent = f"{own_cgroup().rstrip('/')}/nspod-bench-{suffix}"
        self.env = self._environment(bytecode_cache)
        self.processes = []   # Popen objects this run started and must end
        self.manifests = set()   # manifest files already written

    def _environment(self, bytecode_cache):
        """The environment for every Python we start.

        Without a bytecode cache every nspod call recompiles nsPod's sources (an editable
        install has no .pyc until one is written); a user's machine writes __pycache__ on
        the first call. To measure that steady state without writing into the checkout,
        the cache goes to a private prefix in our temp directory. --no-bytecode-cache
        measures the uncached case instead (as under PYTHONDONTWRITEBYTECODE=1).
        """
        env = dict(os.environ)
        env.pop("NSPOD_TRACE", None)
        env.pop("PYTHONPYCACHEPREFIX", None)
        if bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(self.tmp, "pycache")
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def bytecode_note(self):
        inherited = os.environ.get("PYTHONDONTWRITEBYTECODE")
        if "PYTHONPYCACHEPREFIX" in self.env:
            note = f"cached in a private prefix ({self.env['PYTHONPYCACHEPREFIX']})"
            if inherited:
                note += "; PYTHONDONTWRITEBYTECODE was set in the environment and is dropped"
            return note
        return "no cache (PYTHONDONTWRITEBYTECODE=1): every call compiles nsPod's sources"

    def cli(self, *args):
        return [self.nspod, "--root", self.root, "--cgroup-parent", self.cgroup_parent, *args]

    def manifest(self, name, containers=1):
        path = os.path.join(self.tmp, f"{name}.yaml")
        if path not in self.manifests:
            with open(path, "w") as f:
                f.write(pod_manifest(name, containers))
            self.manifests.add(path)
        return path

    def nspod_run(self, manifest, name=None):
        extra = ["--name", name] if name else []
        run_checked(self.cli("run", manifest, *extra), env=self.env)

    def nspod_rm(self, *names):
        run_checked(self.cli("rm", "-f", "--timeout", "0", *names), env=self.env)

    def start(self, argv, **kwargs):
        proc = subprocess.Popen(argv, env=self.env, **kwargs)
        self.processes.append(proc)
        return proc

    def stop(self, proc):
        """SIGKILL one process we started, by its pid, and reap it."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc in self.processes:
            self.processes.remove(proc)

    # --- cleanup: pods, processes, cgroups, temp dir ---------------------------------------

    def pods_left(self):
        try:
            return sorted(os.listdir(os.path.join(self.root, "pods")))
        except FileNotFoundError:
            return []

    def cleanup(self):
        problems = []
        for proc in list(self.processes):
            self.stop(proc)
        left = self.pods_left()
        if left:
            try:
                self.nspod_rm(*left)
            except BenchError as e:
                problems.append(str(e))
        for name in self.pods_left():
            problems.append(f"pod {name} is still there after rm -f")
        problems += self._remove_cgroups()
        mounts = mount_points_under(self.tmp)
        if mounts:
            # Never rmtree through a mount: it could reach files that are not ours.
            problems.append(f"mounts left under {self.tmp}: {', '.join(mounts)}; not removed")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems

    def _remove_cgroups(self):
        """rmdir, deepest first, what nspod (or podman) made under our private parent."""
        problems = []
        for hierarchy in cgroup_mounts():
            top = hierarchy + self.cgroup_parent
            if not os.path.isdir(top):
                continue
            for path, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(path)
                except OSError as e:
                    problems.append(f"cgroup {path}: {e.strerror}")
        return problems


# --- baselines ------------------------------------------------------------------------------

def unshare_floor(bench):
    argv = ["unshare", *NS_FLAGS[:4], "--fork", NS_FLAGS[4], "true"]
    return measure(lambda: run_checked(argv), bench.runs)


def namespace_holder(bench):
    """`sleep` as PID 1 of fresh namespaces; returns (unshare Popen, pid to nsenter)."""
    proc = bench.start(["unshare", *NS_FLAGS, "--fork", "--kill-child", "sleep", "1000"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = _children(proc.pid)
        if children and _comm(children[0]) == "sleep":
            return proc, children[0]
        time.sleep(0.005)
    raise BenchError("unshare ... sleep 1000: its child did not start within 5 s")


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def nsenter_floor(bench):
    holder, pid = namespace_holder(bench)
    try:
        argv = ["nsenter", "-t", str(pid), *NS_FLAGS, "true"]
        return measure(lambda: run_checked(argv), bench.runs)
    finally:
        bench.stop(holder)


# --- Podman: live when installed, else the anchors ------------------------------------------

class Podman:
    """Podman's pod cycle and exec: each measured here (live) or taken from the anchors."""

    def __init__(self, note, cycle_ms=None, exec_ms=None):
        self.note = note
        self.cycle_label = "live" if cycle_ms is not None else "anchor"
        self.exec_label = "live" if exec_ms is not None else "anchor"
        self.cycle_ms = ANCHOR_POD_CYCLE_MS if cycle_ms is None else cycle_ms
        self.exec_ms = ANCHOR_EXEC_MS if exec_ms is None else exec_ms


def podman_figures(bench, wanted):
    """Measure Podman if it is installed and has a rootfs to run; otherwise the anchors."""
    not_installed = ("podman: not installed, using the anchor figures measured on this machine "
                     f"(pod cycle {ANCHOR_POD_CYCLE_MS:.0f} ms, exec {ANCHOR_EXEC_MS:.0f} ms)")
    podman = shutil.which("podman")
    if podman is None:
        return Podman(not_installed)
    if not wanted:
        return Podman("podman: installed, not measured (neither a nor b was asked for)")
    rootfs = os.environ.get("NSPOD_BENCH_PODMAN_ROOTFS", os.path.join(ANCHORS_WORK, "rootfs"))
    if not os.path.isdir(rootfs):
        return Podman(f"podman: installed, but no container rootfs at {rootfs} (run "
                      "../shared/anchors/podman/setup.sh or set NSPOD_BENCH_PODMAN_ROOTFS); "
                      "using the anchor figures")
    try:
        cycle, exec_ = _measure_podman(bench, podman, rootfs, wanted)
    except BenchError as e:
        return Podman(f"podman: measurement failed ({e}); using the anchor figures")
    return Podman(f"podman: measured live ({podman}, rootfs {rootfs})", cycle, exec_)


def _podman_env():
    """The anchor harness's private containers.conf/storage.conf when present: they hold the
    settings Podman needs on this machine (cgroupfs, runc, ulimits; see its RESULTS.md)."""
    env = dict(os.environ)
    conf = os.path.join(ANCHORS_WORK, "conf")
    for var, name in (("CONTAINERS_CONF", "containers.conf"),
                      ("CONTAINERS_STORAGE_CONF", "storage.conf")):
        if var not in env and os.path.exists(os.path.join(conf, name)):
            env[var] = os.path.join(conf, name)
    return env


def _measure_podman(bench, podman, rootfs, wanted):
    env = _podman_env()
    pod = f"nspod-bench-{os.getpid()}"
    cgroup = ["--cgroup-parent", bench.cgroup_parent]
    create = [podman, "pod", "create", "--network", "none", *cgroup, "--name", pod]
    start_container = [podman, "run", "-d", "--pod", pod, "--name", f"{pod}-c",
                       "--rootfs", rootfs, "sleep", "1000"]
    remove = [podman, "pod", "rm", "-f", "-t", "0", pod]

    def cycle():
        run_checked(create, env=env)
        run_checked(start_container, env=env)
        run_checked(remove, env=env)

    cycle_ms = exec_ms = None
    try:
        if "a" in wanted:
            cycle_ms = measure(cycle, bench.runs).median
        if "b" in wanted:
            run_checked(create, env=env)
            run_checked(start_container, env=env)
            exec_argv = [podman, "exec", f"{pod}-c", "true"]
            exec_ms = measure(lambda: run_checked(exec_argv, env=env), bench.runs).median
    finally:
        subprocess.run(remove, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cycle_ms, exec_ms


# --- (a) CLI pod cycle ----------------------------------------------------------------------

def scenario_a(bench):
    manifest = bench.manifest("bench-a")
    halves = {"run": [], "rm": []}

    def cycle():
        start = time.perf_counter()
        bench.nspod_run(manifest)
        middle = time.perf_counter()
        bench.nspod_rm("bench-a")
        halves["run"].append((middle - start) * 1000)
        halves["rm"].append((time.perf_counter() - middle) * 1000)

    total = measure(cycle, bench.runs)
    # measure() also called cycle() for the warm-up runs: keep the timed ones only.
    return {"total": total, "run": Stats(halves["run"][WARMUP:]),
            "rm": Stats(halves["rm"][WARMUP:])}


def breakdown_a(bench):
    """Where the pod cycle's time goes: each piece a `nspod run` pays, timed alone."""
    manifest = bench.manifest("bench-a")
    py = bench.python
    rows = [
        ("python -c pass (interpreter + site)", [py, "-c", "pass"]),
        ("nspod --version (+ click, nsPod.cli)", [bench.nspod, "--version"]),
        ("nspod validate pod.yaml (+ yaml, spec)", [bench.nspod, "validate", manifest]),
        ("nspod rm -f (no such pod)", bench.cli("rm", "-f", "--timeout", "0", "bench-none")),
        ("python -P -c 'import nsPod.monitor'", [py, "-P", "-c", "import nsPod.monitor"]),
    ]
    results = []
    for label, argv in rows:
        results.append((label, measure(lambda: run_checked(argv, env=bench.env), bench.runs)))
    return results


def import_profile(bench, top=8):
    """One `nspod run` under -X importtime: its top-level imports by cumulative time (ms)."""
    manifest = bench.manifest("bench-a")
    argv = [bench.python, "-X", "importtime", "-m", "nsPod", "--root", bench.root,
            "--cgroup-parent", bench.cgroup_parent, "run", manifest]
    proc = subprocess.run(argv, env=bench.env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        if proc.returncode != 0:
            raise BenchError(f"nspod run under -X importtime exited {proc.returncode}")
    finally:
        bench.nspod_rm("bench-a")
    imports = []
    for line in proc.stderr.splitlines():
        # "import time:  self | cumulative | <indent>name"; one space of indent = top level
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\S.*)$", line)
        if match:
            imports.append((int(match.group(2)) / 1000, match.group(3)))
    imports.sort(reverse=True)
    return imports[:top], sum(ms for ms, _ in imports)


def library_cycle(bench, containers):
    """pod.run() / pod.remove() in-process, in nspod's own interpreter (see worker_lib)."""
    request = {"task": "lib", "root": bench.root, "cgroup_parent": bench.cgroup_parent,
               "runs": bench.runs, "warmup": WARMUP, "containers": containers,
               "name": f"bench-lib-{containers}"}
    return _worker(bench, request)


def _worker(bench, request):
    out = run_checked([bench.python, os.path.abspath(__file__), "--worker", json.dumps(request)],
                      env=bench.env)
    return {k: Stats(v) if isinstance(v, list) else v for k, v in json.loads(out).items()}


# --- (b) exec -------------------------------------------------------------------------------

def scenario_b(bench):
    bench.nspod_run(bench.manifest("bench-b"))
    try:
        argv = bench.cli("exec", "bench-b", "--", "true")
        return measure(lambda: run_checked(argv, env=bench.env), bench.runs)
    finally:
        bench.nspod_rm("bench-b")


# --- (c) library API, 3 containers, against the Python floor --------------------------------

def scenario_c(bench):
    lib = library_cycle(bench, 3)
    request = {"task": "floor", "runs": bench.runs, "warmup": WARMUP, "members": 3}
    floor = _worker(bench, request)
    return {**lib, **floor}


# --- (d) memory per pod ---------------------------------------------------------------------

def scenario_d(bench):
    idle = idle_python_memory(bench)
    pods = pod_memory(bench)
    return {"idle": idle, **pods}


def idle_python_memory(bench):
    """20 idle Pythons (nspod's interpreter, as the monitor runs), measured as the pods are."""
    code = "import os, time; os.write(1, b'.'); time.sleep(600)"
    procs = [bench.start([bench.python, "-c", code], stdout=subprocess.PIPE)
             for _ in range(MEMORY_PODS)]
    try:
        for proc in procs:
            if proc.stdout.read(1) != b".":
                raise BenchError("an idle python did not start")
        time.sleep(0.5)
        return _memory_of([p.pid for p in procs])
    finally:
        for proc in procs:
            proc.stdout.close()
            bench.stop(proc)


def pod_memory(bench):
    names = [f"bench-d-{i:02d}" for i in range(MEMORY_PODS)]
    manifest = bench.manifest("bench-d")
    try:
        for name in names:
            bench.nspod_run(manifest, name=name)
        time.sleep(0.5)  # let each monitor settle into its idle loop
        monitors, pauses = [], []
        for name in names:
            monitors.append(_monitor_pid(bench, name))
            pauses.append(_pause_pid(bench, name))
        monitor, pause = _memory_of(monitors), _memory_of(pauses)
    finally:
        started = [n for n in names if n in bench.pods_left()]
        if started:
            bench.nspod_rm(*started)
    per_pod = (sum(monitor["Pss"].samples) + sum(pause["Pss"].samples)) / MEMORY_PODS
    return {"monitor": monitor, "pause": pause, "per_pod_pss": per_pod}


def _monitor_pid(bench, name):
    with open(os.path.join(bench.root, "pods", name, "state.json")) as f:
        return json.load(f)["monitor"]["pid"]


def _pause_pid(bench, name):
    out = run_checked(bench.cli("inspect", name), env=bench.env)
    return json.loads(out)["runtime"]["pausePid"]


def _memory_of(pids):
    """{'Rss': Stats, 'Pss': Stats} in MiB over the given processes."""
    rows = [smaps_rollup_kib(pid) for pid in pids]
    return {key: Stats([r[key] / 1024 for r in rows]) for key in ("Rss", "Pss")}


# --- worker: runs in nspod's interpreter, where nsPod imports -------------------------------

def worker(request):
    if request["task"] == "lib":
        result = worker_lib(request)
    elif request["task"] == "floor":
        result = worker_floor(request)
    else:
        raise BenchError(f"unknown worker task {request['task']!r}")
    print(json.dumps(result))


def worker_lib(request):
    """Time pod.run() of one pod, imports and first-call costs excluded by warm-up runs.

    The monitor's start-to-ready time is taken by wrapping pod._start_monitor (spawn the
    monitor, wait for its ready message): cheap, and skipped if that private name changes.
    """
    from nsPod import config, pod, spec
    cfg = config.load(root=request["root"], cgroup_parent=request["cgroup_parent"])
    name = request["name"]
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": f"c{i}", "command": ["sleep", "1000"]}
                                        for i in range(request["containers"])]}}
    the_pod, _ = spec.pod_from_dict(manifest)
    ready = _wrap_start_monitor(pod)
    run_ms, rm_ms = [], []
    try:
        for i in range(request["warmup"] + request["runs"]):
            start = time.perf_counter()
            pod.run(cfg, the_pod)
            middle = time.perf_counter()
            _, errors = pod.remove(cfg, [name], force=True, timeout=0)
            if errors:
                raise BenchError(f"pod.remove: {errors[0]}")
            if i >= request["warmup"]:
                run_ms.append((middle - start) * 1000)
                rm_ms.append((time.perf_counter() - middle) * 1000)
    finally:
        pod.remove(cfg, [name], force=True, timeout=0)
    result = {"run": run_ms, "rm": rm_ms}
    if ready is not None and len(ready) >= len(run_ms):
        result["ready"] = ready[-len(run_ms):]
    return result


def _wrap_start_monitor(pod_module):
    original = getattr(pod_module, "_start_monitor", None)
    if original is None:
        return None
    samples = []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            samples.append((time.perf_counter() - start) * 1000)

    pod_module._start_monitor = timed
    return samples


def worker_floor(request):
    """The bare floor of a pod from Python, as machine.md measured it (~12 ms): a holder that
    unshares net+ipc+uts and members that setns into it, each ready once its namespace work
    is done. The same again with the holder exec'ing pause and the members exec'ing sleep,
    which is closer to what a pod of running programs needs (for information)."""
    result = {}
    for key, execs in (("floor", False), ("floor_exec", True)):
        up_ms, down_ms = [], []
        for i in range(request["warmup"] + request["runs"]):
            start = time.perf_counter()
            pids = _floor_pod(request["members"], execs)
            middle = time.perf_counter()
            _kill_all(pids)
            if i >= request["warmup"]:
                up_ms.append((middle - start) * 1000)
                down_ms.append((time.perf_counter() - middle) * 1000)
        result[key] = up_ms
        result[key + "_down"] = down_ms
    return result


def _floor_pod(members, execs):
    from nsPod import namespaces, sandbox, syscalls
    flags = (syscalls.CloneFlag.CLONE_NEWNET | syscalls.CloneFlag.CLONE_NEWIPC
             | syscalls.CloneFlag.CLONE_NEWUTS)
    pause = [sandbox.pause_binary()] if execs else None
    sleep = ["sleep", "1000"] if execs else None
    pids = []
    try:
        holder = _fork_ready(lambda: syscalls.unshare(flags), pause)
        pids.append(holder)
        for _ in range(members):
            pids.append(_fork_ready(lambda: namespaces.join(holder, ["ipc", "uts", "net"]), sleep))
    except BaseException:
        _kill_all(pids)
        raise
    return pids


def _fork_ready(prepare, argv=None):
    """Fork, run prepare() in the child, then exec argv (or, without argv, just wait to be
    killed); return once the child got that far.

    The pipe is close-on-exec: EOF means ready (exec'd, or closed by the waiting child),
    a byte means prepare() or the exec failed.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            prepare()
            if argv:
                os.execvp(argv[0], argv)
            os.close(w)
            while True:
                signal.pause()
        except BaseException:
            os.write(w, b"x")
        os._exit(127)
    os.close(w)
    try:
        failed = os.read(r, 1)
    finally:
        os.close(r)
    if failed:
        os.waitpid(pid, 0)
        raise BenchError(f"floor: a child failed in its namespace setup or exec {argv}")
    return pid


def _kill_all(pids):
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        os.waitpid(pid, 0)


# --- report ---------------------------------------------------------------------------------

LABEL_WIDTH = 56


class Report:
    """Sections of detail rows as each scenario finishes, then one summary table."""

    def __init__(self):
        self.table = []      # (scenario, nspod, floor, x floor, podman, x podman, target)
        self.verdicts = []

    def header(self, bench, podman):
        print(f"nspod benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"bench python: {platform.python_version()} ({sys.executable})")
        version_code = "import platform; print(platform.python_version())"
        nspod_py = run_checked([bench.python, "-c", version_code], env=bench.env).strip()
        print(f"nspod python: {nspod_py} ({bench.python})")
        print(f"nspod --version: {run_checked([bench.nspod, '--version'], env=bench.env).strip()}")
        print(f"host: {platform.system()} {platform.release()}, {os.cpu_count()} cpus, "
              f"load average {_loadavg()}")
        print(f"runs: {bench.runs} timed (+{WARMUP} warm-up) per figure; median (min-max), "
              "wall clock")
        if bench.runs < 20:
            print("note: fewer than 20 runs: the figures are indicative only")
        print(f"bytecode: {bench.bytecode_note()}")
        print(podman.note)
        print()

    def row(self, label, stats, unit="ms"):
        digits = 2 if unit == "MiB" else 1
        print(f"  {label:<{LABEL_WIDTH}} {stats.median:8.{digits}f} {unit}   "
              f"({stats.spread(digits)})")

    def ratio(self, label, value):
        print(f"  {label:<{LABEL_WIDTH}} {fmt_ratio(value):>8}")

    def target(self, key, what, value, limit, unit="ms"):
        verdict = "target met" if value <= limit else "target missed"
        self.verdicts.append(f"({key}) {what}: {verdict} "
                             f"({value:.1f} {unit} vs <= {limit:.1f} {unit})")

    def summary(self):
        head = ("scenario", "nspod", "floor (same run)", "x floor", "Podman", "x Podman", "target")
        rows = [head] + self.table
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        print("summary (medians)")
        for r in rows:
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        print()
        print("targets")
        for line in self.verdicts:
            print(f"  {line}")


def _loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report_a(rep, a, unshare, podman, breakdown, imports):
    print("(a) CLI pod cycle: nspod run pod.yaml + nspod rm -f --timeout 0 (1 container)")
    rep.row("cycle total", a["total"])
    rep.row("  nspod run", a["run"])
    rep.row("  nspod rm -f --timeout 0", a["rm"])
    rep.row("baseline: unshare --net --ipc --uts --pid --fork --mount", unshare)
    rep.ratio("ratio to unshare floor", a["total"].median / unshare.median)
    rep.ratio(f"ratio to Podman pod cycle ({podman.cycle_label} {podman.cycle_ms:.0f} ms)",
              a["total"].median / podman.cycle_ms)
    print("  where the time goes (each piece timed alone):")
    for label, stats in breakdown["rows"]:
        rep.row("  " + label, stats)
    lib = breakdown["lib"]
    rep.row("  library pod.run() (no CLI), 1 container", lib["run"])
    if "ready" in lib:
        rep.row("    of which monitor spawn -> ready", lib["ready"])
    rep.row("  library pod.remove(force, timeout=0)", lib["rm"])
    top, total = imports
    print(f"  imports of one `nspod run` (-X importtime, cumulative ms; "
          f"all top-level: {total:.0f} ms):")
    print("    " + ", ".join(f"{name} {ms:.0f}" for ms, name in top))
    print()
    limit = TARGET_CYCLE_VS_PODMAN * podman.cycle_ms
    rep.table.append(_table_row("(a) CLI pod cycle", a["total"].median, unshare.median,
                                "unshare", podman.cycle_ms, podman.cycle_label, limit))
    rep.target("a", "pod cycle", a["total"].median, limit)


def report_b(rep, b, nsenter, podman):
    print("(b) nspod exec POD -- true, into a running pod")
    rep.row("nspod exec", b)
    rep.row("baseline: nsenter -t PID --net --ipc --uts --pid --mount", nsenter)
    rep.ratio("ratio to nsenter floor", b.median / nsenter.median)
    rep.ratio(f"ratio to podman exec ({podman.exec_label} {podman.exec_ms:.0f} ms)",
              b.median / podman.exec_ms)
    print()
    limit = TARGET_EXEC_VS_PODMAN * podman.exec_ms
    rep.table.append(_table_row("(b) exec -- true", b.median, nsenter.median, "nsenter",
                                podman.exec_ms, podman.exec_label, limit))
    rep.target("b", "exec", b.median, limit)


def report_c(rep, c):
    print("(c) library pod.run(config, pod), 3 containers, in-process (imports excluded)")
    rep.row("pod.run", c["run"])
    if "ready" in c:
        rep.row("  of which monitor spawn -> ready", c["ready"])
    rep.row("pod.remove(force, timeout=0) (not in the target)", c["rm"])
    rep.row("floor: holder (unshare net+ipc+uts) + 3 setns'd members", c["floor"])
    rep.row("  teardown (SIGKILL + reap, not in the target)", c["floor_down"])
    rep.row("same, holder execs pause, members exec sleep", c["floor_exec"])
    rep.ratio("ratio to same-run floor", c["run"].median / c["floor"].median)
    rep.ratio("ratio to same-run floor with exec", c["run"].median / c["floor_exec"].median)
    print()
    limit = TARGET_LIB_VS_FLOOR * c["floor"].median
    rep.table.append(_table_row("(c) library pod of 3", c["run"].median, c["floor"].median,
                                "python", None, None, limit))
    rep.target("c", "library pod of 3", c["run"].median, limit)


def report_d(rep, d):
    print(f"(d) memory with {MEMORY_PODS} pods up (smaps_rollup; per process, MiB)")
    for who in ("monitor", "pause"):
        rep.row(f"{who} RSS", d[who]["Rss"], "MiB")
        rep.row(f"{who} PSS", d[who]["Pss"], "MiB")
    rep.row(f"baseline: idle python RSS ({MEMORY_PODS} of them)", d["idle"]["Rss"], "MiB")
    rep.row(f"baseline: idle python PSS ({MEMORY_PODS} of them)", d["idle"]["Pss"], "MiB")
    per_pod, idle = d["per_pod_pss"], d["idle"]["Pss"].median
    print(f"  {'per pod: monitor + pause PSS (mean)':<{LABEL_WIDTH}} {per_pod:8.2f} MiB")
    rep.ratio("ratio to an idle python (same run, PSS median)", per_pod / idle)
    rep.ratio(f"ratio to Podman per-pod overhead (anchor {ANCHOR_PSS_PER_POD_MIB} MiB)",
              per_pod / ANCHOR_PSS_PER_POD_MIB)
    print()
    rep.table.append(("(d) PSS per pod", f"{per_pod:.2f} MiB", f"{idle:.2f} MiB (idle python)",
                      fmt_ratio(per_pod / idle), f"{ANCHOR_PSS_PER_POD_MIB} MiB (anchor)",
                      fmt_ratio(per_pod / ANCHOR_PSS_PER_POD_MIB), "none set"))
    rep.verdicts.append(f"(d) memory: no target set ({per_pod:.2f} MiB PSS per pod; Podman "
                        f"anchor {ANCHOR_PSS_PER_POD_MIB} MiB, idle python {idle:.2f} MiB)")


def _table_row(scenario, value, floor, floor_name, podman_ms, podman_label, limit):
    podman = ("-", "-") if podman_ms is None else (
        f"{podman_ms:.0f} ms ({podman_label})", fmt_ratio(value / podman_ms))
    return (scenario, f"{value:.1f} ms", f"{floor:.1f} ms ({floor_name})",
            fmt_ratio(value / floor), *podman, f"<= {limit:.0f} ms")


# --- main -----------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed runs per figure ({RUNS})")
    parser.add_argument("--only", default="a,b,c,d", help="scenarios to run (a,b,c,d)")
    parser.add_argument("--nspod", default=default_nspod(), help="the nspod command to measure")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run every Python with PYTHONDONTWRITEBYTECODE=1 (cold bytecode)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only or args.only - set("abcd"):
        parser.error("--only takes a comma-separated subset of a,b,c,d")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def default_nspod():
    """The checkout's own .venv, else whatever nspod is on PATH."""
    local = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv", "bin", "nspod")
    if os.path.exists(local):
        return os.path.normpath(local)
    return shutil.which("nspod") or "nspod"


def run_all(bench, only):
    rep = Report()
    podman = podman_figures(bench, only & {"a", "b"})
    rep.header(bench, podman)
    if "a" in only:
        unshare = unshare_floor(bench)
        a = scenario_a(bench)
        breakdown = {"rows": breakdown_a(bench), "lib": library_cycle(bench, 1)}
        report_a(rep, a, unshare, podman, breakdown, import_profile(bench))
    if "b" in only:
        nsenter = nsenter_floor(bench)
        report_b(rep, scenario_b(bench), nsenter, podman)
    if "c" in only:
        report_c(rep, scenario_c(bench))
    if "d" in only:
        report_d(rep, scenario_d(bench))
    rep.summary()
    print(f"load average at the end: {_loadavg()}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if os.geteuid() != 0:
        print("bench: error: needs root (nspod creates namespaces, mounts and cgroups)",
              file=sys.stderr)
        return 1
    nspod = shutil.which(args.nspod) or args.nspod
    if not os.path.exists(nspod):
        print(f"bench: error: {args.nspod}: no such command (use --nspod PATH)", file=sys.stderr)
        return 1
    try:
        bench = Bench(os.path.abspath(nspod), args.runs, not args.no_bytecode_cache)
    except (BenchError, OSError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    status = 0
    try:
        run_all(bench, args.only)
    except (BenchError, OSError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        status = 1
    finally:
        sys.stdout.flush()
        for problem in bench.cleanup():
            print(f"bench: cleanup: {problem}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
