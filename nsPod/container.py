"""One container: the child-side steps that turn a forked process into it, in order.

Runs in a process forked by the monitor (process.spawn). The order matters and each position
has its reason in a comment; read `_enter_pod` and `_build_root_and_exec` top to bottom.
"""
import errno
import os

from nsPod import mounts, namespaces, process
from nsPod.process import step
from nsPod.syscalls import CloneFlag, MountFlag, mount, pivot_root, umount2, unshare, MNT_DETACH

DEVICES = {  # name: (major, minor), runc's default set
    "null": (1, 3), "zero": (1, 5), "full": (1, 7),
    "random": (1, 8), "urandom": (1, 9), "tty": (5, 0),
}
DEV_LINKS = {
    "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
}
NOSUID_NODEV_NOEXEC = MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC


def spawn(pod, container, pause_pid, container_dir, stdout_fd, stderr_fd, set_pdeathsig,
          prepare=None):
    """Start the container; returns the host pid of its process. Raises ChildFailed."""
    pod_kinds = [k for k in ("ipc", "uts", "net") if pod.namespaces[k] == "pod"]
    pid_mode = pod.namespaces["pid"]
    if pid_mode == "pod":
        pod_kinds.append("pid")

    def enter_pod():
        _enter_pod(pause_pid, pod_kinds, pid_mode)

    def build_root_and_exec():
        _build_root_and_exec(pod, container, container_dir, stdout_fd, stderr_fd)

    return process.spawn(
        build_root_and_exec,
        pre_fork=enter_pod,
        # A pid namespace, joined or new, holds only the children of whoever entered it.
        fork_again=pid_mode in ("pod", "container"),
        prepare=prepare,
        set_pdeathsig=set_pdeathsig,
    )


def _enter_pod(pause_pid, kinds, pid_mode):
    with step("join the pod's namespaces"):
        namespaces.join(pause_pid, kinds)
    if pid_mode == "container":
        with step("make the container's pid namespace"):
            unshare(CloneFlag.CLONE_NEWPID)


def _build_root_and_exec(pod, container, container_dir, stdout_fd, stderr_fd):
    if container.env_error:
        with step("resolve subPathExpr"):
            raise ValueError(container.env_error)
    with step("make the container's mount namespace"):
        unshare(CloneFlag.CLONE_NEWNS)
        # Before any mount: on a host where / is shared (systemd), every mount below would
        # otherwise propagate back to the host.
        mount(None, "/", None, MountFlag.MS_REC | MountFlag.MS_PRIVATE)
    rootfs = os.path.join(container_dir, "rootfs")
    with step("mount the container's root"):
        _mount_overlay_root(container_dir, rootfs)
    with step("mount /proc"):
        # A fresh proc: it shows the pid namespace of the mounter, which is now ours.
        target = mounts.make_mountpoint(rootfs, "/proc")
        mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)
    with step("mount /dev"):
        _mount_dev(rootfs, pod.shm_path)
    with step("mount /sys"):
        target = mounts.make_mountpoint(rootfs, "/sys")
        mount("sysfs", target, "sysfs", NOSUID_NODEV_NOEXEC | MountFlag.MS_RDONLY)
    with step("mount /tmp"):
        target = mounts.make_mountpoint(rootfs, "/tmp")
        mounts.mount_tmpfs(target, "mode=1777", MountFlag.MS_NOSUID | MountFlag.MS_NODEV)
    if pod.state_root and os.path.isdir(mounts.secure_join(rootfs, pod.state_root)):
        with step(f"hide nspod's state directory {pod.state_root}"):
            # The host's root is the lower layer: without this, other pods' on-disk emptyDir
            # volumes and logs would be readable from inside.
            target = mounts.secure_join(rootfs, pod.state_root)
            mounts.mount_tmpfs(target, "mode=0700,size=4k", NOSUID_NODEV_NOEXEC | MountFlag.MS_RDONLY)
    for m in container.mounts:
        with step(f"mount volume {m.volume} at {m.target}"):
            _mount_volume(rootfs, m)
    with step("pivot_root"):
        _pivot_root(rootfs)
    with step(f"working directory {container.cwd}"):
        # runc makes a missing working directory; so do we, in the container's own layer.
        os.makedirs(container.cwd, exist_ok=True)
        os.chdir(container.cwd)
    with step("standard streams"):
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
    _exec(container)


def _mount_overlay_root(container_dir, rootfs):
    # The upper layer lives on a tmpfs mounted in this mount namespace only: it vanishes with
    # the container, is charged to its memory cgroup, and is never a layer nested inside the
    # lower one (which overlayfs refuses when the state root is on the host's root fs).
    mounts.mount_tmpfs(container_dir, "mode=0755", MountFlag.MS_NOSUID | MountFlag.MS_NODEV)
    for d in ("upper", "work", "rootfs"):
        os.mkdir(os.path.join(container_dir, d), 0o755)
    upper = os.path.join(container_dir, "upper")
    work = os.path.join(container_dir, "work")
    mount("overlay", rootfs, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")


def _mount_dev(rootfs, shm_path):
    dev = mounts.make_mountpoint(rootfs, "/dev")
    # No MS_NODEV here: the device nodes below must work.
    mounts.mount_tmpfs(dev, "mode=0755,size=65536k", MountFlag.MS_NOSUID | MountFlag.MS_STRICTATIME)
    for name, (major, minor) in DEVICES.items():
        path = os.path.join(dev, name)
        os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(path, 0o666)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    mount("devpts", pts, "devpts", MountFlag.MS_NOSUID | MountFlag.MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    for name, target in DEV_LINKS.items():
        os.symlink(target, os.path.join(dev, name))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    if shm_path:
        # The pod's /dev/shm, shared like its IPC namespace.
        mounts.bind(shm_path, shm)
    else:
        mounts.mount_tmpfs(shm, "mode=1777,size=65536k", NOSUID_NODEV_NOEXEC)


def _mount_volume(rootfs, m):
    source = m.source
    if m.sub_path:
        # Resolved inside the volume, so a symlink in it cannot point the mount elsewhere;
        # a missing subPath is made, as the kubelet does.
        source = mounts.secure_join(m.source, m.sub_path)
        if not os.path.lexists(source):
            os.makedirs(source, mode=0o777, exist_ok=True)
    target = mounts.make_mountpoint(rootfs, m.target, directory=os.path.isdir(source))
    mounts.bind(source, target, read_only=m.read_only)


def _pivot_root(rootfs):
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    # only the new root, with no directory for the old one needed in the container's tree.
    os.chdir(rootfs)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")


def _exec(container):
    argv = container.argv
    env = container.env_dict()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        if e.errno == errno.ENOENT and "/" not in argv[0]:
            e.user_message = f'exec: "{argv[0]}": executable file not found in $PATH'
        else:
            e.user_message = f'exec: "{argv[0]}": {os.strerror(e.errno).lower()}'
        raise process.StepFailed("exec", e) from e
