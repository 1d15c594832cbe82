#!/usr/bin/env python3
"""nspod benchmarks: wall-clock medians against floors measured in the same run.

    python3 bench/bench.py [--runs N] [--only a,b,c,d,e,p] [--profile] [--nspod PATH]
                           [--no-bytecode-cache]

Scenarios (README.md in this directory says what each one measures and why):
  a  CLI pod cycle: `nspod run` + `nspod rm -f --timeout 0` of a one-container pod on the
     default bridge network (netd warm), with the same pod on `nspod.io/network: none` beside it
  b  `nspod exec POD -- true` into a running pod
  c  library API: pod.run() of a 3-container pod, against a Python holder + 3 setns'd members
  d  PSS of monitor + pause per pod with 20 pods up, against 20 idle Python processes
  e  the network: bridge vs none pod cycles, a cold cycle (no netd), the cycle with the bridge
     already up, and netd's attach/detach timed directly against a process in a fresh netns
  p  profile (also `--profile`): where the pod cycle's time goes, from timestamps an
     instrumented CLI and monitor record, plus the top import costs of the CLI and the monitor
  i  issue 11's table, (a)-(e) against live Podman in alternating pairs, each as a ratio with
     its goal (bench/versus.py); the anchors when podman is not installed

Stdlib only. Needs root. Everything runs under a private state root in /tmp, a private
cgroup parent below this process's own cgroup, a private bridge (nspb<4 hex>) and subnet
(10.89.<n>.0/24); all are removed at the end, even on failure, and the root's network helper
(netd) is stopped. Exit status: 0 when every measurement ran (missed targets included), 1
when something broke.
"""
import argparse
import ipaddress
import json
import os
import platform
import random
import re
import secrets
import select
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
COLD_RUNS = 3        # cold pod cycles (no netd running): each pays netd's start
IMPORT_RUNS = 5      # -X importtime runs per process; each module's median is reported
TOP_IMPORTS = 10

# Podman figures measured on this machine (../shared/anchors/podman/RESULTS.md), used when
# podman is not installed. Note the anchor pod cycle is create+start+rm of the infra
# container alone; the live measurement below also runs one container in the pod.
ANCHOR_POD_CYCLE_MS = 430.0          # --network none
ANCHOR_POD_CYCLE_BRIDGE_MS = 650.0   # default bridge network (netavark), 649-656 ms
ANCHOR_BRIDGE_OVER_NONE = 1.45       # paired ratio, bridge cycle / none cycle
ANCHOR_EXEC_MS = 200.0
ANCHOR_PSS_PER_POD_MIB = 0.85

TARGET_CYCLE_VS_PODMAN = 0.3
TARGET_EXEC_VS_PODMAN = 0.4
TARGET_LIB_VS_FLOOR = 2.0

NS_FLAGS = ["--net", "--ipc", "--uts", "--pid", "--mount"]
# Where the Podman anchor harness keeps its rootfs and config (see its lib.sh).
ANCHORS_WORK = "/var/tmp/nspod-anchors"
NETWORK_ANNOTATION = "nspod.io/network"
SCENARIOS = "abcdepi"


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


def pod_manifest(name, containers=1, network=None):
    """A Kubernetes Pod of `containers` idle containers on the host's root (no image);
    network None is nspod's default (the bridge), "none" the annotation for loopback only."""
    meta = f"metadata: {{name: {name}}}"
    if network is not None:
        meta = (f"metadata: {{name: {name}, annotations: "
                f"{{{NETWORK_ANNOTATION}: {network}}}}}")
    lines = ["apiVersion: v1", "kind: Pod", meta, "spec:",
             "  restartPolicy: Never", "  terminationGracePeriodSeconds: 0", "  containers:"]
    for i in range(containers):
        lines += [f"  - name: c{i}", '    command: [sleep, "1000"]']
    return "\n".join(lines) + "\n"


def pod_dict(name, containers=1, network=None):
    """The same Pod as a dict, for the library API."""
    metadata = {"name": name}
    if network is not None:
        metadata["annotations"] = {NETWORK_ANNOTATION: network}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": f"c{i}", "command": ["sleep", "1000"]}
                                    for i in range(containers)]}}


def fmt_ratio(value):
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2f}x"


def host_networks():
    """Every IPv4 network the host has an address or a route in (any table)."""
    nets = []
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "-o", "route", "show", "table", "all"]):
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True).stdout
        except OSError:
            continue
        for match in re.finditer(r"(?<![\d.])(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", out):
            try:
                nets.append(ipaddress.IPv4Network(match.group(1), strict=False))
            except ValueError:
                pass
    return nets


def pick_network():
    """A bridge name nspb<4 hex> no link has, and a subnet 10.89.<n>.0/24 that nothing on the
    host uses: first no overlap at all; failing that, overlapping only wider routes (such as
    another nspod root's 10.89.0.0/16, which our more specific /24 does not disturb)."""
    for _ in range(50):
        bridge = f"nspb{secrets.token_hex(2)}"
        if not os.path.exists(os.path.join("/sys/class/net", bridge)):
            break
    else:
        raise BenchError("no free bridge name nspb<4 hex>")
    taken = host_networks()
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for strict in (True, False):
        for n in candidates:
            subnet = ipaddress.IPv4Network(f"10.89.{n}.0/24")
            clash = [t for t in taken if t.overlaps(subnet)
                     and (strict or t.prefixlen >= subnet.prefixlen)]
            if not clash:
                return bridge, str(subnet)
    raise BenchError("no free subnet 10.89.<n>.0/24 on this host")


def read_netd_pid(root):
    """The pid in <root>/network/netd.lock when a live nsPod.net.daemon process has it, else
    None."""
    try:
        with open(os.path.join(root, "network", "netd.lock")) as f:
            words = f.read().split()
        pid = int(words[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"nsPod.net.daemon" in cmdline and root.encode() in cmdline else None


def read_podd_pids(root):
    """The pids of the root's live podds: those that hold a <root>/warm/podd.<key>.lock
    (flock, as nsPod.warm.client.running tests it), as the lock file says."""
    import fcntl
    try:
        names = os.listdir(os.path.join(root, "warm"))
    except OSError:
        return set()
    pids = set()
    for name in names:
        if not (name.startswith("podd.") and name.endswith(".lock")):
            continue
        try:
            fd = os.open(os.path.join(root, "warm", name), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            words = os.pread(fd, 64, 0).split()
            if words and words[0].isdigit():
                pids.add(int(words[0]))
        finally:
            os.close(fd)
    return pids


def stale_warm_files(root):
    """What a stopped podd should not leave in <root>/warm: its socket and lock file (podd
    unlinks both before it exits; podd.log stays with the root)."""
    try:
        names = os.listdir(os.path.join(root, "warm"))
    except OSError:
        return []
    return sorted(n for n in names if n != "podd.log")


# --- the probe: timestamps from inside an nspod CLI and its monitor ---------------------------

# Written as sitecustomize.py into a private directory that only the profile's instrumented
# runs put on PYTHONPATH (with NSPOD_BENCH_PROBE=<dir for the results>). In an nspod CLI or
# monitor it wraps a few nsPod functions (looked up by name: a renamed one is skipped
# silently) to record CLOCK_MONOTONIC timestamps, and at exit writes them to
# <dir>/<cli|monitor>-<pid>.json. time.monotonic() is the same clock in every process, so the
# bench lines the CLI's, the monitor's and its own timestamps up. Nothing else is changed.
PROBE_SOURCE = r'''
import os
import sys
import time

_T0 = time.monotonic()
_DIR = os.environ.get("NSPOD_BENCH_PROBE")


def _role():
    argv = list(getattr(sys, "orig_argv", []))
    if "nsPod.monitor" in argv or any(a.endswith(os.path.join("nsPod", "monitor", "__main__.py"))
                                      for a in argv):
        return "monitor"
    if len(argv) > 1 and os.path.basename(argv[1]) == "nspod":
        return "cli"
    return None


_ROLE = _role() if _DIR else None

if _ROLE:
    import atexit
    import json

    _PID = os.getpid()
    _EVENTS = [["site", _T0]]
    _WATCH = {"nsPod.cli", "nsPod.api.pods", "nsPod.net.client", "nsPod.store.state",
              "nsPod.kernel.security", "nsPod.kernel.sandbox", "nsPod.kernel.container",
              "nsPod.monitor.supervisor", "nsPod.manifest.spec", "yaml",
              "click"}

    def _ev(label):
        _EVENTS.append([label, time.monotonic()])

    def _wrap(obj, name, label, before=None):
        original = getattr(obj, name, None)
        if original is None or getattr(original, "_bench_probe", False):
            return

        def wrapper(*args, **kwargs):
            if before is not None:
                before()
            _ev(label + ":start")
            try:
                return original(*args, **kwargs)
            finally:
                _ev(label + ":end")

        wrapper._bench_probe = True
        setattr(obj, name, wrapper)

    def _patch_monitor_main():
        # Monitor and main() live in nsPod.monitor.supervisor (nsPod/monitor/__main__.py runs it).
        main = sys.modules.get("nsPod.monitor.supervisor")
        monitor = getattr(main, "Monitor", None)
        if monitor is not None:
            for name in ("setup", "open_control_socket", "make_pod_cgroup", "make_volumes",
                         "write_etc_files", "make_sandbox", "connect_network",
                         "publish_host_ports", "advance", "start", "update_phase",
                         "on_control", "begin_stop", "teardown"):
                _wrap(monitor, name, "monitor." + name)
        for name in ("_send_ready", "unmount_recorded", "remove_cgroups", "detach_network"):
            _wrap(main, name, "monitor." + name)

    def _patch(name, module):
        if name == "nsPod.cli":
            _wrap(module, "load_manifest", "cli.load_manifest")
        elif name == "nsPod.api.pods":
            for fn in ("run", "_start_monitor", "remove", "stop", "_request",
                       "_wait_monitor_exit", "clean_up_after_monitor", "_remove_dir"):
                _wrap(module, fn, "pod." + fn)
        elif name == "nsPod.net.client":
            for fn in ("prewarm", "attach", "detach"):
                _wrap(module, fn, "netclient." + fn)
        elif name == "nsPod.store.state":
            _wrap(module, "write_json", "state.write_json")
        elif name == "nsPod.kernel.sandbox":
            _wrap(module, "spawn", "sandbox.spawn")
        elif name == "nsPod.kernel.container":
            _wrap(module, "spawn", "container.spawn")
        elif name == "nsPod.kernel.security" and _ROLE == "monitor":
            # main() calls become_subreaper first: by then Monitor exists in the supervisor.
            _wrap(module, "become_subreaper", "monitor.main", before=_patch_monitor_main)

    class _Loader:
        def __init__(self, loader, name):
            self._loader = loader
            self._name = name

        def create_module(self, spec):
            return self._loader.create_module(spec)

        def exec_module(self, module):
            _ev(f"import {self._name}:start")
            self._loader.exec_module(module)
            _ev(f"import {self._name}:end")
            _patch(self._name, module)

        def __getattr__(self, attr):
            return getattr(self._loader, attr)

    class _Finder:
        def find_spec(self, name, path=None, target=None):
            if name not in _WATCH:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader, name)
            return spec

    _DUMPED = []

    def _dump():
        if os.getpid() != _PID or _DUMPED:
            return          # a forked child that did not exec, or written already
        _DUMPED.append(True)
        _ev("exit")
        path = os.path.join(_DIR, f"{_ROLE}-{_PID}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"role": _ROLE, "pid": _PID, "argv": list(sys.orig_argv),
                       "events": _EVENTS}, f)
        os.rename(path + ".tmp", path)

    atexit.register(_dump)
    # nspod leaves by os._exit once its output is flushed (no interpreter teardown): record
    # the exit there too; _dump writes once whichever path comes first.
    _os_exit = os._exit

    def _exit_recorded(code):
        _dump()
        _os_exit(code)

    os._exit = _exit_recorded
    sys.meta_path.insert(0, _Finder())
'''


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
        self.token = secrets.token_hex(2)    # in pod names: `ip netns` names are host-global
        self.bridge, self.subnet = pick_network()
        self.env = self._environment(bytecode_cache)
        self.processes = []   # Popen objects this run started and must end
        self.manifests = set()   # manifest files already written
        self.cache = {}       # measurements two scenarios share (the bridge/none cycle pairs)

    def _environment(self, bytecode_cache):
        """The environment for every Python we start.

        Without a bytecode cache every nspod call recompiles nsPod's sources (an editable
        install has no .pyc until one is written); a user's machine writes __pycache__ on
        the first call. To measure that steady state without writing into the checkout,
        the cache goes to a private prefix in our temp directory. --no-bytecode-cache
        measures the uncached case instead (as under PYTHONDONTWRITEBYTECODE=1).
        """
        env = dict(os.environ)
        for name in ("NSPOD_TRACE", "PYTHONPYCACHEPREFIX", "PYTHONPROFILEIMPORTTIME",
                     "NSPOD_ROOT", "NSPOD_CGROUP_PARENT", "NSPOD_BRIDGE", "NSPOD_SUBNET"):
            env.pop(name, None)
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

    def name(self, label):
        """A pod name of this run: bench-<label>-<token>."""
        return f"bench-{label}-{self.token}"

    def global_options(self):
        return ["--root", self.root, "--cgroup-parent", self.cgroup_parent,
                "--bridge", self.bridge, "--subnet", self.subnet]

    def cli(self, *args):
        return [self.nspod, *self.global_options(), *args]

    def worker_request(self, task, **fields):
        return {"task": task, "root": self.root, "cgroup_parent": self.cgroup_parent,
                "bridge": self.bridge, "subnet": self.subnet, "runs": self.runs,
                "warmup": WARMUP, **fields}

    def manifest(self, name, containers=1, network=None):
        path = os.path.join(self.tmp, f"{name}.yaml")
        if path not in self.manifests:
            with open(path, "w") as f:
                f.write(pod_manifest(name, containers, network))
            self.manifests.add(path)
        return path

    def nspod_run(self, manifest, name=None, env=None):
        extra = ["--name", name] if name else []
        run_checked(self.cli("run", manifest, *extra), env=env or self.env)

    def nspod_rm(self, *names, env=None):
        run_checked(self.cli("rm", "-f", "--timeout", "0", *names), env=env or self.env)

    def netd_pid(self):
        return read_netd_pid(self.root)

    def stop_netd(self):
        """netclient.stop(root) in nspod's interpreter: the root's netd exits (if it runs)."""
        code = "import sys; from nsPod.net import client as netclient; netclient.stop(sys.argv[1])"
        run_checked([self.python, "-c", code, self.root], env=self.env)

    def stop_podd(self):
        """nsPod.warm.client.stop_all(root) in nspod's interpreter: every podd of the root (the
        warm per-root process the thin `nspod` starts on demand) exits; a checkout without
        nsPod/warm has none. Prints the pids of podd locks still held after that, if any."""
        code = ("import sys\n"
                "try:\n    from nsPod.warm import client\nexcept ImportError:\n    sys.exit(0)\n"
                "root = sys.argv[1]; client.stop_all(root)\n"
                "import os\n"
                "try:\n    names = os.listdir(client.warm_dir(root))\nexcept OSError:\n    names = []\n"
                "for n in names:\n"
                "    if n.startswith('podd.') and n.endswith('.lock'):\n"
                "        pid = client.running(root, n[5:-5])\n"
                "        if pid is not None:\n            print(pid)\n")
        return run_checked([self.python, "-c", code, self.root], env=self.env).split()

    def root_processes(self):
        """{pid: command line} of every process whose command line names this run's temp dir
        (podd and the monitors it forked carry `-m nsPod.podd ROOT`, netd its root), or that
        lives in a cgroup under the private parent (pause, containers); the bench's own
        processes (this one and what it still runs) excluded."""
        mine = {os.getpid()} | {p.pid for p in self.processes}
        needle = self.tmp.encode()
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in mine:
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/cgroup") as f:
                    cgroups = f.read()
            except OSError:
                continue
            if (needle in cmdline and b"bench.py" not in cmdline and b"scale.py" not in cmdline
                    or self.cgroup_parent + "/" in cgroups):
                found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
        return found

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

    # --- cleanup: pods, processes, netd, network, cgroups, temp dir ------------------------

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
        if os.path.isdir(self.root):
            try:
                self.stop_netd()
            except BenchError as e:
                problems.append(f"stopping the network helper: {e}")
        if self.netd_pid() is not None:
            problems.append(f"the network helper of {self.root} still runs "
                            f"(pid {self.netd_pid()})")
        # After the last `nspod` call: the thin client's rm above may have started podd.
        if os.path.isdir(self.root):
            try:
                problems += [f"podd of {self.root} still runs (pid {pid})"
                             for pid in self.stop_podd()]
            except BenchError as e:
                problems.append(f"stopping podd: {e}")
        problems += [f"podd file {self.root}/warm/{n} left after podd stopped"
                     for n in stale_warm_files(self.root)]
        for pid, cmdline in sorted(self.root_processes().items()):
            problems.append(f"process {pid} of this run still runs: {cmdline}")
        problems += self._check_network()
        problems += self._remove_cgroups()
        mounts = mount_points_under(self.tmp)
        if mounts:
            # Never rmtree through a mount: it could reach files that are not ours.
            problems.append(f"mounts left under {self.tmp}: {', '.join(mounts)}; not removed")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems

    def _check_network(self):
        """nspod removes the bridge with its last pod and the netns names with each pod: say
        so if any is left. The bridge has this run's own name: it is deleted here if left."""
        problems = []
        link = os.path.join("/sys/class/net", self.bridge)
        if os.path.exists(link):
            ports = os.listdir(os.path.join(link, "brif")) if os.path.isdir(
                os.path.join(link, "brif")) else []
            problems.append(f"bridge {self.bridge} was left (ports: {', '.join(ports) or 'none'})"
                            "; deleted")
            subprocess.run(["ip", "link", "del", self.bridge], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        try:
            names = os.listdir("/run/netns")
        except FileNotFoundError:
            names = []
        # nspod-<root hash>-<pod> (the bench root is not the default one)
        ours = [n for n in names if "nspod-bench" in n and n.endswith(self.token)]
        for name in ours:
            problems.append(f"netns name /run/netns/{name} was left")
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


# --- (a) and (e): CLI pod cycles, bridge and none ---------------------------------------------

def timed_cycle(bench, manifest, name, env=None):
    """One `nspod run` + `nspod rm -f --timeout 0`: (total, run, rm) in ms."""
    start = time.perf_counter()
    bench.nspod_run(manifest, env=env)
    middle = time.perf_counter()
    bench.nspod_rm(name, env=env)
    end = time.perf_counter()
    return (end - start) * 1000, (middle - start) * 1000, (end - middle) * 1000


def cycle_pairs(bench):
    """The same one-container pod on the bridge (nspod's default) and on `none`, alternately,
    so that both see the same load; the order inside a pair alternates too. The warm-up pairs
    start the root's netd, so the bridge cycles run with netd warm. Shared by (a) and (e)."""
    if "pairs" in bench.cache:
        return bench.cache["pairs"]
    pods = {"bridge": (bench.name("a"), None), "none": (bench.name("a-none"), "none")}
    manifests = {net: bench.manifest(name, network=mode) for net, (name, mode) in pods.items()}
    samples = {net: {"total": [], "run": [], "rm": []} for net in pods}
    diffs, ratios = [], []
    for i in range(WARMUP + bench.runs):
        order = ("bridge", "none") if i % 2 == 0 else ("none", "bridge")
        pair = {}
        for net in order:
            pair[net] = timed_cycle(bench, manifests[net], pods[net][0])
        if i < WARMUP:
            continue
        for net, (total, run, rm) in pair.items():
            samples[net]["total"].append(total)
            samples[net]["run"].append(run)
            samples[net]["rm"].append(rm)
        diffs.append(pair["bridge"][0] - pair["none"][0])
        ratios.append(pair["bridge"][0] / pair["none"][0])
    result = {net: {k: Stats(v) for k, v in s.items()} for net, s in samples.items()}
    result["diff"] = Stats(diffs)
    result["ratio"] = Stats(ratios)
    bench.cache["pairs"] = result
    return result


def cold_cycles(bench):
    """Bridge pod cycles with no netd running: `nspod run` starts it (pyroute2 loads while the
    pod is made) and the monitor's attach waits for it."""
    name = bench.name("e-cold")
    manifest = bench.manifest(name)
    samples = {"total": [], "run": [], "rm": []}
    for _ in range(COLD_RUNS):
        bench.stop_netd()
        if bench.netd_pid() is not None:
            raise BenchError("the network helper still runs after netclient.stop")
        total, run, rm = timed_cycle(bench, manifest, name)
        samples["total"].append(total)
        samples["run"].append(run)
        samples["rm"].append(rm)
    return {k: Stats(v) for k, v in samples.items()}


def held_bridge_cycles(bench):
    """Bridge pod cycles while another pod of the root holds the bridge: the cycle then makes
    and removes only the veth, not the bridge (which the last pod's removal deletes)."""
    holder = bench.name("e-hold")
    bench.nspod_run(bench.manifest(holder))
    try:
        name = bench.name("e")
        manifest = bench.manifest(name)
        return measure(lambda: timed_cycle(bench, manifest, name), bench.runs)
    finally:
        bench.nspod_rm(holder)


def scenario_e(bench):
    pairs = cycle_pairs(bench)
    cold = cold_cycles(bench)
    held = held_bridge_cycles(bench)
    net = _worker(bench, bench.worker_request("net", pod=f"benchveth-{bench.token}",
                                              cold_runs=COLD_RUNS))
    return {"pairs": pairs, "cold": cold, "held": held, "net": net}


def scenario_a(bench):
    return cycle_pairs(bench)


def library_cycle(bench, containers, networks=("bridge", "none")):
    """pod.run() / pod.remove() in-process, in nspod's own interpreter (see worker_lib)."""
    request = bench.worker_request("lib", containers=containers, networks=list(networks),
                                   name=bench.name(f"lib-{containers}"))
    return _worker(bench, request)


def _worker(bench, request):
    out = run_checked([bench.python, os.path.abspath(__file__), "--worker", json.dumps(request)],
                      env=bench.env)
    return _stats_tree(json.loads(out))


def _stats_tree(value):
    if isinstance(value, dict):
        return {k: _stats_tree(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) for x in value):
        return Stats(value)
    return value


# --- (b) exec -------------------------------------------------------------------------------

def scenario_b(bench):
    name = bench.name("b")
    bench.nspod_run(bench.manifest(name))
    try:
        argv = bench.cli("exec", name, "--", "true")
        return measure(lambda: run_checked(argv, env=bench.env), bench.runs)
    finally:
        bench.nspod_rm(name)


# --- (c) library API, 3 containers, against the Python floor --------------------------------

def scenario_c(bench):
    lib = library_cycle(bench, 3)
    floor = _worker(bench, bench.worker_request("floor", members=3))
    return {"lib": lib, **floor}


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
    names = [bench.name(f"d{i:02d}") for i in range(MEMORY_PODS)]
    manifest = bench.manifest(bench.name("d"))
    try:
        for name in names:
            bench.nspod_run(manifest, name=name)
        time.sleep(0.5)  # let each monitor settle into its idle loop
        monitors, pauses = [], []
        for name in names:
            monitors.append(_monitor_pid(bench, name))
            pauses.append(_pause_pid(bench, name))
        monitor, pause = _memory_of(monitors), _memory_of(pauses)
        netd_pid = bench.netd_pid()
        netd = smaps_rollup_kib(netd_pid) if netd_pid else None
    finally:
        started = [n for n in names if n in bench.pods_left()]
        if started:
            bench.nspod_rm(*started)
    per_pod = (sum(monitor["Pss"].samples) + sum(pause["Pss"].samples)) / MEMORY_PODS
    netd_mib = {k: v / 1024 for k, v in netd.items()} if netd else None
    return {"monitor": monitor, "pause": pause, "per_pod_pss": per_pod, "netd": netd_mib}


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


# --- (p) profile: where the pod cycle's time goes ---------------------------------------------

def profile(bench):
    return {"rows": standalone_costs(bench), "lib": library_cycle(bench, 1),
            "timeline": instrumented_cycles(bench), "imports": import_profiles(bench),
            "dataclasses": dataclass_costs(bench)}


def standalone_costs(bench):
    """The pieces every nspod call pays, each timed alone."""
    manifest = bench.manifest(bench.name("p"))
    py = bench.python
    rows = [
        ("python -S -c pass (interpreter, no site)", [py, "-S", "-c", "pass"]),
        ("python -c pass (interpreter + site, .pth files)", [py, "-c", "pass"]),
        ("python -c 'import nsPod.cli' (+ click)", [py, "-c", "import nsPod.cli"]),
        ("nspod --version (console script, click parses)", [bench.nspod, "--version"]),
        ("nspod validate pod.yaml (+ yaml, spec)", [bench.nspod, "validate", manifest]),
        ("nspod rm -f (no such pod)", bench.cli("rm", "-f", "--timeout", "0",
                                                 bench.name("none"))),
        ("python -P -c 'import nsPod.monitor.supervisor'",
         [py, "-P", "-c", "import nsPod.monitor.supervisor"]),
    ]
    results = []
    for label, argv in rows:
        results.append((label, measure(lambda: run_checked(argv, env=bench.env), bench.runs)))
    return results


class Timeline:
    """The events one process's probe recorded: [[label, CLOCK_MONOTONIC seconds], ...]."""

    def __init__(self, events):
        self.events = events or []

    def first(self, label):
        for name, t in self.events:
            if name == label:
                return t
        return None

    def spans(self, label):
        """(start, end) of each call of a wrapped function, in order."""
        out, start = [], None
        for name, t in self.events:
            if name == label + ":start" and start is None:
                start = t
            elif name == label + ":end" and start is not None:
                out.append((start, t))
                start = None
        return out

    def span(self, label):
        spans = self.spans(label)
        return spans[0] if spans else (None, None)

    def duration(self, label):
        start, end = self.span(label)
        return None if start is None else end - start

    def total(self, label, within=None):
        spans = self.spans(label)
        if within is not None:
            spans = [s for s in spans if within[0] <= s[0] and s[1] <= within[1]]
        return sum(e - s for s, e in spans), len(spans)


def _ms(*parts):
    """a - b (- c ...) in ms; None when any part is missing."""
    if any(p is None for p in parts):
        return None
    value = parts[0]
    for p in parts[1:]:
        value -= p
    return value * 1000


def instrumented_cycles(bench):
    """Pod cycles with the probe in the CLI and the monitor, on the bridge (netd warm) and on
    `none` alternately: the cycle's time split into its steps, each a median over the runs.
    Returns [(label, {"bridge": Stats or None, "none": Stats or None})] in cycle order."""
    probe_dir = os.path.join(bench.tmp, "probe")
    out_dir = os.path.join(bench.tmp, "probe-out")
    os.makedirs(probe_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(probe_dir, "sitecustomize.py"), "w") as f:
        f.write(PROBE_SOURCE)
    env = dict(bench.env, NSPOD_BENCH_PROBE=out_dir,
               PYTHONPATH=os.pathsep.join(p for p in (probe_dir, bench.env.get("PYTHONPATH"))
                                          if p))
    pods = {"bridge": (bench.name("p"), None), "none": (bench.name("p-none"), "none")}
    rows = {}     # step index -> (label, {network: [ms, ...]})
    for i in range(WARMUP + bench.runs):
        for net, (name, mode) in pods.items():
            for entry in os.listdir(out_dir):
                os.unlink(os.path.join(out_dir, entry))
            manifest = bench.manifest(name, network=mode)
            t0 = time.monotonic()
            bench.nspod_run(manifest, env=env)
            t1 = time.monotonic()
            bench.nspod_rm(name, env=env)
            t2 = time.monotonic()
            if i < WARMUP:
                continue
            found = _probe_results(out_dir)
            steps = _cycle_steps(found["run"], found["monitor"], found["rm"], t0, t1, t2)
            for k, (label, value) in enumerate(steps):
                entry = rows.setdefault(k, (label, {n: [] for n in pods}))
                entry[1][net].append(value)
    result = []
    for label, values in rows.values():
        stats = {}
        for net, samples in values.items():
            samples = [v for v in samples if v is not None]
            stats[net] = Stats(samples) if samples else None
        if any(stats.values()):
            result.append((label, stats))
    return result


def _probe_results(out_dir):
    found = {}
    for entry in os.listdir(out_dir):
        if entry.endswith(".json"):
            with open(os.path.join(out_dir, entry)) as f:
                doc = json.load(f)
            key = doc["role"]
            if key == "cli":
                key = "run" if "run" in doc["argv"] else "rm"
            found[key] = Timeline(doc["events"])
    if set(found) != {"run", "rm", "monitor"}:
        raise BenchError(f"the probe recorded {sorted(found)} (want run, rm, monitor): "
                         "is sitecustomize shadowed?")
    return found


def _cycle_steps(run, mon, rm, t0, t1, t2):
    """[(label, ms)] of one instrumented cycle; labels indented by what they are part of.
    t0, t1, t2: the bench's clock before `nspod run`, between it and `nspod rm`, after."""
    steps = []

    def add(label, value):
        steps.append((label, value))

    cli_imported = run.span("import nsPod.cli")[1]
    run_start, run_end = run.span("pod.run")
    spawn, ready_seen = run.span("pod._start_monitor")
    add("nspod run (total)", _ms(t1, t0))
    add("  process start -> site done (interpreter, site, .pth)", _ms(run.first("site"), t0))
    add("  site -> nsPod.cli imported (console script, click)", _ms(cli_imported, run.first("site")))
    add("    of which import click", _ms(run.duration("import click")))
    add("  nsPod.cli imported -> pod.run() called", _ms(run_start, cli_imported))
    add("    of which import nsPod.api.pods", _ms(run.duration("import nsPod.api.pods")))
    add("    of which load_manifest (yaml, spec, checks)", _ms(run.duration("cli.load_manifest")))
    add("      of which import nsPod.manifest.spec",
        _ms(run.duration("import nsPod.manifest.spec")))
    add("      of which import yaml", _ms(run.duration("import yaml")))
    add("  pod.run() -> monitor spawned (claim, lease, plan, pod.json)",
        _ms(spawn, run_start))
    imported, prewarm = run.duration("import nsPod.net.client"), run.duration("netclient.prewarm")
    add("    of which import nsPod.net.client + prewarm (netd)",
        None if prewarm is None else ((imported or 0.0) + prewarm) * 1000)
    add("  monitor spawn -> ready message read", _ms(ready_seen, spawn))
    main = mon.first("monitor.main:start")
    setup_start, setup_end = mon.span("monitor.setup")
    ready_sent = mon.span("monitor._send_ready")[0]
    add("    spawn -> monitor's site done (fork, exec, interpreter)", _ms(mon.first("site"), spawn))
    add("    monitor imports + Monitor() (site -> main)", _ms(main, mon.first("site")))
    add("    main -> setup (signals, prctl)", _ms(setup_start, main))
    add("    setup (total)", _ms(setup_end, setup_start))
    for label, what in (("control socket", "monitor.open_control_socket"),
                        ("pod cgroups", "monitor.make_pod_cgroup"),
                        ("volumes (/dev/shm tmpfs)", "monitor.make_volumes"),
                        ("/etc files", "monitor.write_etc_files"),
                        ("pause (sandbox.spawn)", "sandbox.spawn"),
                        ("network attach (netd round trip)", "netclient.attach"),
                        ("container start (Monitor.start)", "monitor.start"),
                        ("  of which container.spawn", "container.spawn"),
                        ("update phase", "monitor.update_phase")):
        add(f"      {label}", _ms(mon.duration(what)))
    if setup_start is not None:
        written, count = mon.total("state.write_json", (setup_start, setup_end))
        add("      state.json writes (temp+fsync+rename), all of them", written * 1000)
        add("      number of state.json writes (count, not ms)", count)
    add("    setup end -> ready written", _ms(ready_sent, setup_end))
    add("    ready written -> read by the CLI", _ms(ready_seen, ready_sent))
    add("  ready read -> atexit (pod.run returns, click prints)", _ms(run.first("exit"), ready_seen))
    add("  interpreter exit (atexit -> process gone)", _ms(t1, run.first("exit")))
    add("nspod rm -f --timeout 0 (total)", _ms(t2, t1))
    rm_imported = rm.span("import nsPod.cli")[1]
    remove_start, remove_end = rm.span("pod.remove")
    request_start, request_end = rm.span("pod._request")
    wait_end = rm.span("pod._wait_monitor_exit")[1]
    control = mon.first("monitor.on_control:start")
    teardown_start, teardown_end = mon.span("monitor.teardown")
    add("  process start -> site done", _ms(rm.first("site"), t1))
    add("  site -> nsPod.cli imported (console script, click)", _ms(rm_imported, rm.first("site")))
    add("  nsPod.cli imported -> pod.remove() called", _ms(remove_start, rm_imported))
    add("    of which import nsPod.api.pods", _ms(rm.duration("import nsPod.api.pods")))
    add("  stop request -> monitor's reply", _ms(request_end, request_start))
    add("    request -> monitor accepts it", _ms(control, request_start))
    add("    kill + reap container and pause", _ms(teardown_start, control))
    add("    teardown (total)", _ms(teardown_end, teardown_start))
    for label, what in (("unmount", "monitor.unmount_recorded"),
                        ("remove cgroups", "monitor.remove_cgroups"),
                        ("network detach (netd, wait=False)", "monitor.detach_network")):
        add(f"      {label}", _ms(mon.duration(what)))
    add("    teardown end -> reply read", _ms(request_end, teardown_end))
    add("  wait for the monitor to exit", _ms(wait_end, request_end))
    add("    reply read -> monitor at atexit (may be < 0)", _ms(mon.first("exit"), request_end))
    add("    monitor exit (its atexit -> its lock is free)",
        _ms(wait_end, mon.first("exit")))
    cleaned, _ = rm.total("pod.clean_up_after_monitor")
    add("  clean_up_after_monitor (2 calls)", cleaned * 1000)
    add("    of which import nsPod.monitor.supervisor",
        _ms(rm.duration("import nsPod.monitor.supervisor")))
    add("  remove the pod directory", _ms(rm.duration("pod._remove_dir")))
    add("  pod.remove() returns -> atexit (click prints)", _ms(rm.first("exit"), remove_end))
    add("  interpreter exit (atexit -> process gone)", _ms(t2, rm.first("exit")))
    return steps


# --- what nsPod's @dataclass classes cost at import ---------------------------------------------

_TIMED_IMPORT = ("import dataclasses, json, re, time\n{patch}"
                 "t = time.perf_counter()\nimport {module}\n"
                 "print((time.perf_counter() - t) * 1000)")
# dataclass() as a no-op: the classes are made, their generated methods are not (the import
# still works; the module would not, which does not matter for timing its import).
_NO_DATACLASS = ("def _plain(cls=None, **kwargs):\n"
                 "    return (lambda c: c) if cls is None else cls\n"
                 "dataclasses.dataclass = _plain\n")


def dataclass_costs(bench, modules=("nsPod.manifest.spec", "nsPod.plan.make", "nsPod.config",
                                    "nsPod.kernel.cgroups")):
    """Each module's import time (dataclasses, json and re already imported) with @dataclass
    as usual and with it a no-op: the difference is what generating the dataclasses' methods
    costs at every start. Also `import dataclasses` itself after json and re."""
    def timed(code):
        samples = []
        for _ in range(2 * IMPORT_RUNS + 1):
            out = run_checked([bench.python, "-c", code], env=bench.env)
            samples.append(float(out.strip()))
        return statistics.median(samples)

    result = {}
    for module in modules:
        normal = timed(_TIMED_IMPORT.format(patch="", module=module))
        plain = timed(_TIMED_IMPORT.format(patch=_NO_DATACLASS, module=module))
        result[module] = (normal, plain)
    itself = ("import json, re, time\nt = time.perf_counter()\nimport dataclasses\n"
              "print((time.perf_counter() - t) * 1000)")
    result["dataclasses"] = timed(itself)
    return result


# --- imports: -X importtime of the CLI and the monitor ---------------------------------------

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def parse_importtime(text):
    """[(depth, name, self ms, cumulative ms)] in importtime's order (children first)."""
    rows = []
    for line in text.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            rows.append(((len(match.group(3)) - 1) // 2, match.group(4),
                         int(match.group(1)) / 1000, int(match.group(2)) / 1000))
    return rows


def _parents(rows):
    """name -> the name of the module whose import imported it (None at the top)."""
    parents, stack = {}, []
    for depth, name, _, _ in reversed(rows):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


class ImportProfile:
    """Median self and cumulative time of each module over several importtime runs."""

    def __init__(self, runs):
        self.runs = runs
        self.self_ms, self.cum_ms, self.depth, self.parent = {}, {}, {}, {}
        totals = []
        for rows in runs:
            totals.append(sum(cum for depth, _, _, cum in rows if depth == 0))
            for name, parent in _parents(rows).items():
                self.parent.setdefault(name, parent)
            for depth, name, own, cum in rows:
                self.self_ms.setdefault(name, []).append(own)
                self.cum_ms.setdefault(name, []).append(cum)
                self.depth.setdefault(name, depth)
        self.self_ms = {k: statistics.median(v) for k, v in self.self_ms.items()}
        self.cum_ms = {k: statistics.median(v) for k, v in self.cum_ms.items()}
        self.total = statistics.median(totals) if totals else 0.0

    def top_level(self, n=TOP_IMPORTS):
        names = [k for k, d in self.depth.items() if d == 0]
        return sorted(((self.cum_ms[k], k) for k in names), reverse=True)[:n]

    def top_self(self, n=TOP_IMPORTS):
        return sorted(((v, k) for k, v in self.self_ms.items()), reverse=True)[:n]

    def extra_over(self, other, n=TOP_IMPORTS):
        """Modules imported here and not in `other`, at the top of each such subtree."""
        extra = set(self.cum_ms) - set(other.cum_ms)
        roots = [k for k in extra if self.parent.get(k) not in extra]
        return sorted(((self.cum_ms[k], k) for k in roots), reverse=True)[:n]


def import_profiles(bench):
    """-X importtime of `nspod run`, of the monitor it starts (PYTHONPROFILEIMPORTTIME reaches
    it; its stderr is the pod's monitor.log), of `nspod rm`, and of
    `python -X importtime -P -c 'import nsPod.monitor.supervisor'` alone. The bridge network,
    netd warm."""
    name = bench.name("p")
    manifest = bench.manifest(name)
    env = dict(bench.env, PYTHONPROFILEIMPORTTIME="1")
    runs = {"run": [], "monitor": [], "rm": [], "monitor_import": []}
    for _ in range(IMPORT_RUNS):
        proc = subprocess.run(bench.cli("run", manifest), env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if proc.returncode != 0:
                raise BenchError(f"nspod run under -X importtime exited {proc.returncode}")
            runs["run"].append(parse_importtime(proc.stderr))
            with open(os.path.join(bench.root, "pods", name, "monitor.log")) as f:
                runs["monitor"].append(parse_importtime(f.read()))
        finally:
            proc = subprocess.run(bench.cli("rm", "-f", "--timeout", "0", name), env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise BenchError(f"nspod rm under -X importtime exited {proc.returncode}")
        runs["rm"].append(parse_importtime(proc.stderr))
        out = subprocess.run([bench.python, "-X", "importtime", "-P", "-c",
                              "import nsPod.monitor.supervisor"],
                             env=bench.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True).stderr
        runs["monitor_import"].append(parse_importtime(out))
    return {k: ImportProfile(v) for k, v in runs.items()}
# --- worker: runs in nspod's interpreter, where nsPod imports -------------------------------

def worker(request):
    tasks = {"lib": worker_lib, "floor": worker_floor, "net": worker_net}
    if request["task"] not in tasks:
        raise BenchError(f"unknown worker task {request['task']!r}")
    print(json.dumps(tasks[request["task"]](request)))


def _worker_config(request):
    from nsPod import config
    return config.load(root=request["root"], cgroup_parent=request["cgroup_parent"],
                       bridge=request["bridge"], subnet=request["subnet"])


def worker_lib(request):
    """Time pod.run() of one pod, imports and first-call costs excluded by warm-up runs; for
    each network in request["networks"], alternately ("bridge" is nspod's default).

    The monitor's start-to-ready time is taken by wrapping pod._start_monitor (spawn the
    monitor, wait for its ready message): cheap, and skipped if that private name changes.
    """
    from nsPod.api import pods as pod
    from nsPod.manifest import spec
    cfg = _worker_config(request)
    name = request["name"]
    pods = {}
    for net in request["networks"]:
        the_pod, _ = spec.pod_from_dict(pod_dict(name, request["containers"],
                                                 None if net == "bridge" else net))
        pods[net] = the_pod
    ready = _wrap_start_monitor(pod)
    result = {net: {"run": [], "rm": [], "ready": []} for net in pods}
    try:
        for i in range(request["warmup"] + request["runs"]):
            for net, the_pod in pods.items():
                start = time.perf_counter()
                pod.run(cfg, the_pod)
                middle = time.perf_counter()
                _, errors = pod.remove(cfg, [name], force=True, timeout=0)
                if errors:
                    raise BenchError(f"pod.remove: {errors[0]}")
                if i >= request["warmup"]:
                    result[net]["run"].append((middle - start) * 1000)
                    result[net]["rm"].append((time.perf_counter() - middle) * 1000)
                    if ready:
                        result[net]["ready"].append(ready[-1])
    finally:
        pod.remove(cfg, [name], force=True, timeout=0)
    for net in result:
        if not result[net]["ready"]:
            del result[net]["ready"]
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


def worker_net(request):
    """netd measured directly, without a pod: its cold start (netclient.start until it says
    ready), a ping (one request's round trip), and attach/detach of a veth for a process in a
    fresh netns (`unshare --net sleep 100`): with the bridge made and removed each time
    (remove_bridge=True, as when the pod is the root's only one), with the bridge left up
    (remove_bridge=False), and as the monitor asks (detach with wait=False: netd replies
    before it deletes the veth and the bridge)."""
    from nsPod.net import client as netclient
    root, bridge, subnet, pod = request["root"], request["bridge"], request["subnet"], request["pod"]
    result = {"cold_start": [], "ping": []}
    for _ in range(request["cold_runs"]):
        netclient.stop(root)
        start = time.perf_counter()
        ready = netclient.start(root)
        if ready is None:
            raise BenchError("netclient.start: another netd holds the lock")
        try:
            select.select([ready], [], [], 30)
        finally:
            os.close(ready)
        result["cold_start"].append((time.perf_counter() - start) * 1000)
        netclient.call(root, {"op": "ping"})
    for _ in range(request["warmup"] + request["runs"]):
        start = time.perf_counter()
        netclient.call(root, {"op": "ping"})
        result["ping"].append((time.perf_counter() - start) * 1000)
    del result["ping"][:request["warmup"]]
    holder = subprocess.Popen(["unshare", "--net", "sleep", "100"], stdin=subprocess.DEVNULL)
    try:
        pid = _in_new_netns(holder)
        for key, wait, remove_bridge in (("bridge_made", True, True),
                                         ("bridge_up", True, False),
                                         ("as_monitor", False, True)):
            attach_ms, detach_ms = [], []
            for i in range(request["warmup"] + request["runs"]):
                start = time.perf_counter()
                netclient.attach(root, pod, pid, bridge, subnet)
                middle = time.perf_counter()
                netclient.detach(root, pod, bridge, subnet, wait=wait, remove_bridge=remove_bridge)
                end = time.perf_counter()
                if not wait:
                    # netd deletes the veth (and bridge) after its reply, before it reads the
                    # next request: this ping waits for that, outside the timing.
                    netclient.call(root, {"op": "ping"})
                if i >= request["warmup"]:
                    attach_ms.append((middle - start) * 1000)
                    detach_ms.append((end - middle) * 1000)
            result[key] = {"attach": attach_ms, "detach": detach_ms}
    finally:
        try:
            netclient.detach(root, pod, bridge, subnet, wait=True, remove_bridge=True)
        finally:
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
    return result


def _in_new_netns(proc):
    """The pid of `unshare --net sleep` once it is in its own netns (unshare execs sleep)."""
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"unshare --net sleep 100 exited {proc.returncode}")
        try:
            if os.readlink(f"/proc/{proc.pid}/ns/net") != own and _comm(proc.pid) == "sleep":
                return proc.pid
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise BenchError("unshare --net sleep 100: not in a new netns within 5 s")


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
    from nsPod.kernel import namespaces, sandbox, syscalls
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

LABEL_WIDTH = 64


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
        print(f"network: bridge {bench.bridge}, subnet {bench.subnet} (this run's own); pods "
              f"use the bridge unless they say {NETWORK_ANNOTATION}: none")
        print(podman.note)
        print()

    def row(self, label, stats, unit="ms"):
        digits = 2 if unit == "MiB" else 1
        print(f"  {label:<{LABEL_WIDTH}} {stats.median:8.{digits}f} {unit}   "
              f"({stats.spread(digits)})")

    def value(self, label, value, unit="ms"):
        print(f"  {label:<{LABEL_WIDTH}} {value:8.1f} {unit}")

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


def report_a(rep, pairs, unshare, podman):
    print("(a) CLI pod cycle: nspod run pod.yaml + nspod rm -f --timeout 0 (1 container)")
    print("    network: the bridge (nspod's default; netd warm); beside it the same pod with "
          f"{NETWORK_ANNOTATION}: none;")
    print("    the two alternate, pair by pair")
    for net, label in (("bridge", "bridge"), ("none", "none (loopback only)")):
        rep.row(f"cycle total, {label}", pairs[net]["total"])
        rep.row("  nspod run", pairs[net]["run"])
        rep.row("  nspod rm -f --timeout 0", pairs[net]["rm"])
    rep.row("baseline: unshare --net --ipc --uts --pid --fork --mount", unshare)
    for net in ("bridge", "none"):
        rep.ratio(f"ratio to unshare floor, {net}", pairs[net]["total"].median / unshare.median)
    for net in ("bridge", "none"):
        rep.ratio(f"ratio to Podman pod cycle ({podman.cycle_label} {podman.cycle_ms:.0f} ms, "
                  f"--network none), {net}", pairs[net]["total"].median / podman.cycle_ms)
    print("  (where the time goes: section (p), or --profile)")
    print()
    limit = TARGET_CYCLE_VS_PODMAN * podman.cycle_ms
    for net in ("bridge", "none"):
        rep.table.append(_table_row(f"(a) CLI pod cycle, {net}", pairs[net]["total"].median,
                                    unshare.median, "unshare", podman.cycle_ms,
                                    f"{podman.cycle_label}, none", limit))
        rep.target("a", f"pod cycle, {net}", pairs[net]["total"].median, limit)


def report_e(rep, e):
    pairs, cold, held, net = e["pairs"], e["cold"], e["held"], e["net"]
    bridge, none = pairs["bridge"]["total"], pairs["none"]["total"]
    print("(e) network: the CLI pod cycle on the bridge vs with "
          f"{NETWORK_ANNOTATION}: none (1 container)")
    rep.row("bridge, netd warm (the (a) pairs)", bridge)
    rep.row("none (the same pairs)", none)
    rep.row("bridge - none, per pair: a veth set up and removed", pairs["diff"])
    rep.ratio("bridge / none, per pair (median)", pairs["ratio"].median)
    rep.ratio("  Podman, paired (anchor): bridge / none", ANCHOR_BRIDGE_OVER_NONE)
    rep.row(f"cold: bridge with no netd running ({COLD_RUNS} runs; run starts netd)",
            cold["total"])
    rep.row("  nspod run", cold["run"])
    rep.row("  nspod rm -f --timeout 0", cold["rm"])
    rep.row("bridge, the bridge kept up by another pod of the root", held)
    rep.value("  the bridge made + removed per cycle (bridge - this)",
              bridge.median - held.median)
    print("  netd, timed directly (netclient in-process, a process in a fresh netns):")
    rep.row(f"  netd cold start (netclient.start -> ready; {COLD_RUNS} runs)", net["cold_start"])
    rep.row("  ping (one request's round trip)", net["ping"])
    made, up, monitor = net["bridge_made"], net["bridge_up"], net["as_monitor"]
    rep.row("  attach, bridge made too (the root's only pod)", made["attach"])
    rep.row("  detach(wait=True, remove_bridge=True)", made["detach"])
    rep.row("  attach, bridge already up", up["attach"])
    rep.row("  detach(wait=True, remove_bridge=False)", up["detach"])
    rep.row("  as the monitor asks: attach (bridge made)", monitor["attach"])
    rep.row("  as the monitor asks: detach(wait=False, remove_bridge=True)", monitor["detach"])
    on_path = monitor["attach"].median + monitor["detach"].median
    rep.value("  the pod's wait for netd: attach + detach(wait=False)", on_path)
    rep.value("  bridge - none beyond that wait (cycle diff - netd wait)",
              pairs["diff"].median - on_path)
    rep.ratio(f"ratio to Podman bridge pod cycle (anchor {ANCHOR_POD_CYCLE_BRIDGE_MS:.0f} ms)",
              bridge.median / ANCHOR_POD_CYCLE_BRIDGE_MS)
    print("  (Podman's bridge is not measured live: netavark turns on IP forwarding and adds "
          "NAT rules)")
    print()
    limit = TARGET_CYCLE_VS_PODMAN * ANCHOR_POD_CYCLE_BRIDGE_MS
    rep.table.append(_table_row("(e) CLI pod cycle, bridge", bridge.median, none.median,
                                "none", ANCHOR_POD_CYCLE_BRIDGE_MS, "anchor, bridge", limit))
    rep.target("e", "bridge pod cycle", bridge.median, limit)
    podman_veth = ANCHOR_POD_CYCLE_BRIDGE_MS - ANCHOR_POD_CYCLE_MS
    rep.table.append(("(e) veth: bridge - none", f"{pairs['diff'].median:.1f} ms",
                      f"{on_path:.1f} ms (netd attach+detach)",
                      fmt_ratio(pairs["diff"].median / on_path),
                      f"{podman_veth:.0f} ms (anchor, bridge - none)",
                      fmt_ratio(pairs["diff"].median / podman_veth), "none set"))
    rep.verdicts.append(f"(e) veth setup: no target set ({pairs['diff'].median:.1f} ms per "
                        f"cycle; the pod waits {on_path:.1f} ms for netd's attach + detach)")


def report_b(rep, b, nsenter, podman):
    print("(b) nspod exec POD -- true, into a running pod (bridge network)")
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
    lib = c["lib"]
    for net in ("bridge", "none"):
        rep.row(f"pod.run, {net}", lib[net]["run"])
        if "ready" in lib[net]:
            rep.row("  of which monitor spawn -> ready", lib[net]["ready"])
        rep.row(f"pod.remove(force, timeout=0), {net} (not in the target)", lib[net]["rm"])
    rep.row("floor: holder (unshare net+ipc+uts) + 3 setns'd members", c["floor"])
    rep.row("  teardown (SIGKILL + reap, not in the target)", c["floor_down"])
    rep.row("same, holder execs pause, members exec sleep", c["floor_exec"])
    for net in ("bridge", "none"):
        rep.ratio(f"ratio to same-run floor, {net}", lib[net]["run"].median / c["floor"].median)
    rep.ratio("ratio to same-run floor with exec, none",
              lib["none"]["run"].median / c["floor_exec"].median)
    print()
    limit = TARGET_LIB_VS_FLOOR * c["floor"].median
    for net in ("bridge", "none"):
        rep.table.append(_table_row(f"(c) library pod of 3, {net}", lib[net]["run"].median,
                                    c["floor"].median, "python", None, None, limit))
        rep.target("c", f"library pod of 3, {net}", lib[net]["run"].median, limit)


def report_d(rep, d):
    print(f"(d) memory with {MEMORY_PODS} pods up, bridge network (smaps_rollup; per process, MiB)")
    for who in ("monitor", "pause"):
        rep.row(f"{who} RSS", d[who]["Rss"], "MiB")
        rep.row(f"{who} PSS", d[who]["Pss"], "MiB")
    rep.row(f"baseline: idle python RSS ({MEMORY_PODS} of them)", d["idle"]["Rss"], "MiB")
    rep.row(f"baseline: idle python PSS ({MEMORY_PODS} of them)", d["idle"]["Pss"], "MiB")
    per_pod, idle = d["per_pod_pss"], d["idle"]["Pss"].median
    print(f"  {'per pod: monitor + pause PSS (mean)':<{LABEL_WIDTH}} {per_pod:8.2f} MiB")
    netd = d.get("netd")
    if netd:
        print(f"  {'netd, one per root: RSS / PSS':<{LABEL_WIDTH}} {netd['Rss']:8.2f} / "
              f"{netd['Pss']:.2f} MiB")
        print(f"  {f'per pod with netd shared by the {MEMORY_PODS} pods':<{LABEL_WIDTH}} "
              f"{per_pod + netd['Pss'] / MEMORY_PODS:8.2f} MiB")
    else:
        print("  netd: not running when measured")
    rep.ratio("ratio to an idle python (same run, PSS median)", per_pod / idle)
    rep.ratio(f"ratio to Podman per-pod overhead (anchor {ANCHOR_PSS_PER_POD_MIB} MiB)",
              per_pod / ANCHOR_PSS_PER_POD_MIB)
    print()
    rep.table.append(("(d) PSS per pod", f"{per_pod:.2f} MiB", f"{idle:.2f} MiB (idle python)",
                      fmt_ratio(per_pod / idle), f"{ANCHOR_PSS_PER_POD_MIB} MiB (anchor)",
                      fmt_ratio(per_pod / ANCHOR_PSS_PER_POD_MIB), "none set"))
    netd_note = f"; netd {netd['Pss']:.2f} MiB PSS per root" if netd else ""
    rep.verdicts.append(f"(d) memory: no target set ({per_pod:.2f} MiB PSS per pod; Podman "
                        f"anchor {ANCHOR_PSS_PER_POD_MIB} MiB, idle python {idle:.2f} MiB"
                        f"{netd_note})")


def report_profile(rep, p):
    print("(p) where the CLI pod cycle's time goes (1 container; bridge with netd warm, and none)")
    print("  each piece timed alone:")
    for label, stats in p["rows"]:
        rep.row("  " + label, stats)
    lib = p["lib"]
    for net in ("bridge", "none"):
        rep.row(f"  library pod.run() (no CLI), {net}", lib[net]["run"])
        if "ready" in lib[net]:
            rep.row("    of which monitor spawn -> ready", lib[net]["ready"])
        rep.row(f"  library pod.remove(force, timeout=0), {net}", lib[net]["rm"])
    timeline = p["timeline"]
    n = timeline[0][1]["bridge"].n if timeline else 0
    print("  one cycle step by step (timestamps from a probe in the CLI and the monitor; bridge "
          "and none cycles")
    print(f"  alternate; median of {n} each; indented rows are parts of the row above; medians "
          "need not add up):")
    print(f"    {'':<{LABEL_WIDTH - 2}} {'bridge':>8}    {'none':>8}  {'bridge-none':>11}   "
          "(bridge min-max)")
    for label, by_net in timeline:
        bridge, none = by_net["bridge"], by_net["none"]
        count = "(count" in label
        digits = 0 if count else 1
        unit = "  " if count else "ms"
        cells = [f"{st.median:8.{digits}f} {unit}" if st else f"{'-':>8}   "
                 for st in (bridge, none)]
        diff = (f"{bridge.median - none.median:11.{digits}f} {unit}" if bridge and none
                else f"{'':>14}")
        spread = f"({bridge.min:.{digits}f}-{bridge.max:.{digits}f})" if bridge else ""
        print(f"    {label:<{LABEL_WIDTH - 2}} {cells[0]} {cells[1]}{diff}   {spread}".rstrip())
    imports = p["imports"]
    print(f"  imports (-X importtime, median of {IMPORT_RUNS} runs per module, ms; cumulative "
          "includes what a module imports):")
    _print_imports("`nspod run` process", imports["run"])
    _print_imports("monitor: python -X importtime -P -c 'import nsPod.monitor.supervisor'",
                   imports["monitor_import"])
    extra = imports["monitor"].extra_over(imports["monitor_import"])
    print("      the running monitor imports on top (lazily, while making the pod; "
          "PYTHONPROFILEIMPORTTIME):")
    print("        " + (", ".join(f"{name} {ms:.1f}" for ms, name in extra) or "nothing"))
    _print_imports("`nspod rm -f` process", imports["rm"])
    extra = imports["rm"].extra_over(imports["run"])
    print("      beyond what `nspod run` imports: "
          + (", ".join(f"{name} {ms:.1f}" for ms, name in extra) or "nothing"))
    costs = dict(p["dataclasses"])
    itself = costs.pop("dataclasses")
    print(f"    @dataclass at import (median of {2 * IMPORT_RUNS + 1}; each import alone, after "
          "json and re; ms as is / with a no-op @dataclass):")
    print("      " + ", ".join(f"{m} {a:.1f} / {b:.1f}" for m, (a, b) in costs.items())
          + f"; `import dataclasses` itself (inspect, ast, dis, tokenize) {itself:.1f}")
    print()


def _print_imports(what, prof):
    print(f"    {what}: all top-level imports {prof.total:.0f} ms")
    print("      top-level, cumulative: "
          + ", ".join(f"{name} {ms:.1f}" for ms, name in prof.top_level()))
    print("      own time (self): " + ", ".join(f"{name} {ms:.1f}" for ms, name in prof.top_self()))


def _table_row(scenario, value, floor, floor_name, podman_ms, podman_label, limit):
    podman = ("-", "-") if podman_ms is None else (
        f"{podman_ms:.0f} ms ({podman_label})", fmt_ratio(value / podman_ms))
    return (scenario, f"{value:.1f} ms", f"{floor:.1f} ms ({floor_name})",
            fmt_ratio(value / floor), *podman, f"<= {limit:.0f} ms")


# --- main -----------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed runs per figure ({RUNS})")
    parser.add_argument("--only", default=None,
                        help=f"scenarios to run, comma-separated ({','.join(SCENARIOS)}; all "
                        "by default)")
    parser.add_argument("--profile", action="store_true",
                        help="where the pod cycle's time goes: the same as --only p")
    parser.add_argument("--nspod", default=default_nspod(), help="the nspod command to measure")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run every Python with PYTHONDONTWRITEBYTECODE=1 (cold bytecode)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = {"p"} if args.profile else set(SCENARIOS)
    else:
        args.only = {s.strip() for s in args.only.split(",") if s.strip()}
        if args.profile:
            args.only.add("p")
    if not args.only or args.only - set(SCENARIOS):
        parser.error(f"--only takes a comma-separated subset of {','.join(SCENARIOS)}")
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
        report_a(rep, scenario_a(bench), unshare, podman)
    if "e" in only:
        report_e(rep, scenario_e(bench))
    if "p" in only:
        report_profile(rep, profile(bench))
    if "b" in only:
        nsenter = nsenter_floor(bench)
        report_b(rep, scenario_b(bench), nsenter, podman)
    if "c" in only:
        report_c(rep, scenario_c(bench))
    if "d" in only:
        report_d(rep, scenario_d(bench))
    if "i" in only:
        import versus   # issue 11's table against live Podman (bench/versus.py)
        versus.report_i(rep, versus.scenario_i(bench))
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
