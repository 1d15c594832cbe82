"""ConfigMaps, Secrets and PersistentVolumeClaims given beside the pods (the same file(s)).

Sources is what a pod's configMap/secret volumes, env[].valueFrom and envFrom read: the
kubelet reads them from the API server; nspod from the documents next to the pod. Pure.
"""
import base64
import binascii
import re
from dataclasses import dataclass, field

from nsPod.manifest.check import key_text
from nsPod.manifest.syntax import q

SOURCE_KINDS = ("ConfigMap", "Secret", "PersistentVolumeClaim")
# Kubernetes' IsConfigMapKey: what a data key may be (it becomes a file name).
_KEY = re.compile(r"[-._a-zA-Z0-9]+")


@dataclass(frozen=True)
class Sources:
    configmaps: dict = field(default_factory=dict)   # name -> {key: bytes}
    secrets: dict = field(default_factory=dict)      # name -> {key: bytes}
    claims: frozenset = frozenset()                  # PVC names declared in the file(s)


def key_problem(key):
    """Kubernetes' IsConfigMapKey."""
    if not key:
        return "must not be empty"
    if len(key) > 253:
        return "must be no more than 253 characters"
    if not _KEY.fullmatch(key):
        return "must consist of alphanumerics, '-', '_' or '.'"
    if key in (".", "..") or key.startswith(".."):
        return "must not be '.' or '..' nor start with '..'"
    return ""


def read_source(document, report):
    """(kind, name, data) of a ConfigMap/Secret/PVC document; data {key: bytes} (None for a
    PVC); problems noted in `report`, None when it is unusable."""
    kind = document.get("kind")
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        report.error("metadata.name", f"a {kind} needs a name")
        return None
    if kind == "PersistentVolumeClaim":
        return kind, name, None
    data = {}
    fields = [("data", kind == "Secret"), ("binaryData", True)]
    if kind == "Secret":
        fields.append(("stringData", False))
    for key_field, encoded in fields:
        values = document.get(key_field)
        if values is None:
            continue
        if not isinstance(values, dict):
            report.error(key_field, "must be a mapping of key: value")
            continue
        for key, value in values.items():
            where = f"{key_field}[{key_text(key)}]"
            problem = key_problem(key) if isinstance(key, str) else "must be text"
            if problem:
                report.error(where, f"key {q(key)}: {problem}")
                continue
            if not isinstance(value, str):
                report.error(where, "must be text")
                continue
            if encoded:
                try:
                    data[key] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    report.error(where, "is not valid base64")
                    continue
            else:
                if key in data and key_field == "binaryData":
                    report.error(where, f"key {q(key)} is also in data")
                data[key] = value.encode()   # stringData wins over data, as the API server has it
    return kind, name, data


def add_source(sources, kind, name, data, report):
    """Sources with one more document; a name given twice is an error."""
    if kind == "PersistentVolumeClaim":
        return Sources(sources.configmaps, sources.secrets, sources.claims | {name})
    table = sources.configmaps if kind == "ConfigMap" else sources.secrets
    if name in table:
        report.error("metadata.name", f"{kind} {q(name)} is given twice")
        return sources
    table = {**table, name: data}
    if kind == "ConfigMap":
        return Sources(table, sources.secrets, sources.claims)
    return Sources(sources.configmaps, table, sources.claims)


def missing_problem(sources, kind, name, key, optional):
    """Why a reference cannot be met ("" when it can, or when it is optional)."""
    if optional:
        return ""
    table = sources.configmaps if kind == "configMap" else sources.secrets
    label = "ConfigMap" if kind == "configMap" else "Secret"
    if name not in table:
        return (f"{label} {q(name)} is not in the file(s) "
                f"(give it beside the pod, or set optional: true)")
    if key is not None and key not in table[name]:
        return f"{label} {q(name)} has no key {q(key)}"
    return ""


def lookup(sources, kind, name):
    """{key: bytes} of a ConfigMap/Secret, or None."""
    return (sources.configmaps if kind == "configMap" else sources.secrets).get(name)
