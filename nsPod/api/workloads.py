"""The pods a manifest file made, found again for `nspod delete -f FILE`: its Pods by name,
the pods of its workloads (Deployment, Job, ...) by the owner annotation they were made
with (manifest/workloads.py OWNER_ANNOTATION) and their namespace."""
from nsPod.api.query import _enter, list_pods
from nsPod.errors import NspodError
from nsPod.manifest.workloads import OWNER_ANNOTATION


def made_by_file(config, file):
    """The names of the pods here that FILE (read as `run` reads it) made; NspodError when
    there is none."""
    from nsPod.api.manifests import read_manifest
    from nsPod.manifest import spec
    names = made_by(config, *spec.load_owners(*read_manifest(file)))
    if not names:
        raise NspodError(f"no pod made from {file} is here")
    return names


def made_by(config, pod_names, owners):
    """The names of the pods here that the file's Pods and workloads made, sorted."""
    _enter(config)
    found = set()
    for item in list_pods(config, include_all=True):
        meta = item.get("metadata") or {}
        owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION)
        if meta.get("name") in pod_names or (meta.get("namespace"), owner) in owners:
            found.add(meta["name"])
    return sorted(found)
