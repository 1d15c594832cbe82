"""One container: the child-side steps that turn a forked process into it, in order.

Runs in a process forked by the monitor (process.spawn). The order matters and each position
has its reason in a comment; read `_enter_pod`, `_build_root_and_exec` and (kernel/identity.py)
`apply_security` top to bottom. `exec` (api/enter.py's exec_in) runs prepare_security and
apply_security too, so that a command run in a container has the container's uid, gid,
capabilities and seccomp filter.
"""
import errno
import fcntl
import os
import stat
import termios
import warnings

from nsPod.kernel import mounts, namespaces, process, volumes
from nsPod.kernel.identity import apply_security, prepare_security, security_settings
from nsPod.kernel.process import step
from nsPod.kernel.syscalls import (CloneFlag, MountFlag, mount, pivot_root, umount2, unshare,
                                   MNT_DETACH)

# os.execvpe imports `warnings` when it runs (os.get_exec_path). In a container on an image it
# runs after pivot_root, where the host's standard library is out of reach: loaded up front.
LOADED_BEFORE_PIVOT = (warnings,)

# The devices every container gets (runc's default set). Each is the host's own node, bound
# onto a file in a nodev /dev (see _mount_dev); cgroups.devices is the allowlist underneath.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
}
# Host /dev entries a privileged container does not copy: it gets its own instances of these.
PRIVATE_DEV_ENTRIES = {"pts", "shm", "mqueue", "hugepages", "ptmx", "console"}
NOSUID_NODEV_NOEXEC = MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC
# containerd's defaults (oci.populateDefaultUnixSpec), which runc applies: kernel files that
# leak host information or let a container act on the host, hidden or made read-only.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def spawn(plan, container, pause_pid, container_dir, stdout_fd, stderr_fd, set_pdeathsig,
          prepare=None, pid_from=None, stdin_fd=None):
    """Start the container; returns the host pid of its process. Raises ChildFailed.

    pid_from: join that process's pid namespace instead (an ephemeral debug container
    targeting a container); stdin_fd: the container's stdin instead of /dev/null.
    """
    pod_kinds = [k for k in ("ipc", "uts", "net") if plan.namespaces[k] == "pod"]
    pid_mode = plan.namespaces["pid"]
    if pid_mode == "pod":
        pod_kinds.append("pid")

    def enter_pod():
        _enter_pod(pause_pid, pod_kinds, pid_mode if pid_from is None else "joined")
        if pid_from is not None:
            with step(f"join the pid namespace of process {pid_from}"):
                namespaces.join(pid_from, ["pid"])

    def build_root_and_exec():
        _build_root_and_exec(plan, container, container_dir, stdout_fd, stderr_fd, stdin_fd)

    return process.spawn(
        build_root_and_exec,
        pre_fork=enter_pod,
        # A pid namespace, joined or new, holds only the children of whoever entered it.
        fork_again=pid_mode in ("pod", "container") or pid_from is not None,
        prepare=prepare,
        set_pdeathsig=set_pdeathsig,
    )


def _enter_pod(pause_pid, kinds, pid_mode):
    with step("join the pod's namespaces"):
        namespaces.join(pause_pid, kinds)
    if pid_mode == "container":
        with step("make the container's pid namespace"):
            unshare(CloneFlag.CLONE_NEWPID)


def _build_root_and_exec(plan, container, container_dir, stdout_fd, stderr_fd, stdin_fd=None):
    if container.env_error:
        with step("resolve subPathExpr"):
            raise ValueError(container.env_error)
    settings = security_settings(container)
    privileged = settings["privileged"]
    # Non-privileged containers get no device but the allowlisted ones: every mount of theirs
    # is nodev (see _mount_dev).
    nodev = 0 if privileged else MountFlag.MS_NODEV
    with step("prepare the seccomp filter"):
        prepared = prepare_security(container)
    with step("make the container's mount namespace"):
        unshare(CloneFlag.CLONE_NEWNS)
        # Before any mount: on a host where / is shared (systemd), every mount below would
        # otherwise propagate back to the host. A slave sends nothing back either, and
        # receives the host's mounts (a CRI mount with HOST_TO_CONTAINER propagation).
        mount(None, "/", None, MountFlag.MS_REC | (
            MountFlag.MS_SLAVE if settings["rootPropagation"] == "rslave"
            else MountFlag.MS_PRIVATE))
    rootfs = os.path.join(container_dir, "rootfs")
    with step("mount the container's root"):
        _mount_overlay_root(container_dir, rootfs, container, nodev)
    with step("mount /proc"):
        # A fresh proc: it shows the pid namespace of the mounter, which is now ours.
        target = mounts.make_mountpoint(rootfs, "/proc")
        mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)
    with step("mount /dev"):
        _mount_dev(rootfs, plan.shm_path, privileged)
    with step("mount /sys"):
        target = mounts.make_mountpoint(rootfs, "/sys")
        # Writable only for privileged containers, as in Kubernetes.
        read_only = 0 if privileged else MountFlag.MS_RDONLY
        mount("sysfs", target, "sysfs", NOSUID_NODEV_NOEXEC | read_only)
    with step("mount /tmp"):
        target = mounts.make_mountpoint(rootfs, "/tmp")
        mounts.mount_tmpfs(target, "mode=1777", MountFlag.MS_NOSUID | MountFlag.MS_NODEV)
    for state_root in state_roots_to_hide(plan.state_root):
        target = mounts.secure_join(rootfs, state_root)
        if not os.path.isdir(target):
            continue  # not on the lower layer's file system, or hidden by a shallower one
        with step(f"hide nspod's state directory {state_root}"):
            # The host's root is the lower layer: without this, pods' on-disk emptyDir
            # volumes and logs would be readable from inside, this root's and every other
            # root's that nspod has used on this host (root_registry.REGISTRY).
            mounts.mount_tmpfs(target, "mode=0700,size=4k", NOSUID_NODEV_NOEXEC | MountFlag.MS_RDONLY)
    if settings["fsGroup"] is not None:
        with step(f"give the pod's emptyDir volumes to fsGroup {settings['fsGroup']}"):
            _chown_empty_dirs(plan, container, settings["fsGroup"])
    for m in container.mounts:
        with step(f"mount volume {m.volume} at {m.target}"):
            _mount_volume(rootfs, m, nodev, plan.volumes)
    if not privileged:
        # After the volumes, so that no volume mounted over /proc or /sys can undo them.
        with step("mask and protect kernel files in /proc and /sys"):
            for path in settings["readonlyPaths"] or READONLY_PATHS:
                mounts.make_read_only(os.path.join(rootfs, path.lstrip("/")))
            for path in settings["maskedPaths"] or MASKED_PATHS:
                mounts.mask(os.path.join(rootfs, path.lstrip("/")))
    with step(f"working directory {container.cwd}"):
        # runc makes a missing working directory; so do we, in the container's own layer,
        # and before a read-only root would refuse it. By fd, inside the root: the path may
        # cross a volume a sibling container is swapping symlinks in.
        mounts.make_mountpoint(rootfs, container.cwd)
    if settings["readOnlyRootFilesystem"]:
        with step("make the root filesystem read-only"):
            # Last, once every mount point exists: writes to the root now fail with EROFS,
            # while /tmp, /dev and the volumes mounted on it stay as they are.
            mounts.remount(rootfs, MountFlag.MS_RDONLY)
    with step("pivot_root"):
        _pivot_root(rootfs)
    with step(f"working directory {container.cwd}"):
        os.chdir(container.cwd)
    # While stderr is still the monitor's: --trace narrates these steps there, not into the
    # container's log.
    if stdin_fd is None and container.stdin_open:
        with step("stdin: a pipe that never ends (stdin: true)"):
            stdin_fd = _endless_stdin()   # before the security context: it may drop dumpable
    if container.tty and stdin_fd is not None:
        with step("a new session whose controlling terminal is the pty (tty: true)"):
            # stdin_fd is the pty's slave (monitor/attach.py): ^C and job control reach the
            # container's processes, as with a runtime's console.
            os.setsid()
            fcntl.ioctl(stdin_fd, termios.TIOCSCTTY, 0)
    apply_security(container, prepared)
    with step("standard streams"):
        os.dup2(os.open("/dev/null", os.O_RDONLY) if stdin_fd is None else stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
    _exec(container)


def state_roots_to_hide(own_root):
    """The pod's own state root and every registered one, shallowest first (a root inside
    another is then already hidden with it); the registry too, which names them."""
    from nsPod.kernel import root_registry
    roots = set(root_registry.registered_roots()) | {root_registry.REGISTRY}
    if own_root:
        roots.add(own_root)
    return sorted(roots, key=lambda r: (r.count("/"), r))


def _mount_overlay_root(container_dir, rootfs, container, nodev):
    lower = container.rootfs or "/"
    if not os.path.isdir(lower):
        raise FileNotFoundError(errno.ENOENT, f"image {container.image}: the root filesystem "
                                              "is not a directory", lower)
    # The upper layer lives on a tmpfs mounted in this mount namespace only: it vanishes with
    # the container, is charged to its memory cgroup, and is never a layer nested inside the
    # lower one (which overlayfs refuses when the state root is on the host's root fs).
    mounts.mount_tmpfs(container_dir, "mode=0755", MountFlag.MS_NOSUID | MountFlag.MS_NODEV)
    for d in ("upper", "work", "rootfs"):
        os.mkdir(os.path.join(container_dir, d), 0o755)
    upper = os.path.join(container_dir, "upper")
    work = os.path.join(container_dir, "work")
    # The image is only ever a lower layer: containers sharing it never write into it.
    options = (f"lowerdir={_overlay_path(lower)},upperdir={_overlay_path(upper)},"
               f"workdir={_overlay_path(work)}")
    mount("overlay", rootfs, "overlay", nodev, options)
    if container.rootfs:
        # The image's root directory as the container's '/': overlayfs takes the upper
        # directory's mode for it, which is the tmpfs's 0755 whatever the image says.
        st = os.stat(lower)
        os.chmod(rootfs, stat.S_IMODE(st.st_mode))
        os.chown(rootfs, st.st_uid, st.st_gid)


def _overlay_path(path):
    """A path in overlayfs's options: ',' separates options and ':' lower layers, so both
    are escaped (an image directory is called name:tag)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _mount_dev(rootfs, shm_path, privileged):
    """A tmpfs /dev with the standard devices, pts, shm and links.

    The first line of the device allowlist: the tmpfs is nodev, like every other mount of a
    non-privileged container, and each allowed device is the host's node bound onto a file in
    it. A bind mount is a mount of its own, so those devices open; a node made with mknod
    (CAP_MKNOD is a default capability) anywhere else in the container cannot be opened
    (EACCES). A container given CAP_SYS_ADMIN can mount a tmpfs of its own without nodev:
    there the devices cgroup / device program (cgroups.devices) refuses it (EPERM).
    Privileged containers get every device of the host, as in Kubernetes, in a /dev where
    mknod'ed nodes work too.
    """
    dev = mounts.make_mountpoint(rootfs, "/dev")
    flags = MountFlag.MS_NOSUID | MountFlag.MS_STRICTATIME
    if not privileged:
        flags |= MountFlag.MS_NODEV
    mounts.mount_tmpfs(dev, "mode=0755,size=65536k", flags)
    if privileged:
        _copy_host_devices("/dev", dev)
    else:
        for name in DEVICES:
            path = os.path.join(dev, name)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
            mounts.bind(os.path.join("/dev", name), path, recursive=False)
    pts = os.path.join(dev, "pts")
    os.makedirs(pts, 0o755, exist_ok=True)
    mount("devpts", pts, "devpts", MountFlag.MS_NOSUID | MountFlag.MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    for name, target in DEV_LINKS.items():
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    if shm_path:
        # The pod's /dev/shm, shared like its IPC namespace.
        mounts.bind(shm_path, shm)
    else:
        mounts.mount_tmpfs(shm, "mode=1777,size=65536k", NOSUID_NODEV_NOEXEC)


def _copy_host_devices(source, target):
    """Every character and block device under the host's /dev, made anew in `target`."""
    for entry in os.scandir(source):
        if entry.name in PRIVATE_DEV_ENTRIES and source == "/dev":
            continue
        st = entry.stat(follow_symlinks=False)
        path = os.path.join(target, entry.name)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(path, stat.S_IMODE(st.st_mode), exist_ok=True)
            _copy_host_devices(entry.path, path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(path, st.st_mode, st.st_rdev)
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))


def _endless_stdin():
    """A pipe opened read-write through /proc/self/fd: the one fd is its reader and a writer,
    so reads block and never see end of file (a container with `stdin: true` waits for
    input, as in Kubernetes before anyone attaches), with no other fd left open."""
    read_end, write_end = os.pipe()
    try:
        return os.open(f"/proc/self/fd/{read_end}", os.O_RDWR)
    finally:
        os.close(read_end)
        os.close(write_end)


def _chown_empty_dirs(plan, container, fs_group):
    """The kubelet's SetVolumeOwnership for emptyDir: group fsGroup, setgid so that what is
    made inside belongs to that group too, group-writable. hostPath volumes stay as they are."""
    empty_dirs = {v.name: v.path for v in plan.volumes if v.kind in ("dir", "tmpfs")}
    for m in container.mounts:
        path = empty_dirs.get(m.volume)
        if path:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            os.chown(path, -1, fs_group)
            os.chmod(path, mode | stat.S_ISGID | stat.S_IRWXG)


def _mount_volume(rootfs, m, nodev, pod_volumes=()):
    """Bind the volume (or its subPath) at m.target, both held as fds from start to end.

    The source is resolved inside its volume (volumes.open_source) and the target inside
    the container's root (image symlinks and volumes mounted before included), each once;
    the mount and its read-only/nodev remount then act on those files through
    /proc/self/fd, as runc and the kubelet do, so a sibling container swapping a directory
    for a symlink meanwhile (CVE-2017-1002101) changes nothing.
    """
    kind = next((v.kind for v in pod_volumes if v.name == m.volume and v.path == m.source),
                None)
    source_fd = volumes.open_source(kind, m.source, m.sub_path, m.volume)
    try:
        source = os.fstat(source_fd)
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            target_fd = mounts.open_in_root(
                root_fd, m.target, create="dir" if stat.S_ISDIR(source.st_mode) else "file")
            try:
                mounts.bind_fd(source_fd, target_fd)
            finally:
                os.close(target_fd)
            flags = nodev | (MountFlag.MS_RDONLY if m.read_only else 0)
            if flags:
                # The target opened again names the new mount's root: that mount, and no
                # other, gets the flags (a bind mount takes them only in a remount).
                mounted = mounts.open_in_root(root_fd, m.target)
                try:
                    now = os.fstat(mounted)
                    if (now.st_dev, now.st_ino) != (source.st_dev, source.st_ino):
                        raise mounts.PathEscapeError(
                            f"{m.target} changed while the volume was mounted on it")
                    mounts.remount_fd(mounted, flags)
                finally:
                    os.close(mounted)
        finally:
            os.close(root_fd)
    finally:
        os.close(source_fd)


def _pivot_root(rootfs):
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    # only the new root, with no directory for the old one needed in the container's tree.
    os.chdir(rootfs)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")


def _exec(container):
    exec_argv(container.argv, container.env_dict())


def exec_argv(argv, env):
    """execvpe with the runtime's wording for what cannot be run (a 127 or 126, like a shell)."""
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        if e.errno == errno.ENOENT and "/" not in argv[0]:
            e.user_message = f'exec: "{argv[0]}": executable file not found in $PATH'
        else:
            e.user_message = f'exec: "{argv[0]}": {os.strerror(e.errno).lower()}'
        raise process.StepFailed("exec", e) from e


JOINED_KINDS = ("ipc", "uts", "net", "pid", "mnt")


def spawn_joined(target, container, argv, attach=None, stdin=False, quiet=False):
    """A new process inside a running container (nspod exec, exec probes and hooks): its
    namespaces, its cgroup (attach), its uid, gid, capabilities and seccomp filter.

    `target` is the container's ProcessRef: its namespaces are opened first and the pid is
    checked after, so a pid reused in between is not joined. Returns the new process's pid;
    raises process.ChildFailed when the command cannot be run.
    """
    from nsPod.errors import StateError
    fds = namespaces.open_all(target.pid, JOINED_KINDS)
    try:
        if not target.alive():
            raise StateError(f"container {container.name} is not running")
        # Made here, where the host's libseccomp is in reach; applied in the child.
        prepared = prepare_security(container)
        env = container.env_dict()

        def join():
            # The host's /dev/null, opened before joining: the container's own may be
            # anything it made of it (a FIFO, whose open would wait for a writer forever).
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in ((0, 1, 2) if quiet else () if stdin else (0,)):
                os.dup2(devnull, fd)
            os.close(devnull)
            namespaces.join_all(fds, target.pid)

        def run():
            os.chdir(container.cwd if os.path.isdir(container.cwd) else "/")
            apply_security(container, prepared)
            exec_argv(list(argv), env)

        return process.spawn(run, pre_fork=join, fork_again=True, prepare=attach)
    finally:
        namespaces.close_all(fds)
