"""What an integration test may leave behind, snapshotted before and compared after."""
import json
import os


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes():
    """{(pid, start time): description} of every process on the host."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        cmdline = _read(f"/proc/{entry}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        found[(int(entry), int(fields[19]))] = cmdline.strip() or stat.decode(errors="replace")
    return found


def mounts():
    return {line.split()[4] for line in _read("/proc/self/mountinfo").decode().splitlines()}


def links():
    return set(os.listdir("/sys/class/net"))


def netns_files():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def cgroup_dirs(parent):
    """The test's own cgroup parent in every hierarchy nspod may write: it must be gone."""
    found = set()
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        found.add(os.path.join(base, parent.strip("/")))
    if os.path.isdir("/sys/fs/cgroup/memory"):
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            found.add(os.path.join("/sys/fs/cgroup", hierarchy, parent.strip("/")))
    return {d for d in found if os.path.isdir(d)}


class Snapshot:
    def __init__(self, state_root, marker, cgroup_parent, pod_names, bridge):
        self.bridge = bridge
        self.state_root = state_root
        self.workdir = os.path.dirname(state_root)
        self.marker = marker
        self.cgroup_parent = cgroup_parent
        self.pod_names = pod_names  # filled as the test makes pods
        self.processes = processes()
        self.mounts = mounts()
        self.links = links()
        self.netns = netns_files()

    def leaks(self):
        """One line per leaked thing, [] when the host is as it was."""
        found = []
        for (pid, start), cmd in processes().items():
            if (pid, start) in self.processes:
                continue
            # Ours: a monitor names the state root; pause inherits the test's marker variable.
            if self.state_root in cmd or self.marker in _read(f"/proc/{pid}/environ").decode(errors="replace"):
                found.append(f"process {pid}: {cmd}")
        from nsPod.net.client import host_veth_name, netns_name
        our_netns = {netns_name(self.state_root, p) for p in self.pod_names}
        found += [f"mount {m}" for m in sorted(mounts() - self.mounts)
                  if m.startswith(self.workdir)
                  or m.startswith("/run/netns/") and m[len("/run/netns/"):] in our_netns]
        ours = {self.bridge} | {host_veth_name(self.state_root, p, self.bridge)
                                for p in self.pod_names}
        found += [f"link {l}" for l in sorted((links() - self.links) & ours)]
        leases = os.path.join(self.state_root, "network", "leases.json")
        if os.path.exists(leases):
            with open(leases) as f:
                held = json.load(f).get("leases") or {}
            found += [f"IP lease {lease['ip']} of pod {pod}" for pod, lease in sorted(held.items())]
        found += [f"netns {n}" for n in sorted(netns_files() - self.netns) if n in our_netns]
        found += [f"cgroup {c}" for c in sorted(cgroup_dirs(self.cgroup_parent))]
        pods = os.path.join(self.state_root, "pods")
        if os.path.isdir(pods):
            found += [f"state dir {os.path.join(pods, p)}" for p in sorted(os.listdir(pods))]
        return found
