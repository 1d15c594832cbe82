"""Rules for spec.volumes: emptyDir, hostPath, configMap, secret, downwardAPI, projected and
persistentVolumeClaim, as Kubernetes' validation has them."""
from nsPod.manifest.model import KeyToPath, Projection, Volume
from nsPod.manifest.schema import (
    CLAIM_VOLUME, CONFIG_MAP_VOLUME, DOWNWARD_FILE, DOWNWARD_VOLUME, EMPTY_DIR, HOST_PATH,
    HOST_PATH_TYPES, KEY_TO_PATH, PROJECTED_DOWNWARD, PROJECTED_REF, PROJECTED_VOLUME,
    PROJECTION, SECRET_VOLUME, VOLUME)
from nsPod.manifest.sources import key_problem
from nsPod.manifest.syntax import absolute_path_problem, dns_label_problem, dns_subdomain_problem, q


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
        elif sources[0] in FILE_VOLUMES:
            volume = validate_file_volume(sources[0], v[sources[0]], f"{where}.{sources[0]}",
                                          name, ctx)
        elif sources[0] == "persistentVolumeClaim":
            volume = validate_claim(v["persistentVolumeClaim"],
                                    f"{where}.persistentVolumeClaim", name, ctx)
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


FILE_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
MODE_MAX = 0o777
PATH_DEPTH_MAX = 64   # nspod's bound (Kubernetes has none): the files are written and removed
                      # by walks that nest a call per level


def validate_file_volume(kind, value, path, name, ctx):
    """configMap, secret, downwardAPI or projected: a Volume with its projections."""
    note = ctx.report
    schema = {"configMap": CONFIG_MAP_VOLUME, "secret": SECRET_VOLUME,
              "downwardAPI": DOWNWARD_VOLUME, "projected": PROJECTED_VOLUME}[kind]
    v = note.fields(value, path, schema)
    if v is None:
        return None
    default_mode = _mode(v.get("defaultMode"), f"{path}.defaultMode", ctx)
    if kind == "projected":
        projections = []
        for i, raw in enumerate(note.items(v.get("sources"), f"{path}.sources")):
            where = f"{path}.sources[{i}]"
            src = note.fields(raw, where, PROJECTION)
            if src is None:
                continue
            given = [k for k in PROJECTION if src.get(k) is not None]
            if len(given) != 1:
                note.error(where, "exactly one of configMap, secret, downwardAPI or "
                                  "serviceAccountToken is needed" +
                           (f", got {', '.join(given)}" if given else ""))
                continue
            if given[0] == "serviceAccountToken":
                note.warn(f"{where}.serviceAccountToken",
                          "skipped: there is no API server to issue a token")
                continue
            if given[0] not in ("configMap", "secret", "downwardAPI"):
                continue  # refused by fields()
            schema = PROJECTED_DOWNWARD if given[0] == "downwardAPI" else PROJECTED_REF
            projection = _projection(given[0], src[given[0]], f"{where}.{given[0]}", schema,
                                     "name", ctx)
            if projection is not None:
                projections.append(projection)
    else:
        name_key = "secretName" if kind == "secret" else "name"
        projection = _projection(kind, v, path, None, name_key, ctx)
        projections = [] if projection is None else [projection]
    seen = {}
    for p in projections:
        for item in p.items:
            if item.path in seen:
                note.error(path, f"path {q(item.path)} is given twice "
                                 f"({seen[item.path]} and {p.kind} {q(p.name)})")
            seen.setdefault(item.path, f"{p.kind} {q(p.name)}")
    # A file cannot also be a directory of another ("a" and "a/b"): the kubelet's writer fails.
    for file_path in seen:
        parts = file_path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                note.error(path, f"path {q('/'.join(parts[:i]))} is a file and the directory "
                                 f"of {q(file_path)}")
    if name is None or (default_mode is None and v.get("defaultMode") is not None):
        return None
    return Volume(name, kind, projections=tuple(projections),
                  default_mode=0o644 if default_mode is None else default_mode)


def _projection(kind, value, path, schema, name_key, ctx):
    note = ctx.report
    if schema is not None:
        value = note.fields(value, path, schema)
        if value is None:
            return None
    source_name = ""
    if kind != "downwardAPI":
        source_name = note.name(value.get(name_key), f"{path}.{name_key}",
                                dns_subdomain_problem)
    optional = bool(note.boolean(value.get("optional"), f"{path}.optional"))
    items = []
    for i, raw in enumerate(note.items(value.get("items"), f"{path}.items")):
        where = f"{path}.items[{i}]"
        item = (_downward_item(raw, where, ctx) if kind == "downwardAPI"
                else _key_item(raw, where, ctx))
        if item is not None:
            items.append(item)
    if kind != "downwardAPI" and source_name is None:
        return None
    return Projection(kind, source_name or "", tuple(items), optional)


def _key_item(raw, where, ctx):
    note = ctx.report
    item = note.fields(raw, where, KEY_TO_PATH)
    if item is None:
        return None
    key = note.string(item.get("key"), f"{where}.key", required=True)
    if key is not None and key_problem(key):
        note.error(f"{where}.key", f"{q(key)}: {key_problem(key)}")
        key = None
    file_path = _file_path(item.get("path"), f"{where}.path", ctx)
    mode = _mode(item.get("mode"), f"{where}.mode", ctx)
    if key is None or file_path is None or (mode is None and item.get("mode") is not None):
        return None
    return KeyToPath(file_path, key, mode)


def _downward_item(raw, where, ctx):
    from nsPod.manifest.rules_containers import validate_field_ref, validate_resource_ref
    note = ctx.report
    item = note.fields(raw, where, DOWNWARD_FILE)
    if item is None:
        return None
    file_path = _file_path(item.get("path"), f"{where}.path", ctx)
    mode = _mode(item.get("mode"), f"{where}.mode", ctx)
    has_field, has_resource = item.get("fieldRef") is not None, \
        item.get("resourceFieldRef") is not None
    if has_field == has_resource:
        note.error(where, "exactly one of fieldRef or resourceFieldRef is needed")
        return None
    if has_field:
        raw_ref = item["fieldRef"]
        whole = (isinstance(raw_ref, dict) and
                 raw_ref.get("fieldPath") in ("metadata.labels", "metadata.annotations"))
        if whole:  # a volume may hold every label or annotation, one per line
            var = KeyToPath("", raw_ref["fieldPath"])
        else:
            ref = validate_field_ref(raw_ref, f"{where}.fieldRef", "", ctx)
            var = None if ref is None else KeyToPath("", ref.field_path)
    else:
        ref = validate_resource_ref(item["resourceFieldRef"], f"{where}.resourceFieldRef", "",
                                    ctx)
        if ref is not None and ref.resource_container is None:
            note.error(f"{where}.resourceFieldRef.containerName",
                       "required in a downwardAPI volume")
            ref = None
        var = None if ref is None else KeyToPath(
            "", resource=ref.resource, resource_container=ref.resource_container,
            divisor=ref.divisor)
    if var is None or file_path is None or (mode is None and item.get("mode") is not None):
        return None
    return KeyToPath(file_path, var.key, mode, var.resource, var.resource_container,
                     var.divisor)


def file_path_problem(path):
    """Kubernetes' validateLocalDescendingPath, and no '..' prefix (the layout's own names)."""
    if not path:
        return "must not be empty"
    if "\0" in path:
        return "must not contain a NUL character"
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    if path.startswith(".."):
        return "must not start with '..'"
    if any(part in ("", ".") for part in path.split("/")):
        return "must not hold empty or '.' parts"
    if len(path) > 4096 or any(len(part.encode()) > 255 for part in path.split("/")):
        return "is too long"
    if path.count("/") >= PATH_DEPTH_MAX:
        return f"must be at most {PATH_DEPTH_MAX} directories deep"
    return ""


def _file_path(value, where, ctx):
    text = ctx.report.string(value, where, required=True)
    if text is None:
        return None
    problem = file_path_problem(text)
    if problem:
        ctx.report.error(where, f"{q(text)}: {problem}")
        return None
    return text


def _mode(value, where, ctx):
    """A file mode 0..0777 (YAML's 0644 is octal; JSON writers give decimal 420)."""
    return ctx.report.integer(value, where, minimum=0, maximum=MODE_MAX)


def validate_claim(value, path, name, ctx):
    note = ctx.report
    c = note.fields(value, path, CLAIM_VOLUME)
    if c is None:
        return None
    claim = note.name(c.get("claimName"), f"{path}.claimName", dns_subdomain_problem)
    read_only = bool(note.boolean(c.get("readOnly"), f"{path}.readOnly"))
    if claim is None or name is None:
        return None
    return Volume(name, "persistentVolumeClaim", claim_name=claim, read_only=read_only)
