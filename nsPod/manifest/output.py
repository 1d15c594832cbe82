"""A stored manifest as YAML for `nspod generate`."""
from nsPod.manifest.schema import METADATA


def clean_manifest(manifest):
    """A stored manifest as `kubectl apply` takes it (for `nspod generate`): apiVersion and kind
    first, no status, and none of the metadata nspod ignores (uid, ownerReferences...)."""
    ignored = {key for key, rule in METADATA.items() if rule is not None}
    metadata = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in ignored}
    rest = {k: v for k, v in manifest.items()
            if k not in ("apiVersion", "kind", "metadata", "status")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, **rest}
