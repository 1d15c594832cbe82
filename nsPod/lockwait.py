"""Finding and stopping a warm per-root process (netd, podd) that holds a lock file (its pid
written in it) while it lives.

Standard library only: the thin `nspod` client imports it.
"""
import fcntl
import os
import time


def stop_lock_holder(lock_path, ask, timeout, too_late, poll=0.01):
    """Ask the process holding `lock_path` to exit and wait until its lock is free.

    `ask(deadline)` sends the exit request, True once one was taken (False: not listening
    yet, asked again next time); `too_late()` is the exception raised at `timeout`.
    Returns False when nobody held the lock, True once its holder has gone.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    # The same open file throughout: the exiting process unlinks the path before its lock
    # goes with its last fd, so only this file's lock says when it is gone.
    try:
        def held():
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False

        if not held():
            return False
        deadline = time.monotonic() + timeout
        asked = False
        while held():
            if time.monotonic() >= deadline:
                raise too_late()
            if not asked:
                asked = ask(deadline)
            time.sleep(poll)
        return True
    finally:
        os.close(fd)


def lock_holder_pid(lock_path):
    """The pid written in a lock file someone holds, -1 if it names none, None when nobody
    holds it (or there is no file)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        return None
    finally:
        os.close(fd)
