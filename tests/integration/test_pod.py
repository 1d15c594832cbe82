"""The walking pod, proven by reading /proc: namespaces, volumes, mounts, exits, exec, rm."""
import os
import subprocess
import time

from helpers import (container, container_status, ns_inode, pod_yaml, wait_for, wait_phase,
                     wait_terminated)

SHARED_VOLUME = """\
    - name: data
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
"""
DATA_AT = """\
        - name: data
          mountPath: {path}
"""


def two_sleepers(name="p", extra_spec=""):
    return pod_yaml(name, container("a") + container("b"), extra_spec=extra_spec)


def test_pause_and_containers_share_net_ipc_uts_not_mnt_or_pid(nspod):
    nspod.run_yaml(two_sleepers())
    runtime = nspod.inspect("p")["runtime"]
    pause = runtime["pausePid"]
    a, b = runtime["containers"]["a"]["pid"], runtime["containers"]["b"]["pid"]
    me = os.getpid()
    for kind in ("net", "ipc", "uts"):
        assert ns_inode(pause, kind) == ns_inode(a, kind) == ns_inode(b, kind)
        assert ns_inode(pause, kind) != ns_inode(me, kind)
    for kind in ("mnt", "pid"):
        assert len({ns_inode(me, kind), ns_inode(a, kind), ns_inode(b, kind)}) == 3
    assert runtime["namespaces"]["net"] == ns_inode(pause, "net")
    assert runtime["containers"]["a"]["namespaces"]["mnt"] == ns_inode(a, "mnt")
    # Each container is PID 1 of its own pid namespace.
    ppid, pid1 = nspod("exec", "p", "-c", "a", "--", "sh", "-c",
                       "echo $PPID; tr '\\0' ' ' < /proc/1/cmdline").stdout.splitlines()
    assert ppid == "0" and pid1.strip() == "sh -c sleep 1000"
    table = nspod("ns", "p").stdout.splitlines()
    assert [row.split()[0] for row in table] == ["WHO", "pause", "a", "b"]
    net_column = {row.split()[2] for row in table[1:]}
    assert net_column == {ns_inode(pause, "net").split("[")[1].rstrip("]")}


def test_hostname_is_pod_name_or_spec_hostname(nspod):
    nspod.run_yaml(pod_yaml("web-1", container("a")))
    assert nspod("exec", "web-1", "--", "hostname").stdout.strip() == "web-1"
    assert nspod("exec", "web-1", "--", "sh", "-c", "echo $HOSTNAME").stdout.strip() == "web-1"
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() != "web-1"
    nspod.run_yaml(pod_yaml("web-2", container("a"), extra_spec="  hostname: custom\n"))
    assert nspod("exec", "web-2", "--", "hostname").stdout.strip() == "custom"


def test_loopback_is_up_and_private(nspod):
    nspod("create", "p", "--network", "none")
    nspod("add", "p", "a", "--", "sleep", "1000")
    out = nspod("exec", "p", "--", "cat", "/sys/class/net/lo/operstate").stdout.strip()
    assert out in ("unknown", "up")
    links = nspod("exec", "p", "--", "ls", "/sys/class/net").stdout.split()
    assert links == ["lo"]


def test_emptydir_is_shared_between_containers(nspod):
    writer = container("writer", "echo hello > /out/f; sleep 1000", DATA_AT.format(path="/out"))
    reader = container("reader", "while [ ! -e /in/f ]; do sleep 0.05; done; cat /in/f; sleep 1000",
                       DATA_AT.format(path="/in"))
    nspod.run_yaml(pod_yaml("p", writer + reader, volumes=SHARED_VOLUME))
    wait_for(lambda: nspod("logs", "p", "reader").stdout == "hello\n", what="reader's log")
    # The volume is one tmpfs, held at pod level with mode 0777.
    mounts = nspod("exec", "p", "-c", "reader", "--", "cat", "/proc/self/mountinfo").stdout
    line = next(l for l in mounts.splitlines() if l.split()[4] == "/in")
    assert " - tmpfs " in line and "size=1024k" in line and "mode=777" in line


def test_disk_emptydir_and_data_survives_container_exit(nspod):
    volume = "    - name: data\n      emptyDir: {}\n"
    first = container("first", "echo kept > /d/f", DATA_AT.format(path="/d"))
    nspod.run_yaml(pod_yaml("p", first + container("other"), volumes=volume))
    wait_terminated(nspod, "p", "first")
    assert nspod("exec", "p", "-c", "other", "--", "true").returncode == 0
    nspod("add", "p", "later", "--mount", "data:/x", "--", "cat", "/x/f")
    wait_terminated(nspod, "p", "later")
    assert nspod("logs", "p", "later").stdout == "kept\n"


def test_tmpfs_size_limit_holds(nspod):
    fill = container("fill", "dd if=/dev/zero of=/d/big bs=64k count=64; echo rc=$?",
                     DATA_AT.format(path="/d"))
    nspod.run_yaml(pod_yaml("p", fill, volumes=SHARED_VOLUME))
    wait_terminated(nspod, "p", "fill")
    log = nspod("logs", "p").stdout
    assert "No space left on device" in log and "rc=1" in log


def test_sysv_shm_is_pod_wide_and_not_on_host(nspod):
    nspod.run_yaml(two_sleepers())
    made = nspod("exec", "p", "-c", "a", "--", "ipcmk", "-M", "4096").stdout
    shmid = made.split()[-1]
    seen_in_b = nspod("exec", "p", "-c", "b", "--", "ipcs", "-m").stdout
    assert any(line.split()[1:2] == [shmid] for line in seen_in_b.splitlines())
    with open("/proc/sysvipc/shm") as f:
        host_ids = [line.split()[1] for line in f.read().splitlines()[1:]]
    runtime = nspod.inspect("p")["runtime"]
    assert ns_inode(runtime["pausePid"], "ipc") != ns_inode(os.getpid(), "ipc")
    # A segment with that id on the host, if any, is not ours: its key differs.
    key_in_pod = next(l.split()[0] for l in seen_in_b.splitlines() if l.split()[1:2] == [shmid])
    with open("/proc/sysvipc/shm") as f:
        host_keys = [hex(int(line.split()[0])) for line in f.read().splitlines()[1:]]
    assert int(key_in_pod, 16) not in [int(k, 16) for k in host_keys] or shmid not in host_ids


def test_container_writes_never_reach_the_host(nspod, tmp_path):
    marker = f"nspod-test-{os.getpid()}"
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    volumes = f"    - name: h\n      hostPath:\n        path: {host_dir}\n        type: Directory\n"
    writer = container(
        "w", f"echo x > /etc/{marker} && mkdir -p /{marker}/deep && echo via-volume > /{marker}/mnt/f && "
             f"echo done; sleep 1000",
        "        - name: h\n          mountPath: /" + marker + "/mnt\n")
    nspod.run_yaml(pod_yaml("p", writer, volumes=volumes))
    wait_for(lambda: "done" in nspod("logs", "p").stdout, what="writes")
    assert nspod("exec", "p", "--", "cat", f"/etc/{marker}").stdout == "x\n"
    assert not os.path.exists(f"/etc/{marker}")
    assert not os.path.exists(f"/{marker}")
    assert (host_dir / "f").read_text() == "via-volume\n"  # volumes are the way out
    # Its root is an overlay over the host's /, its own /proc, /dev, /tmp, read-only /sys.
    info = nspod("exec", "p", "--", "cat", "/proc/self/mountinfo").stdout.splitlines()
    by_target = {l.split()[4]: l for l in info}
    assert " - overlay " in by_target["/"] and "lowerdir=/" in by_target["/"]
    assert " - proc " in by_target["/proc"]
    assert " - tmpfs " in by_target["/dev"] and " - tmpfs " in by_target["/tmp"]
    assert by_target["/sys"].split()[5].startswith("ro")
    devices = nspod("exec", "p", "--", "ls", "/dev").stdout.split()
    assert {"null", "zero", "urandom", "tty", "pts", "shm", "fd"} <= set(devices)
    assert "sda" not in devices
    # nspod's own state directory is hidden inside the container.
    hidden = nspod("exec", "p", "--", "sh", "-c", f"ls -A {nspod.root} 2>/dev/null; true").stdout
    assert hidden.strip() == ""


def test_container_mounts_do_not_propagate_from_a_shared_root(nspod):
    """On systemd hosts / is shared; nspod must make its mounts private before mounting."""
    manifest = nspod.manifest(pod_yaml("p", container("a")))
    from conftest import NSPOD
    args = " ".join(NSPOD + nspod.global_args())
    script = (f"mount --make-rshared / && {args} run {manifest} >/dev/null && "
              f"cat /proc/self/mountinfo")
    out = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pod_dir = os.path.join(nspod.root, "pods", "p")
    assert "shared:" in next(l for l in out.stdout.splitlines() if l.split()[4] == "/")
    leaked = [l for l in out.stdout.splitlines()
              if l.split()[4].startswith(os.path.join(pod_dir, "containers")) or " - overlay " in l]
    assert leaked == []


def test_share_process_namespace_pause_is_pid1_and_reaps(nspod):
    orphaner = container("a", "(sleep 0.2 &); (sleep 0.2 &); sleep 1000")
    nspod.run_yaml(pod_yaml("p", orphaner + container("b"),
                            extra_spec="  shareProcessNamespace: true\n"))
    assert nspod("exec", "p", "--", "cat", "/proc/1/cmdline").stdout.startswith(
        os.path.join("/", "work") if False else "/")
    assert "nspod-pause" in nspod("exec", "p", "--", "cat", "/proc/1/cmdline").stdout
    runtime = nspod.inspect("p")["runtime"]
    a, b = runtime["containers"]["a"]["pid"], runtime["containers"]["b"]["pid"]
    assert ns_inode(a, "pid") == ns_inode(b, "pid") == ns_inode(runtime["pausePid"], "pid")

    def no_zombies():
        ps = nspod("exec", "p", "-c", "b", "--", "ps", "-eo", "pid,ppid,stat,comm").stdout
        rows = [l.split() for l in ps.splitlines()[1:]]
        return rows if not [r for r in rows if r[2].startswith("Z")] and \
            not [r for r in rows if r[3] == "sleep" and r[1] == "1"] else None
    rows = wait_for(no_zombies, timeout=5, what="orphans to be reaped")
    assert any(r[3] == "sleep" for r in rows)  # the containers themselves still run


def test_exit_codes_and_logs_recorded_after_the_cli_exited(nspod):
    containers = (container("ok", "echo out; echo err >&2; exit 0")
                  + container("bad", "echo failing; exit 3")
                  + container("killed", "sleep 1000"))
    nspod.run_yaml(pod_yaml("p", containers))
    # PID 1 of a pid namespace cannot be SIGKILLed from inside it: kill it from the host.
    os.kill(nspod.inspect("p")["runtime"]["containers"]["killed"]["pid"], 9)
    obj = wait_phase(nspod, "p", ("Failed",))
    ok = container_status(obj, "ok")["state"]["terminated"]
    bad = container_status(obj, "bad")["state"]["terminated"]
    killed = container_status(obj, "killed")["state"]["terminated"]
    assert (ok["exitCode"], ok["reason"]) == (0, "Completed")
    assert (bad["exitCode"], bad["reason"]) == (3, "Error")
    assert (killed["exitCode"], killed.get("signal"), killed["reason"]) == (137, 9, "Error")
    assert ok["startedAt"] <= ok["finishedAt"]
    assert nspod("logs", "p", "ok").stdout == "out\nerr\n"
    assert nspod("logs", "p", "bad").stdout == "failing\n"
    stamped = nspod("logs", "p", "ok", "--timestamps").stdout.splitlines()
    assert stamped[0].endswith(" out") and stamped[0][:4].isdigit() and "T" in stamped[0]
    assert nspod("logs", "p", "ok", "--tail", "1").stdout == "err\n"
    raw = open(obj["runtime"]["containers"]["ok"]["log"]).read().splitlines()
    assert [l.split(" ", 3)[1:] for l in raw] == [["stdout", "F", "out"], ["stderr", "F", "err"]]
    # The pod has ended: no processes, no mounts; its state and logs are kept until rm.
    assert "pausePid" not in obj["runtime"]
    assert nspod("ps").stdout.splitlines()[1:] == []
    assert "p " in nspod("ps", "-a").stdout


def test_all_completed_is_succeeded(nspod):
    nspod.run_yaml(pod_yaml("p", container("a", "true") + container("b", "exit 0")))
    obj = wait_phase(nspod, "p", ("Succeeded", "Failed"))
    assert obj["status"]["phase"] == "Succeeded"
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


def test_command_that_cannot_run_is_a_start_error(nspod):
    text = pod_yaml("p", "    - name: a\n      command: [nonexistent-command-xyz]\n"
                    + container("b"))
    result = nspod("run", nspod.manifest(text))
    assert "warning: container a: StartError" in result.stderr
    terminated = container_status(nspod.inspect("p"), "a")["state"]["terminated"]
    assert terminated["reason"] == "StartError" and terminated["exitCode"] == 128
    assert 'exec: "nonexistent-command-xyz": executable file not found in $PATH' \
        in terminated["message"]
    assert "running" in container_status(nspod.inspect("p"), "b")["state"]


def test_exec_passes_exit_codes_env_cwd_and_stdin(nspod):
    text = pod_yaml("p", """\
    - name: a
      command: [sleep, "1000"]
      workingDir: /srv/app
      env:
        - name: GREETING
          value: hello
""")
    nspod.run_yaml(text)
    assert nspod("exec", "p", "--", "sh", "-c", "exit 42", check=False).returncode == 42
    missing = nspod("exec", "p", "--", "no-such-cmd", check=False)
    assert missing.returncode == 127 and 'exec: "no-such-cmd"' in missing.stderr
    assert nspod("exec", "p", "--", "/etc/passwd", check=False).returncode == 126
    out = nspod("exec", "p", "--", "sh", "-c", "echo $GREETING; pwd").stdout.split()
    assert out == ["hello", "/srv/app"]
    assert nspod("exec", "-i", "p", "--", "cat", input="piped\n").stdout == "piped\n"
    assert nspod("exec", "p", "--", "cat", input="ignored\n").stdout == ""
    assert nspod("exec", "p", "-c", "nope", "--", "true", check=False).returncode == 2
    # exec joins the container's mount namespace: it sees the container's /tmp, not the host's.
    nspod("exec", "p", "--", "sh", "-c", "echo mine > /tmp/only-in-container")
    assert nspod("exec", "p", "--", "cat", "/tmp/only-in-container").stdout == "mine\n"
    assert not os.path.exists("/tmp/only-in-container")


def test_env_expansion_field_and_resource_refs(nspod):
    text = pod_yaml("envpod", """\
    - name: a
      command: [sh, -c, 'echo "$POD/$NS/$BASE/$FULL/$MEM/$ESC"; /bin/echo "$0"', '$(GREETING) $(UNDEFINED)']
      env:
        - name: GREETING
          value: hi
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: NS
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: BASE
          value: base
        - name: FULL
          value: $(BASE)-full
        - name: ESC
          value: $$(BASE)
        - name: MEM
          valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
""")
    nspod.run_yaml(text)
    wait_terminated(nspod, "envpod", "a")
    line1, line2 = nspod("logs", "envpod").stdout.splitlines()
    pod, ns, base, full, mem, esc = line1.split("/")
    assert (pod, ns, base, full, esc) == ("envpod", "default", "base", "base-full", "$(BASE)")
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    assert int(mem) == -(-total_kib // 1024)  # node allocatable without a limit, in Mi
    assert line2 == "hi $(UNDEFINED)"


def test_subpath_subpathexpr_and_readonly(nspod):
    volume = "    - name: data\n      emptyDir: {}\n"
    mounts = """\
        - name: data
          mountPath: /sub
          subPath: one/two
        - name: data
          mountPath: /byname
          subPathExpr: $(POD_NAME)
        - name: data
          mountPath: /ro
          readOnly: true
"""
    cmd = ("echo s > /sub/f && echo n > /byname/f && cat /ro/one/two/f /ro/sp/f && "
           "( (echo x > /ro/g) 2>/dev/null && echo WROTE || echo readonly); sleep 1000")
    extra = "      env:\n        - name: POD_NAME\n          valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"
    nspod.run_yaml(pod_yaml("sp", container("a", cmd, mounts, extra), volumes=volume))
    wait_for(lambda: "readonly" in nspod("logs", "sp").stdout or "WROTE" in nspod("logs", "sp").stdout,
             what="the container's checks")
    assert nspod("logs", "sp").stdout.split() == ["s", "n", "readonly"]


def test_host_namespaces(nspod):
    text = pod_yaml("h", container("a"),
                    extra_spec="  hostNetwork: true\n  hostIPC: true\n  hostPID: true\n")
    nspod.run_yaml(text)
    runtime = nspod.inspect("h")["runtime"]
    a = runtime["containers"]["a"]["pid"]
    for kind in ("net", "ipc", "uts", "pid"):
        assert ns_inode(a, kind) == ns_inode(os.getpid(), kind)
    assert ns_inode(a, "mnt") != ns_inode(os.getpid(), "mnt")


def test_create_then_add_containers_step_by_step(nspod):
    assert nspod("create", "web", "--volume", "data:8Mi").stdout.strip() == "web"
    obj = nspod.inspect("web")
    assert obj["status"]["phase"] == "Running" and obj["runtime"]["pausePid"]
    assert obj["status"]["containerStatuses"] == []
    nspod("add", "web", "writer", "--mount", "data:/out", "--", "sh", "-c",
          "echo hi > /out/f; sleep 1000")
    nspod("add", "web", "reader", "--mount", "data:/in:ro", "--env", "X=1", "--",
          "sh", "-c", "while [ ! -e /in/f ]; do sleep 0.05; done; cat /in/f; echo X=$X; sleep 1000")
    wait_for(lambda: nspod("logs", "web", "reader").stdout == "hi\nX=1\n", what="reader output")
    runtime = nspod.inspect("web")["runtime"]
    assert ns_inode(runtime["containers"]["writer"]["pid"], "net") == \
        ns_inode(runtime["pausePid"], "net")
    dup = nspod("add", "web", "reader", "--", "true", check=False)
    assert dup.returncode == 2 and "reader" in dup.stderr
    generated = nspod("generate", "web").stdout
    assert "name: writer" in generated and "kind: Pod" in generated


def test_stop_uses_grace_then_sigkill_and_keeps_logs(nspod):
    trapper = container("polite", "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done")
    stubborn = container("stubborn", "sleep 1000")  # PID 1 without a TERM handler ignores TERM
    nspod.run_yaml(pod_yaml("p", trapper + stubborn, grace=1))
    wait_for(lambda: "up" in nspod("logs", "p", "polite").stdout, what="polite to start")
    started = time.monotonic()
    nspod("stop", "p")
    elapsed = time.monotonic() - started
    obj = nspod.inspect("p")
    polite = container_status(obj, "polite")["state"]["terminated"]
    stubborn_end = container_status(obj, "stubborn")["state"]["terminated"]
    assert polite["exitCode"] == 0 and stubborn_end["exitCode"] == 137
    assert 0.9 <= elapsed, "SIGKILL must wait for the grace period"
    assert nspod("logs", "p", "polite").stdout == "up\nbye\n"
    assert obj["status"]["phase"] == "Failed"
    nspod("rm", "p")
    assert nspod.pods() == []


def test_rm_of_running_pod_needs_force(nspod):
    nspod.run_yaml(pod_yaml("p", container("a")))
    result = nspod("rm", "p", check=False)
    assert result.returncode == 1 and "rm -f" in result.stderr
    nspod("rm", "-f", "p")
    assert nspod.pods() == []


def test_monitor_crash_is_cleaned_by_gc(nspod):
    nspod.run_yaml(pod_yaml("p", container("a"), volumes=SHARED_VOLUME))
    obj = nspod.inspect("p")
    pause = obj["runtime"]["pausePid"]
    ctr = obj["runtime"]["containers"]["a"]["pid"]
    import json
    with open(os.path.join(nspod.root, "pods", "p", "state.json")) as f:
        monitor = json.load(f)["monitor"]["pid"]
    os.kill(monitor, 9)
    # The parent-death chain takes pause and the container with it.
    wait_for(lambda: not os.path.exists(f"/proc/{pause}") and not os.path.exists(f"/proc/{ctr}"),
             what="pause and the container to die with their monitor")
    assert nspod.inspect("p")["status"]["phase"] == "Unknown"
    report = nspod("gc").stdout
    assert "mount" in report and os.path.join(nspod.root, "pods", "p") in report
    assert nspod("gc").stdout == ""
    assert nspod.inspect("p")["status"]["phase"] == "Failed"
    nspod("rm", "p")


def test_trace_narrates_kernel_steps(nspod):
    result = nspod("--trace", "run", nspod.manifest(pod_yaml("p", container("a"))))
    for step in ("unshare(CLONE_NEWNS", "CLONE_NEWNET", "setns(", "mount(", "pivot_root(",
                 "sethostname(p)", "SIOCSIFFLAGS"):
        assert step in result.stderr, step


def test_demo_manifest(nspod):
    here = os.path.dirname(__file__)
    nspod("run", "--wait", os.path.join(here, "..", "..", "examples", "app-logcollector.yaml"))
    wait_for(lambda: "collected: " in nspod("logs", "demo", "logcollector").stdout,
             what="the collector to collect")
    line = nspod("logs", "demo", "logcollector").stdout.splitlines()[0]
    assert line.startswith("collected: ") and "served by demo" in line


def test_debug_joins_the_pod_and_the_target_pid_namespace(nspod):
    nspod.run_yaml(pod_yaml("p", container("app", "exec sleep 1000") + container("other")))
    out = nspod("debug", "p", "--target", "app", "--", "sh", "-c",
                "cat /proc/1/comm; hostname; cat /proc/self/cgroup").stdout.splitlines()
    assert out[0] == "sleep" and out[1] == "p"
    uid = nspod.inspect("p")["metadata"]["uid"]
    assert any(line.split("/")[-2:-1] == [f"pod{uid}"] and "/ctr-debugger-" in line
               for line in out[2:])
    runtime = nspod.inspect("p")["runtime"]
    assert nspod("debug", "p", "--", "sh", "-c", "exit 5", check=False).returncode == 5
    assert nspod("debug", "p", "--", "no-such-tool", check=False).returncode == 127
    assert nspod("debug", "-i", "p", "--", "cat", input="piped\n").stdout == "piped\n"
    # Ephemeral: nothing of it stays in the pod.
    assert nspod.inspect("p")["runtime"]["containers"].keys() == runtime["containers"].keys()
    assert sorted(os.listdir(os.path.join(nspod.root, "pods", "p", "containers"))) == ["app", "other"]


def test_logs_follow_ends_with_the_container(nspod):
    import subprocess as sp
    from conftest import NSPOD
    nspod.run_yaml(pod_yaml("p", container("a", "for i in 1 2 3; do echo tick $i; sleep 0.3; done")))
    follow = sp.run(NSPOD + nspod.global_args() + ["logs", "-f", "p"], capture_output=True,
                    text=True, timeout=30, env=dict(os.environ, **dict([nspod.marker.split("=")])))
    assert follow.returncode == 0
    assert follow.stdout == "tick 1\ntick 2\ntick 3\n"


def test_ps_json_and_yaml_are_kubernetes_lists(nspod):
    import json
    nspod.run_yaml(pod_yaml("p", container("a")))
    listing = json.loads(nspod("ps", "-o", "json").stdout)
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["p"]
    assert listing["items"][0]["status"]["phase"] == "Running"
    text = nspod("ps", "-o", "yaml").stdout
    assert text.startswith("apiVersion: v1\nkind: List\nitems:\n") and "name: p" in text
