"""Scenario (i) of bench.py: issue 11's table, nspod against live Podman in alternating pairs.

  (a) pod cycle, network none: `nspod run` + `nspod rm -f --timeout 0` of a one-container pod;
      Podman: `pod create --network none` + `pod start` + `run -d --pod` + `pod rm -f -t 0`
  (b) the same on a bridge: nspod's bridge (this run's own); Podman's default netavark bridge,
      run inside a private network namespace (`unshare --net sleep`; every podman command
      of (b) enters it with nsenter), so that netavark's IP forwarding and NAT rules exist only
      there: the host's forwarding and firewall are never touched. Gone with the holder.
  (c) one more container in a running pod: `nspod add POD cN -- true` vs
      `podman run --rm --pod P --rootfs R true`
  (d) `nspod exec POD -- true` vs `podman exec CTR true`
  (e) memory per pod with 20 pods up (network none), PSS (smaps_rollup) of everything but the
      workload: nspod's monitor + pause, plus the state root's shared helpers (netd, a warm
      per-root process: any process whose command line names the root) / 20; Podman's infra
      conmon + catatonit + the container's conmon.
Each timed figure is the median of `runs` pairs (after warm-up pairs); the two sides alternate
within the pair and which goes first alternates too. Printed: both medians, the ratio of
the medians, the median of the per-pair ratios, and the issue's goal. Without podman (or its
rootfs) the anchor figures are used instead, and the table says so.
"""
import os
import shutil
import statistics
import subprocess
import time

import bench as b

GOALS = {"a": 0.20, "b": 0.20, "c": 0.20, "d": 0.25, "e": 0.5}
# ../shared/anchors/podman/RESULTS.md (paired pass P; (a)/(b) are infra-only cycles, no
# container; (e) is 2 x conmon + catatonit per pod at 20 pods).
ANCHORS = {"a": 430.0, "b": 650.0, "c": 278.0, "d": 200.0, "e": 0.85 * 1024}
LABELS = {
    "a": "(a) pod cycle, network none (run + rm -f)",
    "b": "(b) pod cycle, bridge",
    "c": "(c) one more container in a running pod",
    "d": "(d) exec POD -- true",
    "e": "(e) PSS per pod but the workload, 20 up",
}


class Podman:
    """Podman as the anchor harness configures it, under the bench's cgroup parent."""

    def __init__(self, bench, path, rootfs):
        self.bench = bench
        self.path = path
        self.rootfs = rootfs
        self.env = b._podman_env()
        self.prefix = f"nspodbench-{bench.token}"
        self.holder = None     # `unshare --net sleep` whose netns (b) runs in
        self.made = set()      # pod names that may need removing

    def argv(self, *args, netns=False):
        head = [self.path]
        if netns:
            head = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", self.path]
        return head + list(args)

    def run(self, *args, netns=False):
        return b.run_checked(self.argv(*args, netns=netns), env=self.env)

    def pod_up(self, name, bridge=False, container="sleep"):
        """create + start + a container: `sleep 1000` (or none)."""
        network = [] if bridge else ["--network", "none"]
        self.made.add((name, bridge))
        self.run("pod", "create", *network, "--cgroup-parent", self.bench.cgroup_parent,
                 "--infra-name", f"{name}-infra", "--name", name, netns=bridge)
        self.run("pod", "start", name, netns=bridge)
        if container:
            self.run("run", "-d", "--pod", name, "--name", f"{name}-c", "--rootfs",
                     self.rootfs, "sleep", "1000", netns=bridge)

    def pod_rm(self, name, bridge=False):
        self.run("pod", "rm", "-f", "-t", "0", name, netns=bridge)
        self.made.discard((name, bridge))

    def cycle(self, name, bridge=False):
        self.pod_up(name, bridge)
        self.pod_rm(name, bridge)

    def start_netns(self):
        """A private netns for the bridge, with lo up; raises BenchError if Podman's bridge
        does not work in it."""
        self.holder = self.bench.start(["unshare", "--net", "sleep", "100000"])
        deadline = time.monotonic() + 5
        own = os.readlink("/proc/self/ns/net")
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == own:
            if time.monotonic() > deadline:
                raise b.BenchError("unshare --net: no new netns within 5 s")
            time.sleep(0.01)
        b.run_checked(["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "ip", "link",
                       "set", "lo", "up"])

    def pids(self, name):
        """(infra conmon, catatonit, container conmon, the workload) of a pod."""
        out = self.run("inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}",
                       f"{name}-infra", f"{name}-c")
        (infra_conmon, catatonit), (conmon, workload) = [
            tuple(int(x) for x in line.split()) for line in out.split("\n") if line.strip()]
        return infra_conmon, catatonit, conmon, workload

    def cleanup(self):
        problems = []
        for name, bridge in sorted(self.made):
            proc = subprocess.run(self.argv("pod", "rm", "-f", "-t", "0", name, netns=bridge),
                                  env=self.env, capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"podman pod rm {name}: {proc.stderr.strip()[:200]}")
        self.made.clear()
        if self.holder is not None:
            self.bench.stop(self.holder)
            self.holder = None
        return problems


def find_podman(bench):
    """(Podman or None, note)."""
    path = shutil.which("podman")
    if path is None:
        return None, "podman not installed: the anchor figures are used (RESULTS.md)"
    rootfs = os.environ.get("NSPOD_BENCH_PODMAN_ROOTFS", os.path.join(b.ANCHORS_WORK, "rootfs"))
    if not os.path.isdir(rootfs):
        return None, (f"podman installed but no rootfs at {rootfs} (run "
                      "../shared/anchors/podman/setup.sh): the anchor figures are used")
    version = b.run_checked([path, "--version"]).strip()
    return Podman(bench, path, rootfs), f"{version}, live ({path}, rootfs {rootfs})"


def design_note(bench):
    """Which design the nspod figures belong to."""
    here = os.path.dirname(os.path.abspath(__file__))
    git = ["git", "-C", here]
    commit = subprocess.run(git + ["describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    branch = subprocess.run(git + ["rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    warm = bench.env.get("NSPOD_WARM")
    has_warm = os.path.exists(os.path.join(os.path.dirname(here), "nsPod", "warm"))
    design = ("warm per-root process (nsPod/warm present; off only with NSPOD_WARM=0)"
              if has_warm else "one Python interpreter per monitor and per CLI call (no nsPod/warm)")
    return (f"nspod commit {commit} ({branch}), NSPOD_WARM="
            f"{warm if warm is not None else 'unset'}: {design}")


def _locked_pids(root):
    """Pids that <root>/network/*.lock and <root>/warm/*.lock name ("<pid> <start time>", as
    netd and podd write them), when that process still runs with that start time."""
    pids = set()
    for sub in ("network", "warm"):
        directory = os.path.join(root, sub)
        try:
            names = [n for n in os.listdir(directory) if n.endswith(".lock")]
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(directory, name)) as f:
                    pid, start = (int(x) for x in f.read().split()[:2])
                with open(f"/proc/{pid}/stat", "rb") as f:
                    data = f.read()
            except (OSError, ValueError):
                continue
            if int(data[data.rindex(b")") + 2:].split()[19]) == start:
                pids.add(pid)
    return pids


def root_helpers(root, exclude=()):
    """{pid: comm} of the state root's shared processes (netd, podd: a warm per-root process):
    those its lock files name, and any whose command line names the root; other than
    `exclude` (the pods' own) and the bench itself."""
    found = {}
    for pid in _locked_pids(root) - set(exclude):
        try:
            with open(f"/proc/{pid}/comm") as f:
                found[pid] = f.read().strip()
        except OSError:
            pass
    needle = root.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if needle in cmdline and b"bench.py" not in cmdline and b"scale.py" not in cmdline:
            found[int(entry)] = comm
    return found


def pairs(runs, nspod_once, podman_once):
    """Alternating pairs after b.WARMUP untimed ones: {"nspod": [...], "podman": [...]} ms."""
    out = {"nspod": [], "podman": []}
    for i in range(b.WARMUP + runs):
        sides = [("nspod", nspod_once), ("podman", podman_once)]
        if i % 2:
            sides.reverse()
        times = {}
        for side, once in sides:
            start = time.perf_counter()
            once(i)
            times[side] = (time.perf_counter() - start) * 1000
        if i >= b.WARMUP:
            for side, ms in times.items():
                out[side].append(ms)
    return out


def nspod_only(runs, once):
    samples = []
    for i in range(b.WARMUP + runs):
        start = time.perf_counter()
        once(i)
        if i >= b.WARMUP:
            samples.append((time.perf_counter() - start) * 1000)
    return {"nspod": samples}


def measure_a(bench, podman):
    name = bench.name("ia")
    manifest = bench.manifest(name, network="none")

    def nspod_once(_):
        bench.nspod_run(manifest)
        bench.nspod_rm(name)

    if podman is None:
        return nspod_only(bench.runs, nspod_once)
    return pairs(bench.runs, nspod_once, lambda _: podman.cycle(f"{podman.prefix}-a"))


def measure_b(bench, podman, notes):
    name = bench.name("ib")
    manifest = bench.manifest(name)

    def nspod_once(_):
        bench.nspod_run(manifest)
        bench.nspod_rm(name)

    if podman is not None:
        try:
            podman.start_netns()
            podman.cycle(f"{podman.prefix}-b", bridge=True)
        except b.BenchError as e:
            notes.append(f"(b) Podman's bridge does not work in a private netns here ({e}); "
                         "the anchor is used")
            podman = None
    if podman is None:
        return nspod_only(bench.runs, nspod_once)
    return pairs(bench.runs, nspod_once,
                 lambda _: podman.cycle(f"{podman.prefix}-b", bridge=True))


def measure_c_d(bench, podman):
    """(c) and (d) in one running pod each side."""
    name = bench.name("icd")
    bench.nspod_run(bench.manifest(name, network="none"))
    pod = f"{podman.prefix}-cd" if podman else None
    try:
        if podman:
            podman.pod_up(pod)

        def add_once(i):
            b.run_checked(bench.cli("add", name, f"x{i}", "--", "true"), env=bench.env)

        def exec_once(_):
            b.run_checked(bench.cli("exec", name, "--", "true"), env=bench.env)

        if podman is None:
            return nspod_only(bench.runs, add_once), nspod_only(bench.runs, exec_once)
        c = pairs(bench.runs, add_once, lambda _: podman.run(
            "run", "--rm", "--pod", pod, "--rootfs", podman.rootfs, "true"))
        d = pairs(bench.runs, exec_once, lambda _: podman.run("exec", f"{pod}-c", "true"))
        return c, d
    finally:
        bench.nspod_rm(name)
        if podman:
            podman.pod_rm(pod)


def measure_e(bench, podman):
    """KiB per pod: nspod (monitor + pause + helpers / n), Podman (2 conmon + catatonit)."""
    n = b.MEMORY_PODS
    names = [bench.name(f"ie{i:02d}") for i in range(n)]
    manifest = bench.manifest(bench.name("ie"), network="none")
    result = {}
    # netd (left running by (b)) serves bridged pods only: these are network none.
    bench.stop_netd()
    try:
        for name in names:
            bench.nspod_run(manifest, name=name)
        time.sleep(0.5)
        mine = []
        for name in names:
            with open(os.path.join(bench.root, "pods", name, "state.json")) as f:
                import json
                data = json.load(f)
            mine += [data["monitor"]["pid"], data["pause"]["pid"]]
        own = sum(b.smaps_rollup_kib(p)["Pss"] for p in mine)
        helpers = root_helpers(bench.root, set(mine))
        shared = sum(b.smaps_rollup_kib(p)["Pss"] for p in helpers)
        result["nspod"] = (own + shared) / n
        result["nspod_detail"] = (f"monitor+pause {own / n:.0f} KiB/pod + shared "
                                  f"{shared:.0f} KiB / {n} ({', '.join(sorted(helpers.values())) or 'none'})")
    finally:
        left = [x for x in names if x in bench.pods_left()]
        if left:
            bench.nspod_rm(*left)
    if podman is None:
        return result
    pods = [f"{podman.prefix}-e{i:02d}" for i in range(n)]
    try:
        for pod in pods:
            podman.pod_up(pod)
        time.sleep(0.5)
        total = 0
        for pod in pods:
            infra_conmon, catatonit, conmon, _ = podman.pids(pod)
            total += sum(b.smaps_rollup_kib(p)["Pss"] for p in (infra_conmon, catatonit, conmon))
        result["podman"] = total / n
    finally:
        for pod in pods:
            if (pod, False) in podman.made:
                podman.pod_rm(pod)
    return result


def scenario_i(bench):
    podman, note = find_podman(bench)
    notes = []
    results = {}
    try:
        results["a"] = measure_a(bench, podman)
        results["b"] = measure_b(bench, podman, notes)
        results["c"], results["d"] = measure_c_d(bench, podman)
        results["e"] = measure_e(bench, podman)
    finally:
        if podman is not None:
            notes += [f"cleanup: {p}" for p in podman.cleanup()]
    return {"note": note, "notes": notes, "results": results, "design": design_note(bench),
            "live": podman is not None}


def report_i(rep, i):
    print("(i) issue 11's table: nspod against Podman, alternating pairs")
    print(f"  design: {i['design']}")
    print(f"  podman: {i['note']}")
    print("  (a) Podman: pod create --network none + pod start + run -d --pod (sleep) + pod rm -f; "
          "(b) the same on netavark's bridge inside a private netns")
    print("  (c) nspod add returns once the container started; podman run --rm waits for it "
          "to exit and removes it")
    for line in i["notes"]:
        print(f"  note: {line}")
    head = ("figure", "nspod", "Podman", "ratio", "per-pair", "goal", "")
    rows = [head]
    for key in "abcd":
        r = i["results"][key]
        mine = statistics.median(r["nspod"])
        spread = f"{mine:.0f} ms ({min(r['nspod']):.0f}-{max(r['nspod']):.0f})"
        if "podman" in r:
            theirs = statistics.median(r["podman"])
            podman_cell = f"{theirs:.0f} ms ({min(r['podman']):.0f}-{max(r['podman']):.0f})"
            per_pair = statistics.median(x / y for x, y in zip(r["nspod"], r["podman"]))
            per_pair_cell = f"{per_pair:.2f}"
        else:
            theirs = ANCHORS[key]
            podman_cell = f"{theirs:.0f} ms (anchor)"
            per_pair_cell = "-"
        ratio = mine / theirs
        rows.append((LABELS[key], spread, podman_cell, f"{ratio:.2f}", per_pair_cell,
                     f"<= {GOALS[key]:.2f}", "met" if ratio <= GOALS[key] else "missed"))
    e = i["results"]["e"]
    theirs = e.get("podman", ANCHORS["e"])
    ratio = e["nspod"] / theirs
    rows.append((LABELS["e"], f"{e['nspod']:.0f} KiB",
                 f"{theirs:.0f} KiB" + ("" if "podman" in e else " (anchor)"), f"{ratio:.2f}",
                 "-", f"<= {GOALS['e']:.2f}", "met" if ratio <= GOALS["e"] else "missed"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for r in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print(f"  (e) nspod: {e['nspod_detail']}")
    print(f"  load average now: {b._loadavg()}")
    print()
    for r in rows[1:]:
        rep.verdicts.append(f"(i) {r[0]}: nspod/Podman {r[3]} vs goal {r[5]}: {r[6]}")
