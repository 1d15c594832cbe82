"""The cgroup drivers against a fake cgroupfs: a temp tree laid out as the kernel lays it
out, with the kernel's rules where a plain directory cannot keep them (control files
appear on mkdir, controllers are handed down top-down, no processes in inner v2 cgroups,
memsw >= limit on v1, rmdir refuses populated cgroups). No root needed.

The fake hooks the four primitives of nsPod.kernel.cgroups.files; every driver access goes
through them, so the error formatting in files.py is the real one.
"""
import errno
import os
import signal
import subprocess

import pytest

from nsPod.kernel.cgroups import (DEFAULT_PARENT, CgroupExists, Limits, container_cgroup_name,
                                  cpu_quota, cpu_shares, cpu_weight, detect, files, open_driver,
                                  pod_cgroup_name, rel_in_parent)
from nsPod.errors import CgroupError, NspodError

UNLIMITED = "9223372036854771712"
EVENTS = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"

V2_CORE = {"cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.kill": "",
           "cgroup.events": "populated 0\nfrozen 0\n",
           "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"}
V2_CONTROLLER_FILES = {
    "memory": {"memory.max": "max\n", "memory.current": "0\n", "memory.peak": "0\n",
               "memory.events": EVENTS, "memory.events.local": EVENTS,
               "memory.swap.max": "max\n", "memory.oom.group": "0\n"},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "cpu": {"cpu.max": "max 100000\n", "cpu.weight": "100\n"},
}
V1_FILES = {
    "memory": {"cgroup.procs": "", "tasks": "", "memory.limit_in_bytes": UNLIMITED + "\n",
               "memory.memsw.limit_in_bytes": UNLIMITED + "\n", "memory.usage_in_bytes": "0\n",
               "memory.max_usage_in_bytes": "0\n", "memory.failcnt": "0\n",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    "pids": {"cgroup.procs": "", "tasks": "", "pids.max": "max\n", "pids.current": "0\n"},
    "cpu": {"cgroup.procs": "", "tasks": "", "cpu.cfs_quota_us": "-1\n",
            "cpu.cfs_period_us": "100000\n", "cpu.shares": "1024\n",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
            "cpuacct.usage": "0\n"},
    "unified": {"cgroup.procs": "", "cgroup.controllers": "", "cgroup.subtree_control": "",
                "cgroup.kill": "", "cgroup.events": "populated 0\nfrozen 0\n"},
}


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _put(path, text):
    with open(path, "w") as f:
        f.write(text)


def _get(path):
    with open(path) as f:
        return f.read()


class FakeKernel:
    """Kernel behaviour for a fake tree: hierarchies are directories of a known kind."""

    def __init__(self, monkeypatch):
        self.kinds = {}  # hierarchy root -> "v2" | "memory" | "pids" | "cpu" | "unified"
        self.writes = []  # (path, value) in order, for ordering assertions
        self.fail = {}  # path -> errno for the next write/rmdir there
        self.busy = {}  # path -> how many rmdirs fail with EBUSY before one succeeds
        self._real_read, self._real_write = files._read, files._write
        monkeypatch.setattr(files, "_read", self.read)
        monkeypatch.setattr(files, "_write", self.write)
        monkeypatch.setattr(files, "_mkdir", self.mkdir)
        monkeypatch.setattr(files, "_rmdir", self.rmdir)

    def hierarchy(self, path):
        path = os.path.realpath(path)
        for top, kind in self.kinds.items():
            if path == top or path.startswith(top + "/"):
                return top, kind
        raise AssertionError(f"{path} is in no fake hierarchy")

    # -- the four primitives -----------------------------------------------------------

    def read(self, path):
        text = self._real_read(path)
        if os.path.basename(path) == "cgroup.procs":
            return "".join(f"{p}\n" for p in text.split() if _alive(int(p)))
        return text

    def write(self, path, data):
        self.writes.append((path, data))
        if path in self.fail:
            err = self.fail.pop(path)
            raise OSError(err, os.strerror(err), path)
        handler = {"cgroup.procs": self._procs, "cgroup.subtree_control": self._subtree,
                   "cgroup.kill": self._kill, "memory.limit_in_bytes": self._v1_limit,
                   "memory.memsw.limit_in_bytes": self._v1_memsw}.get(os.path.basename(path))
        if handler is None:
            self._real_write(path, data)
        else:
            handler(os.path.dirname(path), data)

    def mkdir(self, path):
        os.mkdir(path)
        _, kind = self.hierarchy(path)
        if kind == "v2":
            enabled = _get(os.path.join(os.path.dirname(path), "cgroup.subtree_control")).split()
            self._populate_v2(path, enabled)
        else:
            for name, text in V1_FILES[kind].items():
                _put(os.path.join(path, name), text)

    def rmdir(self, path):
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if self.busy.get(path):
            self.busy[path] -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        children = [e for e in os.scandir(path) if e.is_dir()]
        if children or self.read(os.path.join(path, "cgroup.procs")).split():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)

    # -- kernel rules ------------------------------------------------------------------

    def _populate_v2(self, path, enabled):
        _put(os.path.join(path, "cgroup.controllers"), " ".join(enabled) + "\n")
        for name, text in V2_CORE.items():
            if not os.path.exists(os.path.join(path, name)):
                _put(os.path.join(path, name), text)
        for controller in enabled:
            for name, text in V2_CONTROLLER_FILES.get(controller, {}).items():
                if not os.path.exists(os.path.join(path, name)):
                    _put(os.path.join(path, name), text)

    def _is_root(self, d):
        return os.path.realpath(d) in self.kinds

    def _procs(self, d, data):
        top, kind = self.hierarchy(d)
        if kind in ("v2", "unified") and not self._is_root(d) and \
                _get(os.path.join(d, "cgroup.subtree_control")).split():
            raise OSError(errno.EBUSY, "Device or resource busy")
        for other, _, names in os.walk(top):  # a task is in one cgroup per hierarchy
            if "cgroup.procs" in names:
                kept = [p for p in _get(os.path.join(other, "cgroup.procs")).split() if p != data]
                _put(os.path.join(other, "cgroup.procs"), "".join(f"{p}\n" for p in kept))
        _put(os.path.join(d, "cgroup.procs"), _get(os.path.join(d, "cgroup.procs")) + f"{data}\n")

    def _subtree(self, d, data):
        enabled = set(_get(os.path.join(d, "cgroup.subtree_control")).split())
        available = set(_get(os.path.join(d, "cgroup.controllers")).split())
        for token in data.split():
            if token[1:] not in available:
                raise OSError(errno.ENOENT, "No such file or directory")
            if not self._is_root(d) and self.read(os.path.join(d, "cgroup.procs")).split():
                raise OSError(errno.EBUSY, "Device or resource busy")
            (enabled.add if token[0] == "+" else enabled.discard)(token[1:])
        _put(os.path.join(d, "cgroup.subtree_control"), " ".join(sorted(enabled)) + "\n")
        for child in (e.path for e in os.scandir(d) if e.is_dir()):
            self._populate_v2(child, sorted(enabled))

    def _kill(self, d, data):
        for cg, _, _ in os.walk(d):
            for pid in self.read(os.path.join(cg, "cgroup.procs")).split():
                os.kill(int(pid), signal.SIGKILL)

    def _v1_limit(self, d, data):
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw) and int(data) > int(_get(memsw)):
            raise OSError(errno.EINVAL, "Invalid argument")
        if int(data) < int(_get(os.path.join(d, "memory.usage_in_bytes"))):
            raise OSError(errno.EBUSY, "Device or resource busy")
        _put(os.path.join(d, "memory.limit_in_bytes"), data)

    def _v1_memsw(self, d, data):
        if int(data) < int(_get(os.path.join(d, "memory.limit_in_bytes"))):
            raise OSError(errno.EINVAL, "Invalid argument")
        _put(os.path.join(d, "memory.memsw.limit_in_bytes"), data)

    # -- building trees ----------------------------------------------------------------

    def v2_root(self, root, subtree_control="cpu memory pids"):
        os.makedirs(root)
        self.kinds[os.path.realpath(root)] = "v2"
        _put(os.path.join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n")
        _put(os.path.join(root, "cgroup.subtree_control"), subtree_control + "\n")
        for name in ("cgroup.procs", "cgroup.max.depth", "memory.stat", "cpu.stat"):
            _put(os.path.join(root, name), "")
        return root

    def v1_root(self, root, unified=True):
        """A hybrid host like this one, with cpu and cpuacct co-mounted."""
        os.makedirs(root)
        hierarchies = {"memory": "memory", "pids": "pids", "cpu,cpuacct": "cpu"}
        if unified:
            hierarchies["unified"] = "unified"
        for name, kind in hierarchies.items():
            os.mkdir(os.path.join(root, name))
            self.kinds[os.path.realpath(os.path.join(root, name))] = kind
            for fname, text in V1_FILES[kind].items():
                _put(os.path.join(root, name, fname), text)
        os.symlink("cpu,cpuacct", os.path.join(root, "cpu"))
        os.symlink("cpu,cpuacct", os.path.join(root, "cpuacct"))
        return root


@pytest.fixture
def kernel(monkeypatch):
    return FakeKernel(monkeypatch)


@pytest.fixture
def v2(kernel, tmp_path):
    return kernel.v2_root(str(tmp_path / "cg"))


@pytest.fixture
def v1(kernel, tmp_path):
    return kernel.v1_root(str(tmp_path / "cg"))


@pytest.fixture
def sleeper():
    started = []

    def start():
        p = subprocess.Popen(["sleep", "60"])
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


# -- detection, parent, conversions -------------------------------------------------------


def test_detect_v2_v1_and_nothing(kernel, tmp_path):
    assert detect(kernel.v2_root(str(tmp_path / "a"))) == "v2"
    assert detect(kernel.v1_root(str(tmp_path / "b"))) == "v1"
    (tmp_path / "c").mkdir()
    with pytest.raises(CgroupError, match="no cgroup hierarchy at"):
        detect(str(tmp_path / "c"))


def test_open_driver_normalises_the_parent(v2):
    assert open_driver("/a/b/", v2).parent == "a/b"
    assert open_driver(root=v2).parent == DEFAULT_PARENT == "nspod"
    assert open_driver("x", v2).version == "v2"


@pytest.mark.parametrize("parent", ["", "/", "a/../b", "./a"])
def test_parent_must_be_a_plain_path_below_the_root(v2, parent):
    with pytest.raises(CgroupError):
        open_driver(parent, v2)


def test_rel_cannot_escape_the_parent(v2):
    with pytest.raises(CgroupError, match="not allowed"):
        open_driver("nspod", v2).create("../web", Limits())


def test_cgroup_error_is_an_nspod_error():
    assert issubclass(CgroupError, NspodError) and CgroupError.exit_code == 1


@pytest.mark.parametrize("millis,shares", [(0, 2), (1, 2), (250, 256), (1000, 1024),
                                           (10**6, 262144)])
def test_cpu_shares_as_the_kubelet(millis, shares):
    assert cpu_shares(millis) == shares


@pytest.mark.parametrize("shares,weight", [(2, 1), (256, 10), (1024, 39), (262144, 10000)])
def test_cpu_weight_as_runc(shares, weight):
    assert cpu_weight(shares) == weight


@pytest.mark.parametrize("millis,quota", [(500, 50000), (2000, 200000), (5, 1000)])
def test_cpu_quota_as_the_kubelet(millis, quota):
    assert cpu_quota(millis) == quota


# -- files: error messages ------------------------------------------------------------------


def test_write_error_names_file_and_value(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web/app", Limits())
    target = os.path.join(drv.path("web/app"), "memory.limit_in_bytes")
    kernel.fail[target] = errno.EBUSY
    with pytest.raises(CgroupError) as info:
        files.write(target, 52428800)
    assert str(info.value) == f'write "52428800" to {target}: Device or resource busy'
    assert info.value.__cause__.errno == errno.EBUSY


def test_read_and_missing_files(tmp_path):
    with pytest.raises(CgroupError, match=f"read {tmp_path}/nope: No such file"):
        files.read(str(tmp_path / "nope"))
    assert files.read_optional(str(tmp_path / "nope")) is None
    with pytest.raises(CgroupError, match="write \"1\" to .*nope: No such file"):
        files.write(str(tmp_path / "nope"), 1)
    assert not (tmp_path / "nope").exists()


# -- v2 -----------------------------------------------------------------------------------


def _read(path, name):
    return _get(os.path.join(path, name)).strip()


def test_v2_create_enables_controllers_top_down_and_applies_limits(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web", Limits(memory=1 << 30))
    drv.create("web/app", Limits(memory=50 << 20, cpu_millis=500, cpu_request_millis=250,
                                 pids=64, oom_group=True))
    parent, pod, app = drv.path(""), drv.path("web"), drv.path("web/app")
    assert _read(v2, "cgroup.subtree_control") == "cpu memory pids"  # untouched
    assert not [p for p, _ in kernel.writes if os.path.dirname(p) == v2]
    assert _read(parent, "cgroup.subtree_control") == "cpu memory pids"
    assert _read(pod, "cgroup.subtree_control") == "cpu memory pids"
    assert _read(app, "cgroup.subtree_control") == ""  # a leaf: it will hold processes
    assert _read(app, "memory.max") == str(50 << 20)
    assert _read(app, "memory.swap.max") == "0"
    assert _read(app, "memory.oom.group") == "1"
    assert _read(pod, "memory.oom.group") == "0"
    assert _read(app, "cpu.max") == "50000 100000"
    assert _read(app, "cpu.weight") == str(cpu_weight(256))
    assert _read(app, "pids.max") == "64"
    assert _read(pod, "memory.max") == str(1 << 30)


def test_v2_cpu_only_when_asked(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits(memory=1 << 20))
    assert _read(drv.path("web"), "cgroup.subtree_control") == "memory pids"
    drv.create("web/cpu-bound", Limits(cpu_millis=100))
    assert _read(drv.path("web"), "cgroup.subtree_control") == "cpu memory pids"
    assert _read(drv.path("web/cpu-bound"), "cpu.max") == "10000 100000"


def test_v2_missing_controller_above_the_parent_is_an_error(kernel, tmp_path):
    root = kernel.v2_root(str(tmp_path / "cg"), subtree_control="pids")
    drv = open_driver("nspod", root)
    with pytest.raises(CgroupError) as info:
        drv.create("web/app", Limits(memory=1 << 20))
    assert str(info.value).startswith(
        f"cgroup v2 controller memory is not enabled in {root}/cgroup.subtree_control")
    assert not os.path.exists(drv.path(""))
    assert kernel.writes == []


def test_v2_existing_parent_is_configured_but_never_removed(kernel, v2):
    kernel.mkdir(os.path.join(v2, "system.slice"))
    drv = open_driver("system.slice", v2)
    drv.create("web/app", Limits())
    assert _read(drv.path(""), "cgroup.subtree_control") == "memory pids"
    drv.remove("web")
    drv.remove_parent_if_empty()
    assert os.path.isdir(drv.path("")) and not os.path.exists(drv.path("web"))


def test_v2_parent_levels_made_are_removed_by_their_maker_only(kernel, v2):
    kernel.mkdir(os.path.join(v2, "mine"))  # delegated to us by its owner
    kernel.write(os.path.join(v2, "mine", "cgroup.subtree_control"), "+memory +pids")
    drv = open_driver("mine/a/b", v2)
    drv.create("web/app", Limits())
    assert drv.made == {os.path.join(v2, "mine/a"), os.path.join(v2, "mine/a/b")}
    other_process = open_driver("mine/a/b", v2)
    other_process.remove("web")
    other_process.remove_parent_if_empty()
    assert os.path.isdir(os.path.join(v2, "mine/a/b"))  # it cannot know who made them
    drv.remove_parent_if_empty()
    assert not os.path.exists(os.path.join(v2, "mine/a"))
    assert os.path.isdir(os.path.join(v2, "mine"))  # it was there before
    assert drv.made == set()


def test_a_persisted_record_lets_another_process_remove_made_levels(kernel, v2):
    kernel.mkdir(os.path.join(v2, "mine"))
    kernel.write(os.path.join(v2, "mine", "cgroup.subtree_control"), "+memory")
    creator = open_driver("mine/a/b", v2)
    creator.create("web/app", Limits())
    record = sorted(creator.made)  # e.g. JSON in a state file shared by the parent's pods
    remover = open_driver("mine/a/b", v2, made=record)
    remover.remove("web")
    remover.remove_parent_if_empty()
    assert not os.path.exists(os.path.join(v2, "mine/a"))
    assert os.path.isdir(os.path.join(v2, "mine"))


def test_default_parent_is_removed_when_empty_by_anyone(kernel, v2):
    maker = open_driver(root=v2)
    maker.create("web/app", Limits())
    maker.create("db/main", Limits())
    later = open_driver(root=v2)
    later.remove("web")
    later.remove_parent_if_empty()
    assert os.path.isdir(os.path.join(v2, "nspod", "db"))  # another pod still there
    later.remove("db")
    later.remove_parent_if_empty()
    assert not os.path.exists(os.path.join(v2, "nspod"))


def test_v2_attach_procs_kill_with_cgroup_kill(kernel, v2, sleeper):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    drv.create("web/side", Limits())
    a, b = sleeper(), sleeper()
    drv.attach("web/app", a.pid)
    drv.attach("web/side", b.pid)
    assert drv.procs("web") == sorted([a.pid, b.pid])
    assert drv.procs("web/app") == [a.pid]
    drv.kill("web")
    assert (os.path.join(drv.path("web"), "cgroup.kill"), "1") in kernel.writes
    assert a.wait(5) == -signal.SIGKILL and b.wait(5) == -signal.SIGKILL
    assert drv.procs("web") == []


def test_v2_inner_cgroup_cannot_take_processes(kernel, v2, sleeper):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    with pytest.raises(CgroupError, match=r'write "\d+" to .*/web/cgroup.procs: Device or'):
        drv.attach("web", sleeper().pid)


def test_v2_kill_without_cgroup_kill_signals_each_pid(kernel, v2, sleeper):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    os.unlink(os.path.join(drv.path("web"), "cgroup.kill"))
    a = sleeper()
    drv.attach("web/app", a.pid)
    drv.kill("web")
    assert a.wait(5) == -signal.SIGKILL


def test_kill_spares_a_pid_that_left_the_cgroup(kernel, v2, sleeper):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    stranger = sleeper()  # read once from the cgroup, gone from it before the signal
    drv._sigkill("web", [stranger.pid])
    assert stranger.poll() is None


def test_kill_gives_up_after_a_bounded_wait(kernel, v2, sleeper, monkeypatch):
    from nsPod.kernel.cgroups import driver
    monkeypatch.setattr(driver, "KILL_TIMEOUT", 0.05)
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    os.unlink(os.path.join(drv.path("web"), "cgroup.kill"))
    a = sleeper()
    drv.attach("web/app", a.pid)
    monkeypatch.setattr(drv, "_sigkill", lambda rel, pids: None)  # an unkillable task
    with pytest.raises(CgroupError, match=rf"processes still there after 0.05s: {a.pid}"):
        drv.kill("web")


def test_v2_remove_is_depth_first_and_idempotent(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    drv.create("web/side/deep", Limits())
    drv.remove("web")
    assert not os.path.exists(drv.path("web"))
    drv.remove("web")  # already gone
    drv.remove_parent_if_empty()
    assert not os.path.exists(drv.path(""))


def test_remove_retries_ebusy_then_reports_it(kernel, v2, monkeypatch):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    kernel.busy[drv.path("web/app")] = 3  # the last task is still being released
    drv.remove("web")
    assert not os.path.exists(drv.path("web"))
    drv.create("web/app", Limits())
    monkeypatch.setattr(files, "RMDIR_BUSY_TIMEOUT", 0.03)
    kernel.busy[drv.path("web/app")] = 10**6
    with pytest.raises(CgroupError, match=f"rmdir {drv.path('web/app')}: Device or resource busy"):
        drv.remove("web")


def test_remove_never_touches_a_populated_cgroup(kernel, v2, sleeper, monkeypatch):
    monkeypatch.setattr(files, "RMDIR_BUSY_TIMEOUT", 0)
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    a = sleeper()
    drv.attach("web/app", a.pid)
    with pytest.raises(CgroupError, match="Device or resource busy"):
        drv.remove("web")
    drv.remove_parent_if_empty()
    assert os.path.isdir(drv.path("web/app")) and a.poll() is None


def test_v2_oom_kills_sum_local_counts_over_the_subtree(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    drv.create("web/side", Limits())
    _put(os.path.join(drv.path("web/app"), "memory.events.local"),
         EVENTS.replace("oom_kill 0", "oom_kill 1"))
    _put(os.path.join(drv.path("web/side"), "memory.events.local"),
         EVENTS.replace("oom_kill 0", "oom_kill 2"))
    assert drv.oom_kills("web/app") == 1
    assert drv.oom_kills("web/side") == 2
    assert drv.oom_kills("web") == 3


def test_v2_oom_kills_counts_a_group_kill_victim_once(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits(oom_group=True))
    # what 6.1 shows after one group kill of a cgroup holding two processes
    _put(os.path.join(drv.path("web/app"), "memory.events.local"),
         EVENTS.replace("oom_kill 0", "oom_kill 3").replace("oom_group_kill 0", "oom_group_kill 1"))
    assert drv.oom_kills("web/app") == 2


def test_v2_oom_kills_before_linux_5_2_reads_memory_events(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits())
    for d in (drv.path("web"), drv.path("web/app")):
        os.unlink(os.path.join(d, "memory.events.local"))
    _put(os.path.join(drv.path("web"), "memory.events"),
         EVENTS.replace("oom_kill 0", "oom_kill 4"))
    assert drv.oom_kills("web") == 4


def test_v2_stats(kernel, v2):
    drv = open_driver("nspod", v2)
    drv.create("web/app", Limits(memory=50 << 20, pids=10))
    app = drv.path("web/app")
    _put(os.path.join(app, "memory.current"), "4096\n")
    _put(os.path.join(app, "cpu.stat"), "usage_usec 7\nuser_usec 5\nsystem_usec 2\n")
    os.unlink(os.path.join(app, "memory.peak"))  # Linux < 5.19
    assert drv.stats("web/app") == {
        "memory": {"usage": 4096, "limit": 50 << 20, "peak": None, "oomKills": 0},
        "pids": {"current": 0, "max": 10},
        "cpu": {"usageUsec": 7, "nrThrottled": None, "throttledUsec": None},
    }
    assert drv.stats("web")["memory"]["limit"] is None  # "max"


# -- v1 -----------------------------------------------------------------------------------


def test_v1_create_in_every_hierarchy_once(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web/app", Limits(memory=50 << 20, cpu_millis=250, cpu_request_millis=100,
                                 pids=32, oom_group=True))
    assert drv.version == "v1"
    for tree in ("memory", "pids", "cpu,cpuacct", "unified"):
        assert os.path.isdir(os.path.join(v1, tree, "nspod/web/app"))
    assert drv.path("web/app", "cpu") == drv.path("web/app", "cpuacct")
    app = drv.path("web/app")
    assert _read(app, "memory.limit_in_bytes") == str(50 << 20)
    assert _read(app, "memory.memsw.limit_in_bytes") == str(50 << 20)
    assert _read(drv.path("web/app", "cpu"), "cpu.cfs_quota_us") == "25000"
    assert _read(drv.path("web/app", "cpu"), "cpu.cfs_period_us") == "100000"
    assert _read(drv.path("web/app", "cpu"), "cpu.shares") == "102"
    assert _read(drv.path("web/app", "pids"), "pids.max") == "32"


def test_v1_memory_then_memsw_when_lowering_memsw_first_when_raising(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web", Limits(memory=100 << 20))
    names = [os.path.basename(p) for p, _ in kernel.writes if "memory." in p]
    assert names == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    kernel.writes.clear()
    drv.set_limits("web", Limits(memory=200 << 20))  # the fake refuses limit > memsw
    names = [os.path.basename(p) for p, _ in kernel.writes]
    assert names == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    assert _read(drv.path("web"), "memory.limit_in_bytes") == str(200 << 20)


def test_v1_lowering_below_usage_names_file_value_and_usage(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web/app", Limits(memory=100 << 20))
    app = drv.path("web/app")
    _put(os.path.join(app, "memory.usage_in_bytes"), f"{60 << 20}\n")
    with pytest.raises(CgroupError) as info:
        drv.set_limits("web/app", Limits(memory=50 << 20))
    assert str(info.value) == (
        f'write "52428800" to {app}/memory.limit_in_bytes: Device or resource busy '
        f"(the cgroup already uses {60 << 20} bytes and the kernel could not reclaim enough)")
    assert info.value.__cause__.errno == errno.EBUSY


def test_v1_without_swap_accounting(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web", Limits())
    os.unlink(os.path.join(drv.path("web"), "memory.memsw.limit_in_bytes"))
    drv.set_limits("web", Limits(memory=1 << 20))
    assert _read(drv.path("web"), "memory.limit_in_bytes") == str(1 << 20)


def test_v1_attach_joins_every_hierarchy_and_kill_empties_it(kernel, v1, sleeper):
    drv = open_driver("nspod", v1)
    drv.create("web/app", Limits())
    a = sleeper()
    drv.attach("web/app", a.pid)
    for tree in ("memory", "pids", "cpu,cpuacct", "unified"):
        assert _read(os.path.join(v1, tree, "nspod/web/app"), "cgroup.procs") == str(a.pid)
    assert drv.procs("web") == [a.pid]
    drv.kill("web")
    assert a.wait(5) == -signal.SIGKILL
    drv.remove("web")
    drv.remove_parent_if_empty()
    for tree in ("memory", "pids", "cpu,cpuacct", "unified"):
        assert not os.path.exists(os.path.join(v1, tree, "nspod"))


def test_v1_without_unified_or_pids(kernel, tmp_path):
    root = kernel.v1_root(str(tmp_path / "cg"), unified=False)
    os.rename(os.path.join(root, "pids"), os.path.join(root, "gone"))
    drv = open_driver("nspod", root)
    assert sorted(drv.hierarchies) == ["cpu", "cpuacct", "memory"]
    drv.create("web", Limits(memory=1 << 20))
    with pytest.raises(CgroupError, match=f"no cgroup pids hierarchy under {root}"):
        drv.set_limits("web", Limits(pids=5))


def test_v1_oom_kills_and_stats(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("web/app", Limits(memory=50 << 20))
    drv.create("web/side", Limits())
    app = drv.path("web/app")
    _put(os.path.join(app, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    _put(os.path.join(app, "memory.failcnt"), "12\n")
    _put(os.path.join(drv.path("web/app", "cpu"), "cpuacct.usage"), "5000000\n")
    assert drv.oom_kills("web/app") == 1
    assert drv.oom_kills("web/side") == 0
    assert drv.oom_kills("web") == 1  # v1 counts per cgroup: the driver sums the subtree
    assert drv.stats("web/app") == {
        "memory": {"usage": 0, "limit": 50 << 20, "peak": 0, "oomKills": 1, "failcnt": 12},
        "pids": {"current": 0, "max": None},
        "cpu": {"usageUsec": 5000, "nrThrottled": 0, "throttledUsec": 0},
    }
    assert drv.stats("web/side")["memory"]["limit"] is None  # the kernel's "unlimited"


def test_create_survives_a_shared_level_removed_under_it(kernel, v2, monkeypatch):
    drv = open_driver("nspod", v2)
    drv.create("db", Limits())
    real_mkdir, raced = files._mkdir, []

    def racing_mkdir(path):  # another nspod removes the empty `nspod` just before our mkdir
        if path.endswith("nspod/web") and not raced:
            raced.append(path)
            open_driver("nspod", v2).remove("db")
            open_driver("nspod", v2).remove_parent_if_empty()
        real_mkdir(path)

    monkeypatch.setattr(files, "_mkdir", racing_mkdir)
    drv.create("web/app", Limits(memory=1 << 20))
    assert raced and _read(drv.path("web/app"), "memory.max") == str(1 << 20)


# -- never adopted: the pod's level is made, not found ----------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_exclusive_create_refuses_an_existing_cgroup_and_leaves_it_alone(kernel, tmp_path,
                                                                         version):
    root = getattr(kernel, f"{version}_root")(str(tmp_path / "cg"))
    drv = open_driver("nspod", root)
    drv.create("pod1234", Limits(memory=1 << 20))  # someone else's, with its own limit
    before = {p: _get(p) for p in _files_under(root)}
    kernel.writes.clear()
    other = open_driver("nspod", root)
    with pytest.raises(CgroupExists, match=r"nspod/pod1234 already exists: .* never adopts"):
        other.create("pod1234", Limits(memory=2 << 20), exclusive=True)
    assert kernel.writes == []  # no limit rewritten
    assert {p: _get(p) for p in _files_under(root)} == before


def test_exclusive_create_on_v1_takes_back_the_hierarchies_it_made(kernel, v1):
    # Only in the pids hierarchy is there already a cgroup of that name: the memory one this
    # call made is removed, the pids one is not touched.
    os.makedirs(os.path.join(v1, "pids", "nspod"))
    kernel.mkdir(os.path.join(v1, "pids", "nspod", "pod1234"))
    drv = open_driver("nspod", v1)
    with pytest.raises(CgroupExists, match=f"{v1}/pids/nspod/pod1234 already exists"):
        drv.create("pod1234", Limits(), exclusive=True)
    assert not os.path.exists(os.path.join(v1, "memory", "nspod", "pod1234"))
    assert os.path.isdir(os.path.join(v1, "pids", "nspod", "pod1234"))


def test_parents_create_exclusive_takes_back_the_parent_levels_it_made(kernel, v1, tmp_path):
    from nsPod.kernel.cgroups import parents
    os.makedirs(os.path.join(v1, "pids", "mine", "pod1234"))  # someone else's
    state_root = str(tmp_path / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("nsPod.kernel.cgroups.DEFAULT_ROOT", v1)
        mp.setattr("nsPod.kernel.cgroups.open_driver.__defaults__", ("nspod", v1, ()))
        with pytest.raises(CgroupExists):
            parents.create(state_root, "mine", "pod1234", Limits(), exclusive=True)
    assert not os.path.exists(os.path.join(v1, "memory", "mine"))  # made here, taken back
    assert os.path.isdir(os.path.join(v1, "pids", "mine", "pod1234"))  # never touched
    assert _record(state_root) == {}


def test_a_file_in_the_way_is_not_taken_for_a_cgroup(kernel, v1):
    drv = open_driver("nspod", v1)
    drv.create("pod1", Limits())
    with pytest.raises(CgroupError, match=r"nspod/pod1/tasks: a file of that name exists"):
        drv.create("pod1/tasks", Limits(memory=1 << 20))


def test_a_container_named_tasks_gets_its_own_cgroup_on_v1(kernel, v1):
    """Every v1 cgroup has a `tasks` file; `tasks` is a valid container name."""
    drv = open_driver("nspod", v1)
    drv.create("pod1", Limits())
    rel = f"pod1/{container_cgroup_name('tasks')}"
    drv.create(rel, Limits(memory=1 << 20))
    assert _read(drv.path(rel), "memory.limit_in_bytes") == str(1 << 20)
    assert os.path.isfile(os.path.join(drv.path("pod1"), "tasks"))


def test_names_are_the_kubelets_and_checked():
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert pod_cgroup_name(uid) == f"pod{uid}"
    assert container_cgroup_name("app") == "ctr-app"
    for bad in ("", "../x", "a/b", "ABC", "1 2"):
        with pytest.raises(CgroupError, match="pod uid"):
            pod_cgroup_name(bad)


def test_rel_in_parent():
    assert rel_in_parent("a/b/pod1/ctr-x", "/a/b") == "pod1/ctr-x"
    assert rel_in_parent("/nspod/pod1", "nspod") == "pod1"
    for recorded in ("other/pod1", "nspod", "nspod/../x"):
        with pytest.raises(CgroupError):
            rel_in_parent(recorded, "nspod")


# -- the record of parent levels made: before each mkdir, and whatever happens after -------


def _record(state_root):
    import json
    try:
        with open(os.path.join(state_root, "cgroup-parents.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _files_under(root):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


def test_parent_levels_are_recorded_before_their_mkdir(kernel, v2, monkeypatch):
    drv = open_driver("a/b", v2)
    seen = []
    drv.remember = lambda made: seen.append(sorted(made))
    real_mkdir = files._mkdir

    def mkdir(path):  # a crash at any mkdir must find the level in the record already
        if path in (os.path.join(v2, "a"), os.path.join(v2, "a/b")):
            assert seen and path in seen[-1], f"{path} made before it was recorded"
        real_mkdir(path)

    monkeypatch.setattr(files, "_mkdir", mkdir)
    drv.create("pod1", Limits())
    assert seen[-1] == [os.path.join(v2, "a"), os.path.join(v2, "a/b")]


def test_a_level_someone_else_made_meanwhile_is_not_recorded(kernel, v2, monkeypatch):
    drv = open_driver("a", v2)
    seen = []
    drv.remember = lambda made: seen.append(sorted(made))
    real_mkdir = files._mkdir

    def racing_mkdir(path):
        if path == os.path.join(v2, "a") and not os.path.exists(path):
            real_mkdir(path)  # another tool made it between our look and our mkdir
        real_mkdir(path)

    monkeypatch.setattr(files, "_mkdir", racing_mkdir)
    drv.create("pod1", Limits())
    assert drv.made == set() and seen[-1] == []


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_refused_limit_leaves_no_parent_level_behind(kernel, tmp_path, version, monkeypatch):
    """The kernel refuses a cpu quota out of range (EINVAL) after the levels were made:
    the record of them is written anyway, so removing the pod removes them."""
    from nsPod.kernel.cgroups import parents
    root = getattr(kernel, f"{version}_root")(str(tmp_path / "cg"))
    monkeypatch.setattr("nsPod.kernel.cgroups.open_driver.__defaults__", ("nspod", root, ()))
    state_root = str(tmp_path / "state")
    quota_file = "cpu.max" if version == "v2" else "cpu.cfs_quota_us"
    real_write = kernel.write

    def refuse_quota(path, data):
        if os.path.basename(path) == quota_file:
            raise OSError(errno.EINVAL, "Invalid argument", path)
        real_write(path, data)

    monkeypatch.setattr(files, "_write", refuse_quota)
    with pytest.raises(CgroupError, match=f'{quota_file}: Invalid argument'):
        parents.create(state_root, "x/y", "pod1", Limits(cpu_millis=10 ** 12), exclusive=True)
    assert sorted(_record(state_root)["x/y"]) == sorted(
        os.path.join(base, level) for base in open_driver("x/y", root)._bases()
        for level in ("x", "x/y"))
    parents.remove(state_root, "x/y", "pod1")  # what teardown and gc do with the record
    assert not any(os.path.exists(os.path.join(base, "x"))
                   for base in open_driver("nspod", root)._bases())
    assert _record(state_root) == {}


# -- limits all or nothing: saved, then put back -----------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_save_and_restore_limits(kernel, tmp_path, version):
    root = getattr(kernel, f"{version}_root")(str(tmp_path / "cg"))
    drv = open_driver("nspod", root)
    drv.create("pod1/ctr-a", Limits(memory=64 << 20, cpu_millis=100, cpu_request_millis=100,
                                    pids=10))
    saved = drv.save_limits("pod1/ctr-a")
    before = {p: _get(p).strip() for p in saved}
    drv.set_limits("pod1/ctr-a", Limits(memory=256 << 20, cpu_millis=900,
                                        cpu_request_millis=900, pids=99))
    assert {p: _get(p).strip() for p in saved} != before
    drv.restore_limits("pod1/ctr-a", saved)
    assert {p: _get(p).strip() for p in saved} == before
    # and from "no limit" back to no limit, lowering (v1: memsw after the limit)
    drv.create("pod1/ctr-b", Limits())
    saved = drv.save_limits("pod1/ctr-b")
    before = {p: _get(p).strip() for p in saved}
    drv.set_limits("pod1/ctr-b", Limits(memory=1 << 20, cpu_millis=100, pids=3))
    drv.restore_limits("pod1/ctr-b", saved)
    assert {p: _get(p).strip() for p in saved} == before
