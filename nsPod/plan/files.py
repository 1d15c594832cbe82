"""The files of configMap, secret, downwardAPI and projected volumes, as the kubelet makes
them (the environment from ConfigMaps and Secrets: env_sources.py).

Pure: the values come from Pod.sources (the documents given beside the pod). A reference the
manifest checks could not see (a pod built from a dict) fails here, as an InputError naming
the field: the kubelet's CreateContainerConfigError, before anything is made.
"""
import base64

from nsPod.errors import InputError


def volume_files(volume, pod, facts):
    """[[path, base64 content, mode]] of a file volume, sorted by path."""
    from nsPod.manifest.sources import lookup
    from nsPod.plan.containers import field_value, resource_value
    files = {}
    for p in volume.projections:
        where = f"volume {volume.name}: {p.kind} {p.name}".rstrip()
        if p.kind == "downwardAPI":
            for item in p.items:
                if item.resource:
                    target = pod.container(item.resource_container)
                    if target is None:
                        raise InputError(f"{where}: {item.path}: no container "
                                         f"{item.resource_container!r}")
                    text = resource_value(item.resource, item.divisor, target, facts)
                elif item.key in ("metadata.labels", "metadata.annotations"):
                    values = pod.labels if item.key == "metadata.labels" else pod.annotations
                    text = "\n".join(f"{k}={_quote(v)}" for k, v in sorted(values.items()))
                else:
                    text = field_value(item.key, pod, facts)
                files[item.path] = [text.encode(), _mode(item.mode, volume)]
            continue
        data = lookup(pod.sources, p.kind, p.name)
        label = "ConfigMap" if p.kind == "configMap" else "Secret"
        if data is None:
            if p.optional:
                continue
            raise InputError(f"{where}: {label} {p.name!r} is not in the file(s)")
        if not p.items:
            for key, value in data.items():
                files[key] = [value, volume.default_mode]
        for item in p.items:
            if item.key not in data:
                if p.optional:
                    continue
                raise InputError(f"{where}: {label} {p.name!r} has no key {item.key!r}")
            files[item.path] = [data[item.key], _mode(item.mode, volume)]
    for path in files:   # keys of whole ConfigMaps/Secrets meet items' directories only now
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise InputError(f"volume {volume.name}: {'/'.join(parts[:i])!r} is a file and "
                                 f"the directory of {path!r}")
    return [[path, base64.b64encode(content).decode(), mode]
            for path, (content, mode) in sorted(files.items())]


def _mode(mode, volume):
    return volume.default_mode if mode is None else mode


def _quote(value):
    """Go's %q, as the kubelet writes labels and annotations (one key="value" a line)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
