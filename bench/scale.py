#!/usr/bin/env python3
"""nspod at scale: N one-container pods started one after another, then `ps`, then `rm -f`.

    python3 bench/scale.py [--pods 1000] [--network none,bridge] [--png PATH] [--nspod PATH]

For each network (none, then the bridge): pods `scale-<i>-<token>` are started with
`nspod run` one after another, each start timed; at the checkpoints (10, 50, 100, 250, 500,
750, 1000 pods) the PSS of every pod's monitor and pause (smaps_rollup) is summed, with the
state root's shared helpers (netd, a per-root warm process: any process whose command line
names the state root) shown beside it; at the end `nspod ps` is timed (5 runs), every pod is
removed with `nspod rm -f --timeout 0` (batches of 100 names), and the host is checked for
anything left: processes (each recorded monitor and pause, by pid and start time; any
process in the private cgroup parent), netns names, veths and the bridge, pod cgroups,
mounts under the temp dir or naming it, and pod directories.

Criteria (issue 11): the 1000th start within 1.25x the 10th (each the median of a window of
10 starts: pods 1-10 and N-9..N; single starts are printed too), `nspod ps` <= 0.5 s
(median), nothing left. Prints the curve as a table and writes a PNG (start time and PSS
per pod against the number of pods; no matplotlib needed: bench/plot.py).

Same discipline as bench.py (it reuses its Bench: private state root in /tmp, private cgroup
parent under this process's own cgroup, private bridge nspb<4 hex>; here a /21 subnet, since
a /24 holds 253 pods). Exit status 0 when the run completed and every criterion was met, 2
when it completed and a criterion was missed, 1 when something broke.
"""
import argparse
import ipaddress
import json
import os
import random
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as benchlib  # noqa: E402
import plot  # noqa: E402
import versus  # noqa: E402

CHECKPOINTS = (10, 50, 100, 250, 500, 750, 1000)
WINDOW = 10            # starts per window for the start-time criterion
PS_RUNS = 5
RM_BATCH = 100
START_LIMIT = 1.25     # last window's median start / first window's
PS_LIMIT_S = 0.5


def pick_subnet21():
    """10.89.<8k>.0/21 that nothing on the host overlaps (or only wider routes overlap)."""
    taken = benchlib.host_networks()
    candidates = list(range(1, 32))
    random.shuffle(candidates)
    for strict in (True, False):
        for k in candidates:
            subnet = ipaddress.IPv4Network(f"10.89.{8 * k}.0/21")
            if not [t for t in taken if t.overlaps(subnet)
                    and (strict or t.prefixlen >= subnet.prefixlen)]:
                return str(subnet)
    raise benchlib.BenchError("no free subnet 10.89.<8k>.0/21 on this host")


def checkpoints_for(pods):
    points = [c for c in CHECKPOINTS if c < pods]
    return points + [pods]


def window_median(samples, first):
    """Median of WINDOW samples: the first ones (first=True) or the last ones."""
    part = samples[:WINDOW] if first else samples[-WINDOW:]
    return statistics.median(part)


class PodRecord:
    """What one pod's state.json says it made: checked for leftovers after rm."""

    def __init__(self, name, state):
        self.name = name
        monitor = state.get("monitor") or {}
        pause = state.get("pause") or {}
        self.monitor = (monitor.get("pid"), monitor.get("startTime"))
        self.pause = (pause.get("pid"), pause.get("startTime"))
        self.containers = [c.get("pid") for c in (state.get("containers") or {}).values()
                           if isinstance(c, dict) and c.get("pid")]
        net = state.get("network") or {}
        self.host_veth = net.get("hostVeth")
        self.cgroup = state.get("cgroup")


def cpu_ns(pid):
    """CPU time the process has run so far (ns, /proc/PID/schedstat), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_state(bench, name):
    with open(os.path.join(bench.root, "pods", name, "state.json")) as f:
        return json.load(f)


def alive(pid_start):
    pid, start = pid_start
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0] != b"Z" and (start is None or int(fields[19]) == start)


def memory_checkpoint(bench, records):
    """(per pod KiB: monitor+pause PSS / n, shared helpers' PSS KiB, [helper names])."""
    monitors = [r.monitor[0] for r in records]
    pauses = [r.pause[0] for r in records if r.pause[0]]
    total = 0
    for pid in monitors + pauses:
        try:
            total += benchlib.smaps_rollup_kib(pid)["Pss"]
        except (OSError, KeyError):
            pass
    helpers = versus.root_helpers(bench.root, set(monitors) | set(pauses))
    shared, names = 0, []
    for pid, comm in sorted(helpers.items()):
        try:
            shared += benchlib.smaps_rollup_kib(pid)["Pss"]
            names.append(f"{comm}[{pid}]")
        except (OSError, KeyError):
            pass
    return total / len(records), shared, names


def time_ps(bench, expected):
    argv = bench.cli("ps")
    samples, cpu = [], []
    for _ in range(PS_RUNS):
        cpu0 = children_cpu_s()
        start = time.perf_counter()
        out = benchlib.run_checked(argv, env=bench.env)
        samples.append(time.perf_counter() - start)
        cpu.append(children_cpu_s() - cpu0)
    time_ps.cpu = cpu
    rows = out.strip().splitlines()[1:]
    if len(rows) != expected:
        raise benchlib.BenchError(f"nspod ps listed {len(rows)} pods, expected {expected}")
    return samples


def remove_all(bench, names):
    start = time.perf_counter()
    for i in range(0, len(names), RM_BATCH):
        bench.nspod_rm(*names[i:i + RM_BATCH])
    return time.perf_counter() - start


def leftovers(bench, records, network):
    """Everything of these pods still on the host, as lines."""
    found = []
    for r in records:
        for what, ref in (("monitor", r.monitor), ("pause", r.pause)):
            if alive(ref):
                found.append(f"{r.name}: {what} pid {ref[0]} still runs")
        if r.host_veth and os.path.exists(os.path.join("/sys/class/net", r.host_veth)):
            found.append(f"{r.name}: veth {r.host_veth} still there")
    for hierarchy in benchlib.cgroup_mounts():
        top = hierarchy + bench.cgroup_parent
        if not os.path.isdir(top):
            continue
        for path, dirs, _ in os.walk(top):
            if path != top:
                found.append(f"cgroup {path} still there")
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    procs = f.read().split()
            except OSError:
                procs = []
            if procs:
                found.append(f"cgroup {path}: processes {' '.join(procs[:5])}")
    try:
        netns = [n for n in os.listdir("/run/netns") if n.endswith(bench.token)]
    except FileNotFoundError:
        netns = []
    found += [f"netns name /run/netns/{n} still there" for n in netns]
    if network == "bridge" and os.path.exists(os.path.join("/sys/class/net", bench.bridge)):
        found.append(f"bridge {bench.bridge} still there")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f
                  if bench.tmp in line or f"-{bench.token} " in line]
    found += [f"mount {m} still there" for m in mounts]
    found += [f"pod directory {n} still there" for n in bench.pods_left()]
    # The root's helpers run on until cleanup, which stops and checks them (podd: the warm
    # per-root process; netd): any other process of the run is a leak. podd is known by its
    # lock only (a monitor podd forked carries podd's command line); netd by its command line
    # too, since it unlinks its lock when its last pod goes, before it has exited.
    podd = benchlib.read_podd_pids(bench.root)
    found += [f"process {pid} still runs: {cmdline}"
              for pid, cmdline in sorted(bench.root_processes().items())
              if pid not in podd and " -m nsPod.net.daemon " not in cmdline]
    try:
        with open(os.path.join(bench.root, "network", "leases.json")) as f:
            held = json.load(f).get("leases") or {}
    except (OSError, ValueError):
        held = {}
    found += [f"IP lease {lease.get('ip')} of pod {pod} still held"
              for pod, lease in sorted(held.items())]
    return found


def run_network(bench, network, pods, log):
    """Start `pods` pods on `network`, measure, remove; returns the result dict."""
    mode = "none" if network == "none" else None
    prefix = f"s{network[0]}"
    manifest = bench.manifest(bench.name(prefix), network=mode)
    names, records, starts, cpus, curve = [], [], [], [], []
    points = checkpoints_for(pods)
    # One pod made and removed untimed: bytecode cache, page cache (and on the bridge, netd
    # starts; it stays up while pods come, and the bridge with the first timed pod).
    warm = bench.name(f"{prefix}w")
    bench.nspod_run(manifest, name=warm)
    bench.nspod_rm(warm)
    load_start = benchlib._loadavg()
    try:
        for i in range(1, pods + 1):
            name = bench.name(f"{prefix}{i}")
            cpu0 = children_cpu_s()
            t0 = time.perf_counter()
            bench.nspod_run(manifest, name=name)
            starts.append((time.perf_counter() - t0) * 1000)
            names.append(name)
            record = PodRecord(name, read_state(bench, name))
            records.append(record)
            # CPU the start cost (the CLI, and so far the monitor, pause and the container,
            # whose own setup runs before its exec): wall time follows the machine's load,
            # this much less.
            pod_ns = sum(cpu_ns(p) for p in [record.monitor[0], record.pause[0]]
                         + record.containers if p)
            cpus.append((children_cpu_s() - cpu0) * 1000 + pod_ns / 1e6)
            if i in points:
                time.sleep(0.5)   # let the last monitors settle into their idle loop
                per_pod, shared, helpers = memory_checkpoint(bench, records)
                recent = starts[-WINDOW:]
                curve.append({"pods": i, "start_ms": starts[-1],
                              "start_window_ms": statistics.median(recent),
                              "cpu_window_ms": statistics.median(cpus[-WINDOW:]),
                              "pss_per_pod_kib": per_pod, "shared_kib": shared,
                              "helpers": helpers, "load": benchlib._loadavg()})
                log(f"  {network}: {i} pods, last start {starts[-1]:.0f} ms, window median "
                    f"{statistics.median(recent):.0f} ms (CPU {statistics.median(cpus[-WINDOW:]):.0f}"
                    f" ms), PSS/pod {per_pod / 1024:.2f} MiB, "
                    f"shared {shared / 1024:.1f} MiB, load {benchlib._loadavg()}")
        ps = time_ps(bench, pods)
        ps_cpu = time_ps.cpu
        log(f"  {network}: nspod ps of {pods} pods: median {statistics.median(ps):.3f} s")
    finally:
        rm_s = remove_all(bench, [n for n in names if n in set(bench.pods_left())])
    time.sleep(0.2)
    left = leftovers(bench, records, network)
    return {"network": network, "pods": pods, "starts": starts, "cpus": cpus, "curve": curve,
            "ps": ps, "ps_cpu": ps_cpu,
            "rm_s": rm_s, "left": left, "load_start": load_start,
            "load_end": benchlib._loadavg()}


def report(result):
    network, starts, curve = result["network"], result["starts"], result["curve"]
    print(f"\n{network}: {result['pods']} pods (load average {result['load_start']} at the start, "
          f"{result['load_end']} at the end)")
    print(f"  {'pods':>5} {'start ms':>9} {'median of last 10':>18} {'CPU ms (last 10)':>17} "
          f"{'PSS/pod MiB':>12} {'shared MiB':>11}  load")
    for row in curve:
        print(f"  {row['pods']:>5} {row['start_ms']:9.0f} {row['start_window_ms']:18.0f} "
              f"{row.get('cpu_window_ms', 0):17.0f} "
              f"{row['pss_per_pod_kib'] / 1024:12.2f} {row['shared_kib'] / 1024:11.1f}  "
              f"{row['load']}")
    if curve and curve[-1]["helpers"]:
        print(f"  shared helpers of the root: {', '.join(curve[-1]['helpers'])}")
    verdicts = []
    if len(starts) >= 2 * WINDOW:
        first, last = window_median(starts, True), window_median(starts, False)
        ratio = last / first
        verdicts.append((ratio <= START_LIMIT,
                         f"start: pods {len(starts) - WINDOW + 1}-{len(starts)} median "
                         f"{last:.0f} ms vs pods 1-{WINDOW} {first:.0f} ms = {ratio:.2f}x "
                         f"(<= {START_LIMIT}x; single: #{WINDOW} {starts[WINDOW - 1]:.0f} ms, "
                         f"#{len(starts)} {starts[-1]:.0f} ms)"))
    cpus = result.get("cpus") or []
    if len(cpus) >= 2 * WINDOW:
        first, last = window_median(cpus, True), window_median(cpus, False)
        print(f"  (CPU per start, CLI + the pod's processes so far: pods 1-{WINDOW} median "
              f"{first:.0f} ms, the last {WINDOW} {last:.0f} ms = {last / first:.2f}x; "
              "not a criterion, a load-independent view of the same curve)")
    ps = statistics.median(result["ps"])
    verdicts.append((ps <= PS_LIMIT_S,
                     f"nspod ps of {result['pods']} pods: {ps:.3f} s median of {PS_RUNS} "
                     f"({min(result['ps']):.3f}-{max(result['ps']):.3f}; CPU "
                     f"{statistics.median(result.get('ps_cpu') or [0]):.3f} s) "
                     f"(<= {PS_LIMIT_S} s)"))
    left = result["left"]
    verdicts.append((not left, f"rm -f of all ({result['rm_s']:.1f} s, batches of {RM_BATCH}): "
                     + ("nothing left" if not left else f"{len(left)} things left")))
    for line in left[:20]:
        print(f"    left: {line}")
    for ok, line in verdicts:
        print(f"  {'met   ' if ok else 'MISSED'} {line}")
    return all(ok for ok, _ in verdicts)


def write_png(path, results):
    """Two panels: start time (ms) and PSS per pod (MiB) against the number of pods; one
    line per network (none: blue, bridge: red)."""
    colours = {"none": (30, 90, 200), "bridge": (200, 40, 40)}
    start_series, pss_series = [], []
    for r in results:
        colour = colours.get(r["network"], (0, 0, 0))
        start_series.append((colour, list(enumerate(r["starts"], 1))))
        pss_series.append((colour, [(c["pods"], c["pss_per_pod_kib"] / 1024)
                                    for c in r["curve"]]))
    image = plot.Canvas(800, 600)
    # The start axis ends at the 99th percentile: one start in a hundred, slowed by the
    # machine's other load, would otherwise flatten the curve (it is drawn at the top).
    starts = sorted(ms for r in results for ms in r["starts"])
    top = starts[int(0.99 * (len(starts) - 1))] if starts else None
    plot.panel(image, (0, 0, 800, 300), start_series, y_top=top)
    plot.panel(image, (0, 300, 800, 300), pss_series)
    with open(path, "wb") as f:
        f.write(image.png())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000, help="pods per network (1000)")
    parser.add_argument("--network", default="none,bridge",
                        help="networks to run, in order (none,bridge)")
    parser.add_argument("--png", default=None, help="the plot (default: scale-<date>.png here)")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    parser.add_argument("--nspod", default=benchlib.default_nspod())
    parser.add_argument("--replot", metavar="JSON",
                        help="only draw the PNG (--png) from a --json of an earlier run")
    args = parser.parse_args(argv)
    args.networks = [n.strip() for n in args.network.split(",") if n.strip()]
    if not args.networks or set(args.networks) - {"none", "bridge"}:
        parser.error("--network takes none, bridge or both (comma-separated)")
    if not 1 <= args.pods <= 1020:
        parser.error("--pods must be 1..1020 (a Linux bridge holds at most 1024 ports)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.replot:
        with open(args.replot) as f:
            write_png(args.png or "scale.png", json.load(f))
        return 0
    if os.geteuid() != 0:
        print("scale: error: needs root", file=sys.stderr)
        return 1
    png = args.png or os.path.join(os.getcwd(), time.strftime("scale-%Y%m%d-%H%M.png"))
    try:
        bench = benchlib.Bench(os.path.abspath(args.nspod), 1, True)
        bench.subnet = pick_subnet21()
    except (benchlib.BenchError, OSError) as e:
        print(f"scale: error: {e}", file=sys.stderr)
        return 1
    log = lambda line: print(line, flush=True)  # noqa: E731
    print(f"nspod at scale, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{versus.design_note(bench)}")
    print(f"{os.cpu_count()} cpus, load average {benchlib._loadavg()}; root {bench.root}; "
          f"bridge {bench.bridge}, subnet {bench.subnet}; {args.pods} pods per network")
    results, status = [], 0
    try:
        for network in args.networks:
            results.append(run_network(bench, network, args.pods, log))
    except (benchlib.BenchError, OSError) as e:
        print(f"scale: error: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("scale: interrupted", file=sys.stderr)
        status = 1
    finally:
        sys.stdout.flush()
        for problem in bench.cleanup():
            print(f"scale: cleanup: {problem}", file=sys.stderr)
            status = 1
    for result in results:
        if not report(result) and status == 0:
            status = 2
    if results:
        write_png(png, results)
        print(f"\nplot: {png} (top: each start in ms against the pod's number; bottom: PSS "
              "per pod in MiB at the checkpoints; none blue, bridge red)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
