"""Rules for spec.volumes: emptyDir and hostPath."""
from nsPod.manifest.model import Volume
from nsPod.manifest.schema import EMPTY_DIR, HOST_PATH, HOST_PATH_TYPES, VOLUME
from nsPod.manifest.syntax import absolute_path_problem, dns_label_problem, q


def validate_volumes(value, path, ctx):
    note = ctx.report
    out, first = [], {}
    for i, raw in enumerate(note.items(value, path)):
        where = f"{path}[{i}]"
        v = note.fields(raw, where, VOLUME, "volume")
        if v is None:
            continue
        name = note.name(v.get("name"), f"{where}.name", dns_label_problem)
        if name is not None:
            if name in first:
                note.error(f"{where}.name", f"{q(name)} is already the name of {first[name]}")
            first.setdefault(name, where)
        if "emptyDir" in v and v["emptyDir"] is None:
            note.error(f"{where}.emptyDir",
                       "is null; write emptyDir: {} for a default emptyDir")
            continue
        sources = [k for k in VOLUME if k != "name" and v.get(k) is not None]
        if len(sources) > 1:
            note.error(where, f"exactly one volume source is allowed, got {', '.join(sources)}")
            continue
        if not sources:
            note.error(where, "exactly one volume source is needed (emptyDir or hostPath)")
            continue
        if sources[0] == "emptyDir":
            volume = validate_empty_dir(v["emptyDir"], f"{where}.emptyDir", name, ctx)
        elif sources[0] == "hostPath":
            volume = validate_host_path(v["hostPath"], f"{where}.hostPath", name, ctx)
        else:
            continue  # an unsupported type: fields() reported it
        if volume is not None and name is not None:
            out.append(volume)
    return tuple(out)


def validate_empty_dir(value, path, name, ctx):
    note = ctx.report
    e = note.fields(value, path, EMPTY_DIR)
    if e is None:
        return None
    medium = note.string(e.get("medium"), f"{path}.medium") or ""
    if medium.startswith("HugePages"):
        note.error(f"{path}.medium", f"{q(medium)} is not supported (use \"\" or Memory)")
        return None
    if medium not in ("", "Memory"):
        note.error(f"{path}.medium",
                   f'{q(medium)} is not a medium (use "" for disk or Memory for tmpfs)')
        return None
    size = None
    if e.get("sizeLimit") is not None:
        size = note.quantity(e["sizeLimit"], f"{path}.sizeLimit", "memory")
        if size is None:
            return None
        if size == 0:
            # tmpfs reads size=0 as "no limit": the opposite of what was asked.
            note.error(f"{path}.sizeLimit", "must be greater than 0")
            return None
    return Volume(name, "emptyDir", medium=medium, size_limit=size)


def validate_host_path(value, path, name, ctx):
    note = ctx.report
    h = note.fields(value, path, HOST_PATH)
    if h is None:
        return None
    where = note.string(h.get("path"), f"{path}.path", required=True)
    if where is not None:
        problem = absolute_path_problem(where)
        if problem:
            note.error(f"{path}.path", f"{q(where)}: {problem}")
            where = None
    kind = note.choice(h.get("type"), f"{path}.type", HOST_PATH_TYPES)
    if where is None or (kind is None and h.get("type") is not None):
        return None
    return Volume(name, "hostPath", host_path=where, host_path_type=kind or "")
