"""What the CLI prints, as plain text: tables, ages, sizes. No click, no I/O: cli.py echoes
the strings these return, and they are unit-tested as they are.
"""
import json
import time

from nsPod.manifest.quantity import format_bytes


class Progress:
    """A pull's progress callback: bytes per layer as one line rewritten in place (at most
    every 0.1 s, and each layer's last), handed to `write` (cli.py echoes it to stderr)."""

    def __init__(self, write):
        self.write, self.last = write, None

    def __call__(self, digest, done, total):
        line = f"{digest[7:19]}: {size(done)}" + (f" / {size(total)}" if total else "")
        if done == total or self.last is None or time.monotonic() - self.last > 0.1:
            self.last = time.monotonic()
            self.write(f"\r{line}\033[K" + ("\n" if done == total else ""))


def table(rows):
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in rows)


def _fields(stamp):
    """The time tuple of YYYY-MM-DDTHH:MM:SSZ. What nspod writes is read by slicing (strptime
    costs ~0.1 ms, and `ps` reads one stamp a pod); anything else, and days past the 28th
    (which strptime checks against the month), goes through strptime."""
    if (len(stamp) == 20 and stamp[4] == stamp[7] == "-" and stamp[10] == "T"
            and stamp[13] == stamp[16] == ":" and stamp[19] == "Z"):
        digits = (stamp[0:4], stamp[5:7], stamp[8:10], stamp[11:13], stamp[14:16], stamp[17:19])
        if all(d.isdigit() and d.isascii() for d in digits):
            year, month, day, hour, minute, second = (int(d) for d in digits)
            if 1 <= month <= 12 and 1 <= day <= 28 and hour <= 23 and minute <= 59 \
                    and second <= 61:
                return (year, month, day, hour, minute, second, 0, 0, 0)
    return time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


def age(rfc3339):
    """How long ago an RFC 3339 UTC stamp was, kubectl's way: 42s, 5m, 3h, 2d; "-" if none."""
    if not rfc3339:
        return "-"
    try:
        import calendar  # only here: `ps` and `image ls` pay for it, no other command
        # The stamp is UTC: timegm, not mktime (local time, an hour off across DST).
        then = calendar.timegm(_fields(rfc3339))
    except (ValueError, TypeError):
        return "-"
    seconds = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def size(value):
    """A byte count in a table: readable, "-" for none."""
    return "-" if value is None else format_bytes(value, readable=True)


def ns_inode(ns_id):
    """'net:[4026531992]' -> '4026531992'; "-" for none."""
    if not ns_id:
        return "-"
    return ns_id[ns_id.index("[") + 1:-1]


def failed_containers(st):
    """Why a Failed pod failed, from its containers' last states (`run --wait`)."""
    parts = []
    for c in st.get("containerStatuses", []):
        t = c.get("state", {}).get("terminated")
        if t and t.get("exitCode"):
            parts.append(f"container {c['name']} {t.get('reason')} (exit code {t['exitCode']})"
                         + (f": {t['message']}" if t.get("message") else ""))
    return "; ".join(parts) or "see nspod inspect"


def pods(items, output):
    """`nspod ps -o table|json|yaml`: the pods as a table, or as a Kubernetes List."""
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2)
    if output == "yaml":
        from nsPod.manifest import spec
        return spec.dump_yaml({"apiVersion": "v1", "kind": "List", "items": items})
    return pods_table(items)


def pods_table(items):
    """`nspod ps`: one row a pod, from list_pods' Kubernetes objects."""
    rows = [("NAME", "PHASE", "READY", "RESTARTS", "IP", "AGE")]
    for item in items:
        st = item["status"]
        statuses = st.get("containerStatuses", [])
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(c.get("restartCount", 0) for c in statuses)
        rows.append((item["metadata"]["name"], st["phase"], f"{ready}/{len(statuses)}",
                     str(restarts), st.get("podIP", "-"), age(st.get("startTime"))))
    return table(rows)


def namespaces_table(entries):
    """`nspod ns`: (who, pid, {kind: 'kind:[inode]'}) -> a row of inode numbers each."""
    from nsPod.kernel import namespaces
    rows = [("WHO", "PID") + tuple(k.upper() for k in namespaces.KINDS)]
    for who, pid, ids in entries:
        rows.append((who, str(pid)) + tuple(ns_inode(ids.get(k)) for k in namespaces.KINDS))
    return table(rows)


def stats_table(entries):
    """`nspod stats`: (who, the cgroup driver's stats) -> memory, pids and CPU columns."""
    rows = [("CONTAINER", "MEM USAGE", "LIMIT", "MEM %", "PEAK", "OOM KILLS", "PIDS", "CPU SECONDS")]
    for who, st in entries:
        mem, pids, cpu = st["memory"], st["pids"], st["cpu"]
        usage, limit = mem.get("usage"), mem.get("limit")
        percent = f"{100 * usage / limit:.1f}%" if usage is not None and limit else "-"
        rows.append((who, size(usage), size(limit) if limit else "max", percent,
                     size(mem.get("peak")), str(mem.get("oomKills", 0)),
                     "-" if pids.get("current") is None else str(pids["current"]),
                     "-" if cpu.get("usageUsec") is None else f"{cpu['usageUsec'] / 1e6:.2f}"))
    return table(rows)


def top_table(entries):
    """`nspod top`: (who, pid, user, command) rows."""
    rows = [("CONTAINER", "PID", "USER", "COMMAND")]
    for who, pid, user, cmd in entries:
        rows.append((who, str(pid), user, cmd))
    return table(rows)


def images(items, output):
    """`nspod image ls -o table|json`."""
    return json.dumps(items, indent=2) if output == "json" else images_table(items)


def images_table(items):
    """`nspod image ls`: name, digest (of a pulled image), format, size, age and command of
    each stored image."""
    rows = [("NAME", "DIGEST", "FORMAT", "SIZE", "CREATED", "COMMAND")]
    for item in items:
        command = (item.get("entrypoint") or []) + (item.get("cmd") or [])
        digest = item.get("digest") or "-"
        rows.append((item["name"], digest[:19], item.get("format", "-"), size(item.get("size")),
                     age(item.get("created")), " ".join(command) or "-"))
    return table(rows)


def applied(pod_name, changes, refreshed=()):
    """`nspod apply`: a line per updated ConfigMap/Secret volume and per restarted container,
    or that the pod is unchanged."""
    if not changes and not refreshed:
        return f"pod {pod_name}: unchanged"
    return "\n".join([f"pod {pod_name}: volume {name} updated" for name in refreshed] +
                     [f"pod {pod_name}: container {name} restarted ({', '.join(fields)} changed)"
                      for name, fields in changes])


def volumes(items, output):
    """`nspod volume ls -o table|json`: name, size and the pods using each claim's volume."""
    if output == "json":
        return json.dumps(items, indent=2)
    return table([("NAME", "SIZE", "PODS")] + [
        (i["name"], size(i["size"]), ",".join(i["pods"]) or "-") for i in items])


def validated(pods):
    """`nspod validate`: ok, how many pods, and their names."""
    return (f"ok: {len(pods)} pod{'s' if len(pods) != 1 else ''} "
            f"({', '.join(p.name for p in pods)})")
