"""Integration fixtures: a private nspod world per test, checked for leaks afterwards.

Each test gets its own state root and a cgroup parent nested under this test process's own
cgroup (never one we did not create), and runs the real CLI as root against the real kernel.
"""
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

from leaks import Snapshot
from nsPod.net import client as netclient
from nsPod.warm import client as warmclient

# -P: the installed nspod, never the source tree in the current directory.
NSPOD = [sys.executable, "-P", "-m", "nsPod"]


def own_cgroup(controller="memory"):
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (controllers == "" and controller == ""):
                return path
    return "/"


class Nspod:
    """Runs `nspod --root R --cgroup-parent P ...` and keeps what a test needs at hand."""

    def __init__(self, root, cgroup_parent, workdir, marker, bridge, subnet):
        self.bridge = bridge
        self.subnet = subnet
        self.marker = marker
        self.pod_names = set()
        self.root = root
        self.cgroup_parent = cgroup_parent
        self.workdir = workdir

    def __call__(self, *args, input=None, check=True, timeout=120, env=None):
        key, value = self.marker.split("=")
        full_env = dict(os.environ, **{key: value}, **(env or {}))
        full_env.pop("NSPOD_TRACE", None)
        result = subprocess.run(
            NSPOD + self.global_args() + list(args),
            input=input, capture_output=True, text=True, timeout=timeout, env=full_env)
        if args and args[0] in ("run", "create") or "run" in args[:3]:
            self.pod_names.update(result.stdout.split())
        if check and result.returncode != 0:
            raise AssertionError(f"nspod {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def global_args(self):
        return ["--root", self.root, "--cgroup-parent", self.cgroup_parent,
                "--bridge", self.bridge, "--subnet", self.subnet]

    def manifest(self, text, name="pod.yaml"):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def run_yaml(self, text, *args):
        return self(*args, "run", self.manifest(text)).stdout.strip()

    def inspect(self, pod):
        return json.loads(self("inspect", pod).stdout)

    def pods(self):
        pods_dir = os.path.join(self.root, "pods")
        names = sorted(os.listdir(pods_dir)) if os.path.isdir(pods_dir) else []
        self.pod_names.update(names)
        return names


@contextlib.contextmanager
def nspod_world():
    """A private nspod world (state root, cgroup parent, bridge, subnet), leak-checked when
    it ends; the `nspod` fixture is one, a test wanting a second root opens another."""
    workdir = tempfile.mkdtemp(prefix="nspod-test-")
    root = os.path.join(workdir, "root")
    cgroup_parent = f"{own_cgroup().rstrip('/')}/nspod-test-{uuid.uuid4().hex[:8]}"
    marker = f"NSPOD_TEST_ID={uuid.uuid4().hex}"
    # A bridge and subnet of its own: a leaked bridge of an earlier test cannot interfere.
    bridge = f"nspt{uuid.uuid4().hex[:6]}"
    subnet = f"10.89.{random.randrange(256)}.0/24"
    tool = Nspod(root, cgroup_parent, workdir, marker, bridge, subnet)
    before = Snapshot(root, marker, cgroup_parent, tool.pod_names, bridge)
    try:
        yield tool
    finally:
        if tool.pods():
            tool("rm", "-f", "--timeout", "0", *tool.pods(), check=False)
        # The network helper and podd idle on for a while by design; a test's are stopped here.
        netclient.stop(root)
        warmclient.stop_all(root)
        leaks = before.leaks()
        if not leaks:
            shutil.rmtree(workdir, ignore_errors=True)
        assert not leaks, "the test left behind:\n" + "\n".join(leaks)


@pytest.fixture
def nspod():
    with nspod_world() as tool:
        yield tool
