"""The manifests a user hands the CLI: FILE read with care (one file, a stream, several files
or a directory, each refused in one line when it cannot be a manifest), and the documents
`create` and `add` stand for, built from their flags. Bad input is an InputError naming the
argument.

No click here (cli.py parses the flags); these are plain functions so they are unit-tested.
"""
import os
import stat
import sys

from nsPod.errors import InputError


def read_manifest(file):
    """The manifest's text and its name for messages; at most spec.MANIFEST_MAX_BYTES read.

    A named FIFO is refused rather than waited on; a pipe from the shell (`<(...)`,
    /dev/stdin) and standard input (-) are read as far as the cap.
    """
    from nsPod.manifest.spec import MANIFEST_MAX_BYTES
    limit = MANIFEST_MAX_BYTES
    if file == "-":
        data, source = sys.stdin.buffer.read(limit + 1), "<stdin>"
    else:
        source = file
        try:
            # O_NONBLOCK: opening a FIFO nobody writes to would block forever.
            fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            raise InputError(f"FILE: cannot read {file}: {e.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise InputError(f"FILE: {file} is a directory, not a manifest")
            if stat.S_ISFIFO(mode) and _is_named_fifo(file):
                raise InputError(f"FILE: {file} is a FIFO, not a manifest "
                                 "(to read a stream, pipe it to: nspod ... -)")
            if not stat.S_ISREG(mode) and not stat.S_ISFIFO(mode) and not stat.S_ISCHR(mode):
                raise InputError(f"FILE: {file} is not a regular file")
            os.set_blocking(fd, True)
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
        except OSError as e:
            raise InputError(f"FILE: cannot read {file}: {e.strerror}") from None
        finally:
            os.close(fd)
    if len(data) > limit:
        raise InputError(f"FILE: {source}: manifest larger than {limit >> 20} MiB")
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as e:
        raise InputError(f"FILE: {source} is not UTF-8 text (byte {e.start})") from None


def _is_named_fifo(file):
    """A FIFO on a file system (mkfifo), not a shell's pipe (/dev/fd/N, /proc/self/fd/N)."""
    real = os.path.realpath(file)
    if real.startswith(("/proc/", "/dev/fd/")):
        return False
    try:
        return stat.S_ISFIFO(os.stat(real).st_mode)
    except OSError:
        return False


def load_manifests(files, name=None, allowed_unsafe_sysctls=(), sources_required=True):
    """(pods, warnings) of one or more files (a directory: its *.yaml, *.yml and *.json,
    sorted); a ConfigMap or Secret in any of them serves the pods of all."""
    from nsPod.manifest import spec
    texts, total = [], 0
    for path in _manifest_paths(files):
        texts.append(read_manifest(path))
        # Together as one: a directory of thousands of 4 MiB files (or a shell glob of them)
        # must not be read into memory whole.
        total += len(texts[-1][0])
        if total > spec.MANIFEST_MAX_BYTES:
            raise InputError(f"FILE: {' '.join(files)}: manifests larger than "
                             f"{spec.MANIFEST_MAX_BYTES >> 20} MiB together")
    pods, warnings = spec.load_files(texts, name_override=name,
                                     allowed_unsafe_sysctls=allowed_unsafe_sysctls,
                                     sources_required=sources_required)
    if name is not None and len(pods) > 1:
        raise InputError(f"--name: {' '.join(files)} holds {len(pods)} pods; "
                         "--name needs exactly one")
    return pods, warnings


def _manifest_paths(files):
    """Each FILE, or a directory's *.yaml, *.yml and *.json (sorted, no hidden ones)."""
    for file in files:
        if file != "-" and os.path.isdir(file):
            try:
                names = sorted(n for n in os.listdir(file)
                               if n.endswith((".yaml", ".yml", ".json")) and not n.startswith("."))
            except OSError as e:
                raise InputError(f"FILE: cannot read {file}: {e.strerror}") from None
            if not names:
                raise InputError(f"FILE: {file} is a directory without *.yaml, *.yml or *.json")
            yield from (os.path.join(file, n) for n in names)
        else:
            yield file


def load_manifest(file, name=None, allowed_unsafe_sysctls=()):
    """(the pods of FILE, the warnings to show) -- FILE as `apply` and `delete -f` take it."""
    return load_manifests([file], name, allowed_unsafe_sysctls)


def pod_for_create(name, memory, volumes, share, hostname, network):
    """(the Pod `nspod create NAME` makes, its warnings); the name is checked first."""
    from nsPod.kernel import paths
    from nsPod.manifest import spec
    paths.check_pod_name(name)
    manifest = create_manifest(name, memory, volumes, share, hostname, network)
    return spec.pod_from_dict(manifest, allow_no_containers=True)


def create_manifest(name, memory, volumes, share, hostname, network):
    """The Pod document `nspod create` stands for: only pause, volumes, shared kinds."""
    kinds = {k.strip() for k in share.split(",") if k.strip()}
    unknown = kinds - {"net", "ipc", "uts", "pid"}
    if unknown:
        raise InputError(f"--share: unknown namespace kind(s) {', '.join(sorted(unknown))} "
                         "(choose from net, ipc, uts, pid)")
    if not {"net", "ipc", "uts"} <= kinds:
        raise InputError(f"--share: {share!r}: a pod's containers always share net, ipc and "
                         "uts (Kubernetes' model); add pid to share the pid namespace too")
    spec_doc = {"restartPolicy": "Never", "containers": []}
    if "pid" in kinds:
        spec_doc["shareProcessNamespace"] = True
    if hostname:
        spec_doc["hostname"] = hostname
    if memory:
        spec_doc["resources"] = {"limits": {"memory": memory}}
    volume_docs = []
    from nsPod.kernel import paths
    for i, v in enumerate(volumes):
        vname, _, size = v.partition(":")
        paths.check_volume_name(vname)
        empty_dir = {"medium": "Memory"}
        if size:
            empty_dir["sizeLimit"] = size
        volume_docs.append({"name": vname, "emptyDir": empty_dir})
    if volume_docs:
        spec_doc["volumes"] = volume_docs
    metadata = {"name": name}
    if network:
        metadata["annotations"] = {"nspod.io/network": network}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec_doc}


def container_for_add(pod_name, name, init, memory, mounts, env, restart, workdir, image,
                      command):
    """The container document of `nspod add POD NAME`; both names are checked first."""
    from nsPod.kernel import paths
    paths.check_pod_name(pod_name)
    paths.check_container_name(name)
    if restart and not init:
        raise InputError("--restart: only init containers take a restartPolicy (with --init "
                         "--restart Always: a native sidecar); app containers follow the pod's")
    return add_container_doc(name, memory, mounts, env, restart, workdir, image, command)


def add_container_doc(name, memory, mounts, env, restart, workdir, image, command):
    """The container document `nspod add` stands for; InputError names the bad flag."""
    doc = {"name": name, "command": list(command)}
    if image:
        doc["image"] = image
    if workdir:
        doc["workingDir"] = workdir
    if restart:
        doc["restartPolicy"] = restart
    if memory:
        doc["resources"] = {"limits": {"memory": memory}}
    env_docs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--env: {item!r} is not K=V")
        env_docs.append({"name": key, "value": value})
    if env_docs:
        doc["env"] = env_docs
    mount_docs = []
    for item in mounts:
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
                (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise InputError(f"--mount: {item!r} is not V:PATH or V:PATH:ro")
        from nsPod.kernel import paths
        paths.check_volume_name(parts[0])
        mount = {"name": parts[0], "mountPath": parts[1]}
        if len(parts) == 3 and parts[2] == "ro":
            mount["readOnly"] = True
        mount_docs.append(mount)
    if mount_docs:
        doc["volumeMounts"] = mount_docs
    return doc

