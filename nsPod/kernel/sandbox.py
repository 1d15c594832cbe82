"""The pod's sandbox: pause, alone in the pod's fresh namespaces."""
import os

from nsPod.kernel import netdev, process
from nsPod.kernel.process import step
from nsPod.kernel.syscalls import CloneFlag, sethostname, unshare
from nsPod.kernel.tracing import traced

NEW_FLAGS = {"net": CloneFlag.CLONE_NEWNET, "ipc": CloneFlag.CLONE_NEWIPC,
             "uts": CloneFlag.CLONE_NEWUTS, "pid": CloneFlag.CLONE_NEWPID}


def pause_binary():
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # nsPod/
    return os.path.join(package, "_bin", "nspod-pause")


def set_sysctl(name, value):
    """net.ipv4.ip_local_port_range -> /proc/sys/net/ipv4/ip_local_port_range; a '/' in a
    Kubernetes sysctl name stands for a '.' inside one component (an interface name)."""
    path = "/proc/sys/" + name.translate(str.maketrans("./", "/."))
    with traced("write", [path, value], text=f"write {path} {value}"), open(path, "w") as f:
        f.write(value)


def spawn(plan, set_pdeathsig, prepare=None):
    """Start pause in new namespaces of every kind the pod owns; returns its host pid."""
    flags = 0
    for kind, flag in NEW_FLAGS.items():
        if plan.namespaces[kind] == "pod":
            flags |= flag
    binary = pause_binary()

    def make_namespaces():
        with step("make the pod's namespaces"):
            unshare(flags)

    def configure_and_exec():
        if plan.namespaces["uts"] == "pod":
            with step(f"set hostname {plan.hostname}"):
                sethostname(plan.hostname)
        if plan.namespaces["net"] == "pod":
            with step("bring lo up"):
                netdev.link_up("lo")
        for name, value in plan.sysctls:
            # /proc/sys/net and the IPC sysctls show the namespaces of the process writing.
            with step(f"set sysctl {name}={value}"):
                set_sysctl(name, value)
        with step(f"exec {binary}"):
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execv(binary, [binary])

    return process.spawn(
        configure_and_exec,
        pre_fork=make_namespaces,
        # pause must be PID 1 of a new pid namespace: only unshare's children are in it.
        fork_again=plan.namespaces["pid"] == "pod",
        prepare=prepare,
        set_pdeathsig=set_pdeathsig,
    )
