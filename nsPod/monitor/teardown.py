"""The steps that make a pod's sandbox and undo it, as one table (crun's container_init_setup,
runc's State): the monitor's setup runs the `do` of each row in order (monitor/sandbox.py),
its teardown runs the `undo`s, and so does `nspod rm`/`gc` after a monitor died
(api/pods.py clean_up_after_monitor), from the pod's state alone (store/podstate.py's
PodState). Every undo treats "already
gone" as success and clears its record once done, so running one twice is harmless; each
runs even when an earlier one failed, and what failed stays recorded for `nspod gc`.
"""
from nsPod.errors import NspodError


class Step:
    """One row: `do` names the monitor's Sandbox method that makes it (recording it in the
    state before it exists); `undo(root, pod_name, pod_state)` removes it, labelled `what`."""

    def __init__(self, name, do, what=None, undo=None):
        self.name, self.do, self.what, self.undo = name, do, what, undo

    def __repr__(self):
        return f"Step({self.name!r})"


def unmount_recorded(pod_state):
    """Unmount what the state says was mounted; 'not mounted' is success."""
    from nsPod.kernel.mounts import detach
    for path in reversed(pod_state.get("mounts", [])):
        detach(path)
    pod_state.mounts = []


def remove_cgroups(root, pod_state):
    """Kill what is left in the pod's cgroup and remove it; 'already gone' is success."""
    path = pod_state.cgroup
    if not path:
        return
    from nsPod.kernel.cgroups import parents as cgroup_parents
    parent, _, name = path.rpartition("/")
    cgroup_parents.remove(root, parent, name)
    pod_state.cgroup = None


def detach_network(root, pod_name, pod_state):
    """veth, netns name, lease; the bridge too when no pod uses it any more."""
    network = pod_state.network
    if not network:
        return
    from nsPod.net import client as netclient
    netclient.detach(root, pod_name, network.get("bridge"), network.get("subnet"), wait=False,
                     remove_bridge=True, record=network.to_json())
    pod_state.network = None


def anything_left(pod_state):
    """Whether the state records a process, mount, cgroup or network still to undo."""
    return bool(pod_state.pause or pod_state.mounts or pod_state.cgroup or pod_state.network
                or any(c.has("pid") for c in pod_state.get("containers", {}).values()))


STEPS = (
    Step("cgroup", "make_pod_cgroup", "remove cgroups",
         lambda root, pod_name, pod_state: remove_cgroups(root, pod_state)),
    Step("volumes", "make_volumes", "unmount volumes",
         lambda root, pod_name, pod_state: unmount_recorded(pod_state)),
    # Files in the pod's directory: they go with it (`nspod rm`).
    Step("etc files", "write_etc_files"),
    # pause dies with the pod's processes (stopping); its network is what outlives it.
    Step("sandbox", "make_sandbox", "detach network", detach_network),
    # Listening sockets of the monitor: closed by the monitor, gone with it if it dies.
    Step("host ports", "publish_host_ports"),
)

# Undone in this order, as teardown and gc always have: the local mounts and cgroups first,
# the network (through netd, which may have to be started) last.
UNDO_ORDER = ("volumes", "cgroup", "sandbox")


def undo_steps():
    by_name = {step.name: step for step in STEPS}
    return [by_name[name] for name in UNDO_ORDER]


def undo(root, pod_name, pod_state, failed, after=None):
    """Run every undo step; failed(step, error) hears of each NspodError/OSError, and the
    next step runs anyway. after(step), when given, is called once each step is over."""
    for step in undo_steps():
        try:
            step.undo(root, pod_name, pod_state)
        except (NspodError, OSError) as e:
            failed(step, e)
        if after is not None:
            after(step)
