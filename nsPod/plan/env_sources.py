"""The environment from ConfigMaps and Secrets (env[].valueFrom.*KeyRef, envFrom), as the
kubelet makes it, from Pod.sources (the documents given beside the pod). Pure; a reference
the manifest checks could not see fails here as an InputError naming the field."""
from nsPod.errors import InputError


def env_from_sources(container, pod, where):
    """The variables of envFrom, then of env[].valueFrom.*KeyRef: {name: value} for envFrom
    (in order; a later source wins), and a function giving one env var's value. Keys that are
    not valid variable names are skipped, as the kubelet skips them (with a warning)."""
    from nsPod.manifest.sources import lookup
    from nsPod.manifest.syntax import env_name_problem
    out, skipped = {}, []
    for i, e in enumerate(container.env_from):
        data = lookup(pod.sources, e.kind, e.name)
        label = "ConfigMap" if e.kind == "configMap" else "Secret"
        if data is None:
            if e.optional:
                continue
            raise InputError(f"{where}.envFrom[{i}].{e.kind}Ref: {label} {e.name!r} is not "
                             "in the file(s)")
        for key, value in data.items():
            name = e.prefix + key
            if env_name_problem(name):
                skipped.append(name)
                continue
            out[name] = _text(value)
    return out, skipped


def key_ref_value(var, pod, where):
    """An env var's value from a ConfigMap or Secret key; None when optional and missing."""
    from nsPod.manifest.sources import lookup
    data = lookup(pod.sources, var.source_kind, var.source_name)
    label = "ConfigMap" if var.source_kind == "configMap" else "Secret"
    if data is None or var.key not in data:
        if var.optional:
            return None
        what = (f"{label} {var.source_name!r} is not in the file(s)" if data is None
                else f"{label} {var.source_name!r} has no key {var.key!r}")
        raise InputError(f"{where}.valueFrom.{var.source_kind}KeyRef: {what}")
    return _text(data[var.key])


def _text(value):
    # An environment string cannot hold NUL; any other byte goes through as it is.
    text = value.decode("utf-8", "surrogateescape")
    return text.replace("\0", "")
