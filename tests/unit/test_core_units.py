"""Units without root: state files, CRI logs, config, secure_join, the fork protocol."""
import errno
import json
import os

import pytest

from nsPod import config
from nsPod.store import logs, state
from nsPod.kernel import mounts, process
from nsPod.errors import InputError, PodExists, PodNotFound


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.json"
    state.write_json(str(target), {"a": 1})
    state.write_json(str(target), {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["state.json"]


def test_pod_dir_claim_is_exclusive(tmp_path):
    first = state.PodDir(str(tmp_path), "web")
    first.create()
    with pytest.raises(PodExists):
        state.PodDir(str(tmp_path), "web").create()
    with pytest.raises(PodNotFound):
        state.PodDir(str(tmp_path), "nope").read_pod()


def test_monitor_lock_tells_liveness(tmp_path):
    pod_dir = state.PodDir(str(tmp_path), "web")
    pod_dir.create()
    assert not pod_dir.monitor_alive()
    fd = pod_dir.lock_monitor()
    pid = os.fork()
    if pid == 0:  # another process sees the lock held
        os._exit(0 if state.PodDir(str(tmp_path), "web").monitor_alive() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(fd)
    assert not pod_dir.monitor_alive()


def test_process_ref_rejects_reused_pid():
    me = state.ProcessRef.of(os.getpid())
    assert me.alive()
    assert not state.ProcessRef(os.getpid(), me.start_time + 1).alive()
    assert not state.ProcessRef(2 ** 22 + 7, 1).alive()


def test_cri_log_records(tmp_path):
    path = tmp_path / "0.log"
    log = logs.LogFile(str(path))
    out = logs.StreamWriter(log, "stdout")
    err = logs.StreamWriter(log, "stderr")
    out.feed(b"hello\nwor")
    err.feed(b"oops\n")
    out.feed(b"ld\n" + b"x" * (logs.MAX_LINE + 10))
    out.close()
    err.close()
    assert log.fd is None  # the last stream to end closes the file
    lines = path.read_text().splitlines()
    stamp, stream, tag, text = lines[0].split(" ", 3)
    assert (stream, tag, text) == ("stdout", "F", "hello")
    assert stamp.endswith("Z") and len(stamp.split(".")[1]) == 10  # nanoseconds + Z
    assert [l.split(" ", 3)[1:3] for l in lines[1:]] == [
        ["stderr", "F"], ["stdout", "F"], ["stdout", "P"], ["stdout", "F"]]
    records = logs.read_records(str(path))
    assert [(s, t) for _, s, t in records] == [
        ("stdout", "hello"), ("stderr", "oops"), ("stdout", "world"),
        ("stdout", "x" * (logs.MAX_LINE + 10))]


def test_config_precedence_and_errors():
    env = {"NSPOD_ROOT": "/tmp/envroot", "NSPOD_SUBNET": "10.99.0.0/16"}
    c = config.load(environ=env)
    assert c.root == "/tmp/envroot" and c.subnet == "10.99.0.0/16"
    c = config.load(root="/tmp/flag", cgroup_parent="/a/b/", environ=env)
    assert c.root == "/tmp/flag" and c.cgroup_parent == "a/b"
    assert config.load(restart_backoff="1s:5s", environ={}).backoff_max == 5
    for kwargs, field in [({"root": "rel"}, "--root"), ({"subnet": "10.0.0.0/33"}, "--subnet"),
                          ({"subnet": "10.0.0.1/16"}, "--subnet"),
                          ({"cgroup_parent": "a/../b"}, "--cgroup-parent"),
                          ({"restart_backoff": "fast"}, "--restart-backoff"),
                          ({"restart_backoff": "10s:1s"}, "--restart-backoff"),
                          ({"bridge": "a" * 16}, "--bridge")]:
        with pytest.raises(InputError) as info:
            config.load(environ={}, **kwargs)
        assert str(info.value).startswith(field)


def test_secure_join_keeps_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "data").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    (root / "loop").symlink_to("loop")
    assert mounts.secure_join(str(root), "/data/passwd") == str(root / "etc" / "passwd")
    assert mounts.secure_join(str(root), "/up/x") == str(root / "x")
    assert mounts.secure_join(str(root), "../../etc") == str(root / "etc")
    with pytest.raises(OSError) as info:
        mounts.secure_join(str(root), "/loop/x")
    assert info.value.errno == errno.ELOOP


def test_mounts_under_orders_deepest_first(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("1 0 8:1 / / rw - ext4 /dev/sda rw\n"
                    "2 1 0:1 / /run/p rw - tmpfs t rw\n"
                    "3 2 0:2 / /run/p/v/a rw - tmpfs t rw\n"
                    "4 1 0:3 / /run/px rw - tmpfs t rw\n")
    assert mounts.mounts_under("/run/p", str(info)) == ["/run/p/v/a", "/run/p"]


def test_spawn_reports_child_step_failure():
    def main():
        with process.step("open the config"):
            os.open("/nonexistent/nspod", os.O_RDONLY)

    with pytest.raises(process.ChildFailed) as info:
        process.spawn(main)
    assert info.value.step == "open the config"
    assert info.value.errno == errno.ENOENT
    assert "open the config" in info.value.message


def test_spawn_returns_once_exec_succeeded():
    def main():
        os.execv("/bin/sh", ["sh", "-c", "exit 7"])

    pid = process.spawn(main)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


def test_spawn_prepare_sees_the_final_pid_before_go():
    seen = []

    def main():
        os.execv("/bin/true", ["true"])

    pid = process.spawn(main, prepare=seen.append)
    os.waitpid(pid, 0)
    assert seen == [pid]


def test_log_rotation_keeps_max_files_and_reads_in_order(tmp_path):
    path = tmp_path / "0.log"
    log = logs.LogFile(str(path), max_size=1024, max_files=3)
    out = logs.StreamWriter(log, "stdout")
    for i in range(200):
        out.feed(b"line %03d\n" % i)
    out.close()
    assert sorted(os.listdir(tmp_path)) == ["0.log", "0.log.1", "0.log.2"]
    texts = [t for _, _, t in logs.read_records(str(path))]
    assert texts == sorted(texts) and texts[-1] == "line 199"
    assert len(texts) < 200  # the oldest part was dropped
    assert all(os.path.getsize(p) <= 1024 for p in logs.parts(str(path)))
