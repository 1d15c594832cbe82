"""Pod-level volumes: they belong to the pod, made before its containers and removed after.

emptyDir is a directory under the pod's state, or one tmpfs per volume with medium Memory
(mode 0777, as the kubelet makes it, so any uid in any container can write); hostPath is the
host's own path, checked (and made, for the ...OrCreate types) before anything else.
"""
import os
import stat

from nsPod.errors import InputError
from nsPod.mounts import detach, mount_tmpfs
from nsPod.syscalls import MountFlag

HOST_PATH_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
}


def check_host_path(volume, field):
    """Before anything is created: the path exists as its type says (or may be created)."""
    try:
        mode = os.stat(volume.path).st_mode
    except FileNotFoundError:
        if volume.host_type == "DirectoryOrCreate":
            return
        if volume.host_type == "FileOrCreate":
            if not os.path.isdir(os.path.dirname(volume.path)):
                raise InputError(f"{field}: {volume.path!r}: its directory does not exist") from None
            return
        raise InputError(f"{field}: {volume.path!r} does not exist on this host "
                         "(type DirectoryOrCreate or FileOrCreate would create it)") from None
    check = HOST_PATH_CHECKS.get(volume.host_type)
    if check and not check[0](mode):
        raise InputError(f"{field}: {volume.path!r} is not {check[1]} (type {volume.host_type})")


def create(volume):
    if volume.kind == "host":
        if volume.host_type == "DirectoryOrCreate":
            os.makedirs(volume.path, mode=0o755, exist_ok=True)
        elif volume.host_type == "FileOrCreate" and not os.path.exists(volume.path):
            os.close(os.open(volume.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        return
    os.makedirs(volume.path, exist_ok=True)
    os.chmod(volume.path, 0o777)
    if volume.kind == "tmpfs":
        options = "mode=0777" + (f",size={volume.size}" if volume.size else "")
        mount_tmpfs(volume.path, options, MountFlag.MS_NOSUID | MountFlag.MS_NODEV)


def remove(volume):
    """Unmount a tmpfs volume; the directory goes with the pod's state directory."""
    if volume.kind == "tmpfs":
        detach(volume.path)
