"""Images brought in as the CLI starts it: `nspod image pull`, a pod's images before `run`
makes it, and `nspod image import`. Progress is the caller's (a callable, or None for none)."""
import contextlib
import signal

from nsPod.errors import InputError


def import_image(config, name, source):
    """`nspod image import NAME SOURCE`: returns the stored image's record."""
    from nsPod.kernel import paths
    from nsPod.store import images
    images.reference(name)  # bad input first: it must leave nothing, not even a root
    # The root made here, as by `run`: 0700, checked and recorded.
    paths.check_root(config.root, create=True)
    return images.import_image(config, name, source)


def pull_image(config, ref, progress):
    """`nspod image pull REF`: returns the stored image's record."""
    from nsPod.kernel import paths
    from nsPod.manifest import image_reference as reference
    from nsPod.registry import pull
    try:
        reference.parse(ref)
    except InputError as e:
        raise InputError(f"REF: {ref!r}: {e}") from None
    paths.check_root(config.root, create=True)
    with sigterm_interrupts():
        stored, _ = pull.pull(config.root, ref, progress, explicit=True)
    return stored


def pull_for_pod(config, manifest, progress):
    """The pod's images, pulled as each container's imagePullPolicy says, before the pod is
    made; nothing to do (and no state root made) when every image is a path or the host's."""
    images = [c.get("image") for key in ("initContainers", "containers")
              for c in ((manifest or {}).get("spec") or {}).get(key) or ()
              if isinstance(c, dict)]
    if not any(isinstance(i, str) and i and not i.startswith("/") for i in images):
        return
    from nsPod.kernel import paths
    from nsPod.registry import pull
    paths.check_root(config.root, create=True)
    with sigterm_interrupts():
        pull.ensure(config.root, manifest, progress)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM ends a pull as ^C does: its work is removed on the way out."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
