"""--trace through the monitor: add, restart, exec, debug and rm narrate the steps taken for
them (the monitor relays its own and its children's), as text or as JSON records."""
import json
import os
import socket
import time

from helpers import wait_for

SETUP_STEPS = ("setns(", "mount(", "pivot_root(")


def _json_steps(stderr):
    """The --trace=json records among stderr's lines (other lines: warnings, errors)."""
    steps = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            steps.append(json.loads(line))
    return steps


def _pod(nspod, name="p"):
    nspod("create", name)
    nspod("add", name, "app", "--", "sleep", "1000")
    return name


def test_trace_add_narrates_the_containers_setup(nspod):
    _pod(nspod)
    result = nspod("--trace", "add", "p", "second", "--", "sleep", "1000")
    assert result.stdout.strip() == "second"
    for step in SETUP_STEPS + ("unshare(CLONE_NEWNS)", "mount(/proc/"):
        assert step in result.stderr, (step, result.stderr)
    # In order: joining pause's namespaces, then the mounts, then pivot_root.
    err = result.stderr
    assert err.index("setns(") < err.index("unshare(CLONE_NEWNS)") < err.index("pivot_root(")
    pid = nspod.inspect("p")["runtime"]["containers"]["second"]["pid"]
    assert f"nspod[{pid}]: pivot_root(" in err

