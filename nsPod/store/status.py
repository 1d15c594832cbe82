"""A pod as Kubernetes shows it: the Pod object with a PodStatus filled as the kubelet fills it.

Input is what is on disk (pod.json, state.json as store/podstate.py's PodState), checked
against the kernel first: a pid is believed only with its start time, and a pod whose monitor
is gone is Unknown, not Running.
"""
import os

from nsPod.store.podstate import Condition, ContainerState, ContainerStatus, PodState
from nsPod.store.state import TERMINAL_PHASES, ProcessRef

STATUS_KEYS = ("state", "lastState", "restartCount", "ready", "started")


def refresh(pod_dir, pod_state, monitor_alive=None):
    """Correct a state file that the kernel contradicts (the monitor died without a word).
    monitor_alive: what the caller found of the pod's monitor.lock (listing.scan_pods), else
    None and it is looked at here."""
    if pod_state is None:
        return PodState(phase="Pending", containers={}, reason="Creating")
    if monitor_alive is None and pod_state.phase not in TERMINAL_PHASES:
        monitor_alive = pod_dir.monitor_alive()
    if checked_phase(pod_state.phase, monitor_alive) == "Unknown":
        pod_state.phase = "Unknown"
        pod_state.reason = "MonitorGone"
        pod_state.message = ("the pod's monitor process is gone; "
                             "`nspod gc` removes what it left, `nspod rm -f` the pod")
    for cstate in pod_state.get("containers", {}).values():
        if cstate.has("pid") and not ProcessRef(cstate.pid, cstate.get("pidStartTime")).alive():
            cstate.drop("pid")
    return pod_state


def checked_phase(phase, monitor_alive):
    """The phase the pod is in: a pod not ended whose monitor is gone is Unknown."""
    return phase if phase in TERMINAL_PHASES or monitor_alive else "Unknown"


def pod_row(doc, data, monitor_alive):
    """What `ps`'s table shows of a pod, from pod.json and state.json as read (no records,
    no kernel look at pids): the pod_object() fields pods_table reads, nothing else. None
    when state.json is not of the shape pod_object() takes (the caller then goes that way,
    which refuses it)."""
    plan = doc.get("plan") if isinstance(doc, dict) else None
    if not isinstance(plan, dict) or not isinstance(plan.get("containers"), list):
        return None
    if data is None:
        phase, recorded, status = "Pending", {}, {}
    else:
        recorded = data.get("containers") or {}
        if not isinstance(recorded, dict) or not isinstance(data.get("phase"), str):
            return None
        phase, status = checked_phase(data["phase"], monitor_alive), data
    statuses = []
    for c in plan["containers"]:
        cstate = recorded.get(c.get("name")) if isinstance(c, dict) else None
        if not isinstance(cstate, (dict, type(None))):
            return None
        cstate = cstate or {}
        statuses.append({"ready": cstate.get("ready", False),
                         "restartCount": cstate.get("restartCount", 0)})
    row = {"phase": phase, "containerStatuses": statuses, "startTime": status.get("startTime")}
    if status.get("podIP"):
        row["podIP"] = status["podIP"]
    return {"metadata": {"name": plan.get("name")}, "status": row}


def container_status(name, cstate):
    status = {"name": name, "image": "", "imageID": "", "containerID": ""}
    recorded = cstate.to_json()
    for key in STATUS_KEYS:
        if key in recorded:
            status[key] = recorded[key]
    status.setdefault("lastState", {})
    return status


CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def conditions(pod_state):
    """The pod's conditions as the monitor last set them, in Kubernetes' order."""
    start = pod_state.get("startTime")
    recorded = pod_state.conditions or {}
    out = []
    for kind in CONDITIONS:
        c = recorded.get(kind) or Condition(status=kind == "PodScheduled")
        if pod_state.get("phase") == "Unknown" and kind in ("ContainersReady", "Ready"):
            c = Condition(status=False, reason="MonitorGone")
        cond = {"type": kind, "status": "True" if c.status else "False",
                "lastProbeTime": None,
                "lastTransitionTime": c.get("lastTransitionTime") or start}
        for key in ("reason", "message"):
            if c.get(key):
                cond[key] = c.get(key)
        out.append(cond)
    return out


def pod_object(pod_dir, doc, pod_state, host_ip=""):
    """The Kubernetes Pod (apiVersion, kind, metadata, spec, status) plus nspod's `runtime`."""
    manifest = doc["manifest"]
    plan = doc["plan"]
    metadata = dict(manifest.get("metadata", {}))
    metadata["name"] = plan["name"]
    metadata["namespace"] = plan["namespace"]
    metadata["uid"] = plan["uid"]
    metadata["creationTimestamp"] = doc.get("created")
    containers = pod_state.get("containers", {})
    nothing = ContainerStatus(state=ContainerState())
    app_names = [c["name"] for c in plan["containers"]]
    init_names = [c["name"] for c in plan["init_containers"]]
    status = {
        "phase": pod_state.phase,
        "conditions": conditions(pod_state),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "qosClass": plan.get("qos_class", "BestEffort"),
        "startTime": pod_state.get("startTime"),
        "containerStatuses": [container_status(n, containers.get(n, nothing))
                              for n in app_names],
    }
    pod_ip = pod_state.get("podIP")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_names:
        status["initContainerStatuses"] = [container_status(n, containers.get(n, nothing))
                                           for n in init_names]
    for key in ("reason", "message"):
        if pod_state.get(key):
            status[key] = pod_state.get(key)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": manifest.get("spec", {}),
        "status": status,
        "runtime": runtime(pod_dir, pod_state, plan),
    }


def runtime(pod_dir, pod_state, plan):
    pause = pod_state.pause
    data = {
        "stateDir": pod_dir.path,
        "namespaces": pod_state.get("namespaces", {}) if pause else {},
        "containers": {},
    }
    if pause and pause.pid and pause.ref().alive():
        data["pausePid"] = pause.pid
    if pod_state.cgroup:
        data["cgroup"] = pod_state.cgroup
    if pod_state.network:
        data["network"] = pod_state.network.to_json()
    for c in plan["init_containers"] + plan["containers"]:
        cstate = pod_state.container(c["name"])
        entry = {}
        if cstate.has("pid"):
            entry["pid"] = cstate.pid
            entry["namespaces"] = cstate.get("namespaces", {})
        if cstate.cgroup:
            entry["cgroup"] = cstate.cgroup
        if cstate.log:
            entry["log"] = os.path.join(pod_dir.path, cstate.log)
        data["containers"][c["name"]] = entry
    return data
