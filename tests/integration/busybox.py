"""Test images made from Debian's busybox-static: a root filesystem directory, a tarball of
it (as `docker export` writes one) and an OCI image layout of two layers, built by hand."""
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile

import pytest

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "id", "mount", "umount", "unshare", "nsenter", "chroot", "kill",
           "hostname", "grep", "ps", "dd", "mknod", "insmod", "sleep", "echo", "mkdir", "touch",
           "stat", "readlink", "wc", "head", "env", "pwd", "test", "true", "false", "rm", "tr",
           "sed", "printf", "cut")
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n" \
         "nobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def require_busybox():
    """The tests' images need a static busybox (apt: busybox-static, examples/install.sh)."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("no /bin/busybox: install busybox-static (sh examples/install.sh)")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    if "dynamically linked" in out:
        pytest.skip("/bin/busybox is dynamically linked: install busybox-static")


def make_rootfs(path):
    """bin/busybox and its applets, /etc/passwd and /etc/group; nothing of the host."""
    require_busybox()
    os.makedirs(os.path.join(path, "bin"))
    os.makedirs(os.path.join(path, "etc"))
    os.makedirs(os.path.join(path, "mnt"))
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", applet))
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        with open(os.path.join(path, "etc", name), "w") as f:
            f.write(text)
    os.chmod(path, 0o755)
    return path


def make_tarball(rootfs, path):
    """A gzipped tarball of rootfs, member names relative ("./bin/sh"), as docker export."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(rootfs, arcname=".")
    return path


def _tar_bytes(entries):
    """An uncompressed tar from [(name, kind, data_or_target, mode)]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _blob(layout, data, media_type, **extra):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def make_oci_layout(path, entrypoint=("/bin/sh", "-c"), cmd=("echo from-cmd",), user=""):
    """An OCI image layout with two gzip layers: the first holds busybox, /etc/motd, /data/old
    and /opaque/{a,b}; the second whiteouts /etc/motd, makes /opaque opaque (keeping only its
    own /opaque/c) and adds /data/new. The config sets Entrypoint, Cmd, Env, WorkingDir, User."""
    require_busybox()
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    first = [("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755),
             ("etc", "dir", None, 0o755), ("etc/motd", "file", b"lower layer\n", 0o644),
             ("etc/passwd", "file", PASSWD.encode(), 0o644),
             ("etc/group", "file", GROUP.encode(), 0o644),
             ("data", "dir", None, 0o755), ("data/old", "file", b"old\n", 0o644),
             ("opaque", "dir", None, 0o755), ("opaque/a", "file", b"a\n", 0o644),
             ("opaque/b", "file", b"b\n", 0o644)]
    first += [(f"bin/{a}", "symlink", "busybox", 0o777) for a in APPLETS]
    second = [("etc", "dir", None, 0o755), ("etc/.wh.motd", "file", b"", 0o644),
              ("opaque", "dir", None, 0o755), ("opaque/.wh..wh..opq", "file", b"", 0o644),
              ("opaque/c", "file", b"c\n", 0o644),
              ("data", "dir", None, 0o755), ("data/new", "file", b"new\n", 0o644)]
    layers, diff_ids = [], []
    for entries in (first, second):
        raw = _tar_bytes(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append(_blob(path, gzip.compress(raw, mtime=0),
                            "application/vnd.oci.image.layer.v1.tar+gzip"))
    config = {
        "architecture": ARCH, "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "Cmd": list(cmd),
                   "Env": ["PATH=/bin", "GREETING=hello from the image"],
                   "WorkingDir": "/data", "User": user},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = _blob(path, json.dumps(config).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": layers}
    manifest_desc = _blob(path, json.dumps(manifest).encode(),
                          "application/vnd.oci.image.manifest.v1+json",
                          platform={"architecture": ARCH, "os": "linux"})
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest_desc]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return path


def tree(path):
    """{relative path: (kind, mode)} of a directory tree, to tell it did not change."""
    found = {}
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(directory, name)
            st = os.lstat(full)
            found[os.path.relpath(full, path)] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size)
    return found
