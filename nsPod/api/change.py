"""Changes to a running pod, made by its monitor: add a container, restart one, apply a
changed manifest. The CLI checks and plans; the monitor's control socket does the rest.
"""
import json

from nsPod.api import control
from nsPod.errors import InputError, NspodError
from nsPod.api.query import _enter, _existing, host_facts, load, pick_container


def add(config, pod_name, container_dict, init=False):
    """Add a container to a running pod and start it; returns warnings."""
    from nsPod.manifest import spec
    from nsPod.plan.make import container_plan
    _enter(config, [pod_name], [container_dict.get("name") if isinstance(container_dict, dict)
                                else None])
    pod_dir = _existing(config, pod_name)
    doc = pod_dir.read_pod()
    pod, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    index = len(pod.init_containers if init else pod.containers)
    section = "initContainers" if init else "containers"
    path = f"spec.{section}[{index}]"
    container, warnings = spec.container_from_dict(container_dict, path, init=init, pod=pod)
    manifest = json.loads(json.dumps(doc["manifest"]))
    manifest.setdefault("spec", {}).setdefault(section, []).append(container_dict)
    pod, _ = spec.pod_from_dict(manifest, allow_no_containers=True)
    from nsPod.plan.make import PodPlan
    plan = PodPlan.from_json(doc["plan"])
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    cplan = container_plan(container, pod, plan.volumes, facts, plan.etc_files)
    # An init container's answer comes when it has run to completion: no timeout for that.
    reply = control.request(pod_dir, {"op": "add", "container": _asdict(cplan), "manifest": manifest},
                     timeout=None if init else 30.0)
    if init and not reply.get("ok"):
        raise NspodError(f"init container {container.name} of pod {pod_name} failed: "
                         f"{reply.get('reason')} (exit code {reply.get('exitCode')})")
    return warnings + reply.get("warnings", [])


def _asdict(obj):
    return obj.to_json()


def restart(config, pod_name, container_name):
    """Restart one container in place; the pod's other containers, IP and volumes stay."""
    _enter(config, [pod_name], [container_name])
    pod_dir, doc, _ = load(config, pod_name)
    name = pick_container(doc, pod_name, container_name)["name"]
    control.request(pod_dir, {"op": "restart", "container": name}, timeout=_answer_timeout(doc))
    return name


def _answer_timeout(doc):
    """Under --trace, restart and apply are answered once the containers have started
    again: after their grace period at worst."""
    from nsPod.kernel import tracing
    if not tracing.enabled():
        return 30.0
    return min(doc["plan"].get("grace_seconds", 30), 2**31) + 60


# Pod fields a running pod may change (Kubernetes lets little else change in place).
MUTABLE_POD_FIELDS = {"containers", "manifest", "labels", "annotations", "sources"}


def apply(config, pod):
    """Make a running pod match `pod`: restart exactly the containers whose spec changed.

    Returns [(container, [changed fields])]. Changes Kubernetes forbids on a live pod
    (volumes, other pod fields, adding or removing containers, init containers) are refused.
    """
    import dataclasses
    from nsPod.manifest import spec
    from nsPod.plan.make import PodPlan, container_plan
    _enter(config, [pod.name])
    pod_dir = _existing(config, pod.name)
    doc = pod_dir.read_pod()
    old, _ = spec.pod_from_dict(doc["manifest"], allow_no_containers=True)
    for f in dataclasses.fields(old):
        if f.name in MUTABLE_POD_FIELDS:
            continue
        if getattr(old, f.name) != getattr(pod, f.name):
            field_name = {"init_containers": "initContainers"}.get(f.name, _camel(f.name))
            raise InputError(f"spec.{field_name}: may not be changed on a running pod "
                             "(Kubernetes forbids it; delete and run the pod again)")
    old_names = [c.name for c in old.containers]
    new_names = [c.name for c in pod.containers]
    if old_names != new_names:
        raise InputError(f"spec.containers: may not add, remove or reorder containers of a "
                         f"running pod (it has {', '.join(old_names) or 'none'}; the file has "
                         f"{', '.join(new_names) or 'none'})")
    plan = PodPlan.from_json(doc["plan"])
    facts = host_facts(config, pod_dir, plan.uid, plan.network.get("ip", ""))
    changes, plans = [], []
    for before, after in zip(old.containers, pod.containers):
        fields = [_camel(f.name) for f in dataclasses.fields(after)
                  if getattr(before, f.name) != getattr(after, f.name)]
        if fields:
            changes.append((after.name, fields))
            plans.append(_asdict(container_plan(after, pod, plan.volumes, facts, plan.etc_files)))
    if plans or pod.manifest != doc["manifest"]:
        control.request(pod_dir, {"op": "apply", "containers": plans, "manifest": pod.manifest},
                        timeout=_answer_timeout(doc))
    return changes


def apply_from_file(config, pod, file):
    """`nspod apply FILE` for one of its pods: (apply's changes, the configMap/secret/projected
    volumes refreshed by the ..data swap). A workload's pods are refused: a controller
    replaces its pods, never edits them."""
    from nsPod.api import volumes
    from nsPod.manifest.workloads import OWNER_ANNOTATION
    if OWNER_ANNOTATION in pod.annotations:
        raise InputError(f"FILE: {file} makes pods of {pod.annotations[OWNER_ANNOTATION]}; "
                         "a workload's pods are replaced, not changed: nspod delete -f, "
                         "then nspod run")
    return apply(config, pod), volumes.refresh_files(config, pod)


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)
