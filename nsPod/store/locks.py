"""Locks under the state root shared by more than one command: admission.lock (memory
admission and image import take it, so neither sees the other half done)."""
import contextlib
import fcntl
import os

from nsPod.kernel import paths
from nsPod.store import state


@contextlib.contextmanager
def admission_lock(config):
    root_fd = paths.open_root(config.root, create=True)
    try:
        fd = state.open_lock("admission.lock", root_fd)
    finally:
        os.close(root_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
