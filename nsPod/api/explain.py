"""`nspod explain POD`: the pod as the kernel has it, as one JSON-able picture and a tree.

Everything shown is read from the kernel: namespace inodes from /proc/PID/ns/*, mounts
from /proc/PID/mountinfo, cgroup limits from the cgroup files, the veth and bridge by
netlink (net/links.py) and the pod side from /proc/<pause>/net. The state (state.json,
pod.json) says where to look and is checked against what is found: a pid is believed only
with its start time and inside the pod's cgroup, and every difference between the record
and the kernel is listed under "problems". Nothing a container controls (its mount table,
its paths) is trusted: files are read bounded, and the tree escapes what it prints.
"""
import os

from nsPod.api.pods import _believed_cgroup, _in_cgroup, _is_pause, _process_ref
from nsPod.api.query import _enter, load
from nsPod.errors import NspodError, describe

NS_KINDS = ("net", "ipc", "uts", "pid", "mnt", "cgroup")
MOUNTINFO_MAX = 4 << 20       # a container may make many mounts; read no more than this


def explain(config, name):
    """The pod's picture: {"pod", "phase", "pause", "network", "cgroup", "volumes",
    "containers", "problems"} (docs/interface.md, `nspod explain`)."""
    _enter(config, [name])
    pod_dir, doc, pod_state = load(config, name)
    plan = doc["plan"]
    problems = []
    cgroup = _believed_cgroup(pod_state.get("cgroup"))
    host = namespace_inodes("self")
    pause = pod_state.pause.ref() if pod_state.pause else None
    if pause is not None and not (pause.alive() and _is_pause(pause.pid)):
        pause = None
    pause_ns = namespace_inodes(pause.pid) if pause else {}
    if pause:
        _check_recorded("pause", pod_state.get("namespaces") or {}, pause_ns, problems)
    driver = _driver(plan, pod_state, problems)
    picture = {
        "pod": name,
        "phase": pod_state.phase,
        "uid": plan.get("uid"),
        "stateDir": pod_dir.path,
        # pause's own namespaces are the pod's; a kind the pod takes from the host is "host"
        "pause": {"pid": pause.pid if pause else None, "running": pause is not None,
                  "namespaces": {k: {"inode": pause_ns[k],
                                     "sharing": "host" if pause_ns[k] == host.get(k) else "pod"}
                                 for k in NS_KINDS if k in pause_ns}},
        "network": _network(config, pod_state, pause, pause_ns, problems),
        "cgroup": _cgroup(driver, plan, pod_state.get("cgroup"), problems),
        "volumes": [_volume(v) for v in plan.get("volumes", [])],
        "containers": [],
        "problems": problems,
    }
    from nsPod.plan.lifecycle import kind_of
    from nsPod.plan.make import container_from_json
    for c in plan["init_containers"] + plan["containers"]:
        cplan = container_from_json(c)
        cstate = pod_state.container(c["name"])
        ref = _process_ref(cstate.get("pid"), cstate.get("pidStartTime"))
        if ref is not None and not (ref.alive() and _in_cgroup(ref.pid, cgroup)):
            problems.append(f"container {c['name']}: recorded pid {ref.pid} is not the "
                            f"container's process (gone, or not in the pod's cgroup)")
            ref = None
        picture["containers"].append(
            _container(cplan, kind_of(cplan), cstate, ref, pause_ns, host, driver, plan,
                       problems))
    return picture


# --- the kernel's side ------------------------------------------------------------------------

def namespace_inodes(pid):
    """{kind: inode} of a process (pid or "self"), as os.stat of /proc/PID/ns/KIND gives."""
    inodes = {}
    for kind in NS_KINDS:
        try:
            inodes[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except OSError:
            pass
    return inodes


def _sharing(inode, pause_ns, host_inode):
    """"pod" (pause's), "host" (nspod's own, the host's) or "own" (neither)."""
    if inode is None:
        return None
    if inode == host_inode:
        return "host"
    if pause_ns and inode == pause_ns:
        return "pod"
    return "own"


def _check_recorded(who, recorded, found, problems):
    for kind, text in recorded.items():
        if kind in found and text != f"{kind}:[{found[kind]}]":
            problems.append(f"{who}: namespace {kind} is recorded as {text} but the kernel "
                            f"shows {kind}:[{found[kind]}]")


def mountinfo(pid):
    """[{mountPoint, root, fstype, source, options, superOptions}] of /proc/PID/mountinfo;
    the fields' octal escapes (\\040 for a space) decoded."""
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as f:
            data = f.read(MOUNTINFO_MAX)
    except OSError:
        return []
    return parse_mountinfo(data.decode("utf-8", errors="replace"))


def parse_mountinfo(text):
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 7:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4:
            continue
        mounts.append({"root": _unescape(fields[3]), "mountPoint": _unescape(fields[4]),
                       "options": fields[5], "fstype": fields[sep + 1],
                       "source": _unescape(fields[sep + 2]), "superOptions": fields[sep + 3]})
    return mounts


def _unescape(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def _last_mount_at(mounts, path):
    """The mount that is visible at `path` (the last one mounted there)."""
    found = None
    for m in mounts:
        if m["mountPoint"] == path:
            found = m
    return found


def _overlay_layers(super_options):
    layers = {}
    for option in super_options.split(","):
        key, _, value = option.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            layers[key] = value
    return layers


def _driver(plan, pod_state, problems):
    if not pod_state.get("cgroup"):
        return None
    try:
        from nsPod.kernel.cgroups import open_driver
        return open_driver(plan["cgroup_parent"])
    except NspodError as e:
        problems.append(f"cgroups: {describe(e)}")
        return None


def _cgroup(driver, plan, recorded, problems, pid=None):
    """{path, directory, limits: {file: value}, memoryUsage} of a recorded cgroup."""
    if not recorded:
        return None
    found = {"path": recorded, "directory": None, "limits": {}, "memoryUsage": None}
    if driver is None:
        return found
    from nsPod.kernel.cgroups import files, rel_in_parent
    try:
        rel = rel_in_parent(recorded, plan["cgroup_parent"])
        found["directory"] = driver.path(rel)
        if not os.path.isdir(found["directory"]):
            problems.append(f"cgroup {recorded}: recorded, but {found['directory']} is gone")
            return found
        for path in driver.limit_files(rel):
            text = files.read_optional(path)
            if text is not None:
                found["limits"][os.path.basename(path)] = text.strip()
        found["memoryUsage"] = driver.stats(rel)["memory"]["usage"]
    except NspodError as e:
        problems.append(f"cgroup {recorded}: {describe(e)}")
    if pid is not None and not _in_cgroup(pid, recorded.strip("/")):
        problems.append(f"process {pid} is not in its recorded cgroup {recorded}")
    return found


def _volume(v):
    """A pod volume and, for the kinds that are a mount of their own, that mount."""
    kinds = {"dir": "emptyDir", "tmpfs": "emptyDir (Memory)", "host": "hostPath",
             "files": "configMap/downwardAPI/projected", "secret": "secret (tmpfs)",
             "claim": "persistentVolumeClaim"}
    shown = {"name": v["name"], "kind": kinds.get(v["kind"], v["kind"]), "source": v["path"],
             "sizeLimit": v.get("size"), "mount": None}
    if v["kind"] in ("tmpfs", "secret"):
        m = _last_mount_at(mountinfo("self"), v["path"])
        if m:
            shown["mount"] = {"fstype": m["fstype"], "options": m["superOptions"]}
    return shown


def _network(config, pod_state, pause, pause_ns, problems):
    record = pod_state.get("network")
    if not record:
        return None
    net = {"podIP": record.get("ip"), "prefixLength": record.get("prefixLength"),
           "gateway": record.get("gateway"), "podVeth": record.get("podVeth"),
           "hostVeth": record.get("hostVeth"), "bridge": record.get("bridge"),
           "netns": record.get("netns"), "kernel": {}}
    kernel = net["kernel"]
    from nsPod.net import client as netclient
    kernel["hostVethIndex"] = netclient.link_index(record.get("hostVeth") or "")
    if kernel["hostVethIndex"] is None:
        problems.append(f"network: host veth {record.get('hostVeth')} is not there")
    try:
        from nsPod.net import links
        kernel["bridgePorts"] = links.bridge_ports(record.get("bridge")) \
            if isinstance(record.get("bridge"), str) else []
        if record.get("hostVeth") not in kernel["bridgePorts"]:
            problems.append(f"network: {record.get('hostVeth')} is not a port of bridge "
                            f"{record.get('bridge')}")
    except NspodError as e:
        problems.append(f"network: {describe(e)}")
    if record.get("netns"):
        try:
            kernel["netnsInode"] = os.stat(record.get("netns")).st_ino
        except OSError:
            kernel["netnsInode"] = None
        if pause and kernel["netnsInode"] != pause_ns.get("net"):
            problems.append(f"network: {record['netns']} is not pause's network namespace")
    if pause:
        kernel["podAddresses"] = local_addresses(pause.pid)
        if record.get("ip") and record.get("ip") not in kernel["podAddresses"]:
            problems.append(f"network: the pod's network namespace has no address "
                            f"{record['ip']}")
    return net


def local_addresses(pid):
    """The IPv4 addresses of pid's network namespace but loopback's, from its fib_trie."""
    try:
        with open(f"/proc/{pid}/net/fib_trie") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    found = []
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            address = lines[i - 1].split()[-1]
            if not address.startswith("127.") and address not in found:
                found.append(address)
    return found


def _container(cplan, kind, cstate, ref, pause_ns, host, driver, plan, problems):
    state = cstate.get("state")
    status, detail = "waiting", ""
    if state is not None and state.has("running") and ref is not None:
        status = "running"
    elif state is not None and state.has("terminated"):
        t = state.terminated
        status, detail = "terminated", f"{t.get('reason')}, exit {t.get('exitCode')}"
    elif state is not None and state.has("waiting"):
        detail = state.waiting.get("reason") or ""
    shown = {"name": cplan.name, "kind": kind, "status": status, "detail": detail,
             "restartCount": cstate.get("restartCount", 0), "pid": ref.pid if ref else None,
             "namespaces": {}, "root": None, "mounts": [], "cgroup": None}
    if ref is not None:
        inodes = namespace_inodes(ref.pid)
        shown["namespaces"] = {k: {"inode": inodes.get(k),
                                   "sharing": _sharing(inodes.get(k), pause_ns.get(k),
                                                       host.get(k))}
                               for k in NS_KINDS}
        _check_recorded(f"container {cplan.name}", cstate.get("namespaces") or {}, inodes,
                        problems)
        mounts = mountinfo(ref.pid)
        root = _last_mount_at(mounts, "/")
        if root:
            shown["root"] = {"fstype": root["fstype"], "image": cplan.image or None,
                             **_overlay_layers(root["superOptions"])}
    else:
        mounts = []
    for m in cplan.mounts:
        entry = {"target": m.target, "volume": m.volume, "source": m.source,
                 "subPath": m.sub_path or None, "readOnly": m.read_only, "kernel": None}
        found = _last_mount_at(mounts, m.target)
        if found:
            entry["kernel"] = {"fstype": found["fstype"],
                               "readOnly": "ro" in found["options"].split(",")}
        elif ref is not None:
            problems.append(f"container {cplan.name}: volume {m.volume} is not mounted at "
                            f"{m.target}")
        shown["mounts"].append(entry)
    shown["cgroup"] = _cgroup(driver, plan, cstate.get("cgroup"), problems,
                              ref.pid if ref else None)
    return shown


# --- the picture as a tree -------------------------------------------------------------------

def render_tree(p):
    """The picture as text: the pod, pause and its namespaces, the network, the pod's cgroup,
    the volumes, then each container (namespaces shared or its own, root, mounts, cgroup)."""
    lines = [f"pod {p['pod']}  {p['phase']}" + (f"  uid {p['uid']}" if p.get("uid") else "")]
    pause = p["pause"]
    sections = []
    if pause["running"]:
        ns = "  ".join(f"{k} {v['inode']}" + (" (host)" if v["sharing"] == "host" else "")
                       for k, v in pause["namespaces"].items())
        sections.append((f"pause  pid {pause['pid']}", [f"namespaces  {ns}"]))
    else:
        sections.append(("pause  not running (the sandbox is down)", []))
    net = p.get("network")
    if net:
        kernel = net.get("kernel", {})
        plugged = "on" if net["hostVeth"] in (kernel.get("bridgePorts") or []) else "NOT on"
        sections.append((f"network  {net['podVeth']} {net['podIP']}/{net['prefixLength']} "
                         f"<-> {net['hostVeth']} {plugged} bridge {net['bridge']} "
                         f"(gateway {net['gateway']})",
                         [f"netns {net['netns']} (inode {kernel.get('netnsInode')}); "
                          f"addresses in it: {', '.join(kernel.get('podAddresses') or []) or 'none'}"]))
    else:
        sections.append(("network  none (loopback only) or the host's", []))
    if p.get("cgroup"):
        sections.append((f"cgroup  {p['cgroup']['path']}", _cgroup_lines(p["cgroup"])))
    if p["volumes"]:
        sections.append(("volumes", [
            f"{v['name']}  {v['kind']}  {v['source']}"
            + (f"  sizeLimit {v['sizeLimit']}" if v.get("sizeLimit") else "")
            + (f"  [{v['mount']['fstype']} {v['mount']['options']}]" if v.get("mount") else "")
            for v in p["volumes"]]))
    for c in p["containers"]:
        sections.append(_container_section(c))
    for i, (head, body) in enumerate(sections):
        last = i == len(sections) - 1
        lines.append(("└─ " if last else "├─ ") + head)
        lines += [("   " if last else "│  ") + "   " + line for line in body]
    for problem in p["problems"]:
        lines.append(f"! {problem}")
    return "\n".join(_printable(line) for line in lines) + "\n"


def _container_section(c):
    state = c["status"] + (f" ({c['detail']})" if c["detail"] else "")
    head = f"container {c['name']}  [{c['kind']}]  {state}"
    if c["pid"]:
        head += f"  pid {c['pid']}"
    if c["restartCount"]:
        head += f"  restarts {c['restartCount']}"
    body = []
    if c["namespaces"]:
        shared = [f"{k} {v['inode']}" for k, v in c["namespaces"].items() if v["sharing"] == "pod"]
        own = [f"{k} {v['inode']}" for k, v in c["namespaces"].items() if v["sharing"] == "own"]
        hosts = [f"{k} {v['inode']}" for k, v in c["namespaces"].items() if v["sharing"] == "host"]
        body.append("shares with pause  " + ("  ".join(shared) or "nothing"))
        body.append("its own            " + ("  ".join(own) or "nothing"))
        if hosts:
            body.append("the host's         " + "  ".join(hosts))
    root = c.get("root")
    if root:
        layers = "  ".join(f"{k}={root[k]}" for k in ("lowerdir", "upperdir") if k in root)
        body.append(f"root  {root['fstype']}" + (f"  image {root['image']}" if root["image"]
                                                else "  over the host's /")
                    + (f"  {layers}" if layers else ""))
    for m in c["mounts"]:
        kernel = m["kernel"]
        where = f"[{kernel['fstype']} {'ro' if kernel['readOnly'] else 'rw'}]" if kernel \
            else "[not mounted]" if c["pid"] else ""
        sub = f" subPath {m['subPath']}" if m["subPath"] else ""
        body.append(f"mount {m['target']} <- volume {m['volume']}{sub} ({m['source']}) {where}")
    if c.get("cgroup"):
        body.append(f"cgroup {c['cgroup']['path']}")
        body += ["  " + line for line in _cgroup_lines(c["cgroup"])]
    return head, body


def _cgroup_lines(cg):
    lines = []
    if cg.get("limits"):
        lines.append("  ".join(f"{k} {v}" for k, v in cg["limits"].items()))
    if cg.get("memoryUsage") is not None:
        lines.append(f"memory in use {cg['memoryUsage']} bytes")
    return lines


def _printable(text):
    """What a container named (a mount point, a path) may hold a terminal's escapes."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
