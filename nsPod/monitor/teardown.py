"""Undoing what a pod's sandbox made, from its state: shared by the monitor's teardown and by
`nspod rm`/`gc` after a monitor died. Every step treats "already gone" as success and clears
its record once done, so running one twice is harmless."""


def unmount_recorded(pod_state):
    """Unmount what the state says was mounted; 'not mounted' is success."""
    from nsPod.kernel.mounts import detach
    for path in reversed(pod_state.get("mounts", [])):
        detach(path)
    pod_state["mounts"] = []


def remove_cgroups(root, pod_state):
    """Kill what is left in the pod's cgroup and remove it; 'already gone' is success."""
    path = pod_state.get("cgroup")
    if not path:
        return
    from nsPod.kernel.cgroups import parents as cgroup_parents
    parent, _, name = path.rpartition("/")
    cgroup_parents.remove(root, parent, name)
    pod_state["cgroup"] = None


def detach_network(root, pod_name, pod_state):
    """veth, netns name, lease; the bridge too when no pod uses it any more."""
    network = pod_state.get("network")
    if not network:
        return
    from nsPod.net import client as netclient
    netclient.detach(root, pod_name, network["bridge"], network.get("subnet"), wait=False,
                     remove_bridge=True, record=network)
    pod_state["network"] = None


def anything_left(pod_state):
    """Whether the state records a process, mount, cgroup or network still to undo."""
    return bool(pod_state.get("pause") or pod_state.get("mounts") or pod_state.get("cgroup")
                or pod_state.get("network")
                or any("pid" in c for c in pod_state.get("containers", {}).values()))
