"""Reading manifest files for the CLI: one file, a stream, several files or a directory,
each refused in one line (InputError) when it cannot be a manifest."""
import os
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
            import stat
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
    import stat
    real = os.path.realpath(file)
    if real.startswith(("/proc/", "/dev/fd/")):
        return False
    try:
        return stat.S_ISFIFO(os.stat(real).st_mode)
    except OSError:
        return False


def load_manifests(files, name=None, allowed_unsafe_sysctls=()):
    """(pods, warnings) of one or more files (a directory: its *.yaml, *.yml and *.json,
    sorted); a ConfigMap or Secret in any of them serves the pods of all."""
    from nsPod.manifest import spec
    texts = []
    for file in files:
        if file != "-" and os.path.isdir(file):
            try:
                names = sorted(n for n in os.listdir(file)
                               if n.endswith((".yaml", ".yml", ".json")) and not n.startswith("."))
            except OSError as e:
                raise InputError(f"FILE: cannot read {file}: {e.strerror}") from None
            if not names:
                raise InputError(f"FILE: {file} is a directory without *.yaml, *.yml or *.json")
            texts += [read_manifest(os.path.join(file, n)) for n in names]
        else:
            texts.append(read_manifest(file))
    pods, warnings = spec.load_files(texts, name_override=name,
                                     allowed_unsafe_sysctls=allowed_unsafe_sysctls)
    if name is not None and len(pods) > 1:
        raise InputError(f"--name: {' '.join(files)} holds {len(pods)} pods; "
                         "--name needs exactly one")
    return pods, warnings
