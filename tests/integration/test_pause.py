"""csrc/pause.c as built into the package: version, signals, exit codes, reaping as PID 1."""
import os
import signal
import subprocess
import time

import pytest

from nsPod import __version__
from nsPod.kernel.sandbox import pause_binary

PAUSE = pause_binary()


def wait_exit(proc, timeout=5):
    return proc.wait(timeout=timeout)


def test_binary_is_static_and_small():
    size = os.path.getsize(PAUSE)
    assert size <= 64 * 1024, f"pause is {size} bytes"
    out = subprocess.run(["file", PAUSE], capture_output=True, text=True).stdout \
        if os.path.exists("/usr/bin/file") else ""
    with open(PAUSE, "rb") as f:
        data = f.read()
    # A dynamic ELF names its interpreter (PT_INTERP): a static one has none.
    assert b"/lib64/ld-linux" not in data and b"ld-musl" not in data, out


def test_version():
    result = subprocess.run([PAUSE, "-v"], capture_output=True, text=True, timeout=5)
    assert result.returncode == 0
    assert result.stdout.strip() == f"nspod-pause {__version__}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exits_zero_on_term_and_int(sig):
    proc = subprocess.Popen([PAUSE])
    time.sleep(0.05)
    assert proc.poll() is None, "pause must keep running until signalled"
    proc.send_signal(sig)
    assert wait_exit(proc) == 0


def test_other_signals_are_not_swallowed():
    proc = subprocess.Popen([PAUSE])
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert wait_exit(proc) == -signal.SIGKILL
    proc = subprocess.Popen([PAUSE])
    time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    assert wait_exit(proc) == -signal.SIGUSR1


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rindex(")") + 2:].split()
            if int(fields[1]) == pid:
                found.append((int(entry), fields[0]))
    return found


def test_reaps_orphans_as_pid1():
    # unshare forks pause as PID 1 of a new pid namespace; nsenter then starts a shell in it
    # whose background child is orphaned (re-parented to pause) and exits: a zombie, unless
    # pause reaps it.
    holder = subprocess.Popen(["unshare", "--pid", "--fork", PAUSE])
    try:
        pause_pid = None
        for _ in range(100):
            kids = children_of(holder.pid)
            if kids:
                pause_pid = kids[0][0]
                break
            time.sleep(0.01)
        assert pause_pid, "unshare did not start pause"
        subprocess.run(["nsenter", "-t", str(pause_pid), "--pid", "--",
                        "sh", "-c", "sleep 0.2 & sleep 0.2 & exit 0"], check=True, timeout=10)
        orphans = []
        for _ in range(50):
            time.sleep(0.1)
            orphans = children_of(pause_pid)
            if not orphans:
                break
        assert orphans == [], f"pause left children (zombies: state Z): {orphans}"
        os.kill(pause_pid, signal.SIGTERM)
        assert holder.wait(timeout=5) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
