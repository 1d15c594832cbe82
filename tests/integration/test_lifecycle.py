"""Pod lifecycle like the kubelet's: init containers, restart policies and backoff, native
sidecars, in-place restart and apply, pause death, probes, hooks, deadlines, log files."""
import json
import os
import signal
import time

import pytest

from helpers import container, container_status, ns_inode, pod_yaml, wait_for, wait_phase

FAST = ("--restart-backoff", "0.2s:1s")
SHARED = "    - name: d\n      emptyDir: {}\n"
AT_D = "        - name: d\n          mountPath: /d\n"
# Fails on its first run, succeeds on its second, then runs: the restart table.
FLAKY = ('n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run $n; '
         'case $n in 1) exit 1;; 2) exit 0;; *) exec sleep 1000;; esac')


def spec_with(policy, containers, init="", extra="", volumes=SHARED):
    text = pod_yaml("p", containers, volumes=volumes, extra_spec=extra)
    text = text.replace("restartPolicy: Never", f"restartPolicy: {policy}")
    if init:
        text = text.replace("  containers:\n", f"  initContainers:\n{init}  containers:\n")
    return text


def status(nspod, name="p"):
    return nspod.inspect(name)["status"]


def cstatus(nspod, container_name, pod="p"):
    return container_status(nspod.inspect(pod), container_name)


@pytest.mark.parametrize("policy,restarts,phase", [
    ("Always", 2, "Running"), ("OnFailure", 1, "Succeeded"), ("Never", 0, "Failed")])
def test_restart_policy_table(nspod, policy, restarts, phase):
    nspod.run_yaml(spec_with(policy, container("c", FLAKY, AT_D)), *FAST)
    def settled():
        st = status(nspod)
        c = st["containerStatuses"][0]
        return st["phase"] == phase and c["restartCount"] == restarts and st
    st = wait_for(settled, timeout=20, what=f"{policy}: {restarts} restarts, {phase}")
    c = st["containerStatuses"][0]
    if policy == "Always":
        assert "running" in c["state"]
        assert c["lastState"]["terminated"]["exitCode"] == 0
        assert nspod("logs", "p", "--previous").stdout == "run 2\n"
        assert nspod("logs", "p").stdout == "run 3\n"
    elif policy == "OnFailure":
        assert c["state"]["terminated"]["exitCode"] == 0
        assert c["lastState"]["terminated"]["exitCode"] == 1
    else:
        assert c["state"]["terminated"]["exitCode"] == 1
        previous = nspod("logs", "p", "--previous", check=False)
        assert previous.returncode == 1 and "previous terminated container" in previous.stderr


def test_init_containers_run_in_order_each_to_completion(nspod):
    inits = "".join(container(f"i{n}", f"echo start {n} >> /d/log; sleep 0.2; echo end {n} >> /d/log",
                              AT_D) for n in (1, 2, 3))
    app = container("app", "echo app >> /d/log; cat /d/log; sleep 1000", AT_D)
    nspod.run_yaml(spec_with("Never", app, init=inits))
    wait_for(lambda: "app" in nspod("logs", "p", "app").stdout, what="the app")
    assert nspod("logs", "p", "app").stdout.split("\n")[:7] == [
        "start 1", "end 1", "start 2", "end 2", "start 3", "end 3", "app"]
    st = status(nspod)
    assert st["phase"] == "Running"
    assert [c["state"]["terminated"]["reason"] for c in st["initContainerStatuses"]] == \
        ["Completed"] * 3
    assert next(c for c in st["conditions"] if c["type"] == "Initialized")["status"] == "True"


def test_war_example_init_copies_file_main_serves_it(nspod):
    init = container("fetch", "echo '<h1>app.war</h1>' > /d/index.html", AT_D)
    serve = ("    - name: web\n      command: [python3, -m, http.server, '8080', -d, /d]\n"
             "      volumeMounts:\n" + AT_D)
    nspod.run_yaml(spec_with("Always", serve, init=init))
    ip = status(nspod)["podIP"]
    code = ("import urllib.request, sys\n"
            "print(urllib.request.urlopen('http://%s:8080/index.html' % sys.argv[1], timeout=2).read().decode())")
    def fetched():
        r = nspod("exec", "p", "--", "python3", "-c", code, ip, check=False)
        return r.returncode == 0 and r.stdout
    assert wait_for(fetched, what="the served file").strip() == "<h1>app.war</h1>"


def test_failing_init_container_under_never_fails_the_pod(nspod):
    nspod.run_yaml(spec_with("Never", container("app"), init=container("setup", "exit 3")))
    st = wait_phase(nspod, "p", ("Failed",))["status"]
    app = st["containerStatuses"][0]
    assert app["state"] == {"waiting": {"reason": "PodInitializing"}}
    init = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert init["status"] == "False" and "setup" in init["message"]
    assert st["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


@pytest.mark.parametrize("policy", ["Always", "OnFailure"])
def test_failing_init_container_is_retried_and_the_pod_stays_pending(nspod, policy):
    nspod.run_yaml(spec_with(policy, container("app"), init=container("setup", "exit 3")), *FAST)
    def retried():
        st = status(nspod)
        return st["initContainerStatuses"][0]["restartCount"] >= 2 and st
    st = wait_for(retried, timeout=15, what="retries of the init container")
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_native_sidecar_starts_in_order_runs_beside_and_stops_after(nspod):
    sidecar = container("logger", "trap 'echo logger-term >> /d/log; exit 0' TERM; "
                                   "echo logger-up >> /d/log; while :; do sleep 0.05; done", AT_D,
                        extra="      restartPolicy: Always\n")
    after = container("after", "echo after-sees-$(cat /d/log | tr '\\n' ,) >> /d/order", AT_D)
    app = container("app", "trap 'echo app-term >> /d/log; exit 0' TERM; echo app-up >> /d/log; "
                           "while :; do sleep 0.05; done", AT_D)
    nspod.run_yaml(spec_with("Never", app, init=sidecar + after, extra=""), "--restart-backoff", "0.2s")
    wait_for(lambda: "running" in cstatus(nspod, "app")["state"], what="the app")
    st = status(nspod)
    assert "running" in st["initContainerStatuses"][0]["state"]  # the sidecar keeps running
    order = nspod("exec", "p", "-c", "app", "--", "cat", "/d/order").stdout
    assert order.startswith("after-sees-logger-up")
    # Stop: the app container ends before the sidecar.
    nspod("stop", "p", "--timeout", "5")
    log = open(os.path.join(nspod.root, "pods", "p", "volumes", "d", "log")).read().split()
    assert log.index("app-term") < log.index("logger-term")


def test_sidecar_restarts_when_it_exits(nspod):
    sidecar = container("side", "sleep 0.3; exit 1", extra="      restartPolicy: Always\n")
    nspod.run_yaml(spec_with("Never", container("app"), init=sidecar), *FAST)
    wait_for(lambda: status(nspod)["initContainerStatuses"][0]["restartCount"] >= 2,
             timeout=15, what="the sidecar to restart")
    assert "running" in cstatus(nspod, "app")["state"]


def test_restart_command_restarts_one_container_only(nspod):
    nspod.run_yaml(spec_with("Never", container("a") + container("b")))
    before = nspod.inspect("p")["runtime"]
    nspod("restart", "p", "a")
    wait_for(lambda: cstatus(nspod, "a")["restartCount"] == 1 and "running" in cstatus(nspod, "a")["state"],
             what="a to restart")
    after = nspod.inspect("p")["runtime"]
    assert after["containers"]["a"]["pid"] != before["containers"]["a"]["pid"]
    assert after["containers"]["b"]["pid"] == before["containers"]["b"]["pid"]
    assert after["pausePid"] == before["pausePid"]
    assert cstatus(nspod, "b")["restartCount"] == 0


def test_apply_restarts_exactly_the_changed_container(nspod):
    text = spec_with("Always", container("a", "echo v1; sleep 1000") + container("b"))
    nspod.run_yaml(text)
    before = nspod.inspect("p")
    pause, ip = before["runtime"]["pausePid"], before["status"]["podIP"]
    net = ns_inode(pause, "net")
    b_pid = before["runtime"]["containers"]["b"]["pid"]
    out = nspod("apply", nspod.manifest(text.replace("echo v1", "echo v2"), "v2.yaml")).stdout
    assert out.strip() == "pod p: container a restarted (command changed)"
    wait_for(lambda: nspod("logs", "p", "a").stdout == "v2\n", what="a's new run")
    after = nspod.inspect("p")
    assert after["runtime"]["pausePid"] == pause and ns_inode(pause, "net") == net
    assert after["status"]["podIP"] == ip
    assert after["runtime"]["containers"]["b"]["pid"] == b_pid
    assert container_status(after, "a")["restartCount"] == 1
    assert container_status(after, "b")["restartCount"] == 0
    assert nspod("apply", nspod.manifest(text.replace("echo v1", "echo v2"), "v2.yaml")).stdout \
        .strip() == "pod p: unchanged"
    forbidden = text.replace("emptyDir: {}", "emptyDir: {medium: Memory}")
    refused = nspod("apply", nspod.manifest(forbidden, "bad.yaml"), check=False)
    assert refused.returncode == 2 and "spec.volumes: may not be changed" in refused.stderr
    added = text + container("c")
    refused = nspod("apply", nspod.manifest(added, "add.yaml"), check=False)
    assert refused.returncode == 2 and "spec.containers" in refused.stderr


@pytest.mark.parametrize("policy", ["Never", "Always"])
def test_pause_death(nspod, policy):
    init = container("setup", "echo init >> /d/log", AT_D)
    nspod.run_yaml(spec_with(policy, container("a"), init=init), *FAST)
    before = nspod.inspect("p")
    os.kill(before["runtime"]["pausePid"], signal.SIGKILL)
    if policy == "Never":
        st = wait_phase(nspod, "p", ("Failed",))["status"]
        assert st["reason"] == "SandboxDied"
        return
    def rebuilt():
        obj = nspod.inspect("p")
        a = container_status(obj, "a")
        # The phase is recomputed right after the container's start is recorded: a reader
        # may see the one before the other, so both are waited for.
        return obj["runtime"].get("pausePid") and "running" in a["state"] and \
            a["restartCount"] == 1 and obj["status"]["phase"] == "Running" and obj
    after = wait_for(rebuilt, timeout=15, what="a new sandbox, Running")
    assert after["runtime"]["pausePid"] != before["runtime"]["pausePid"]
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["status"]["phase"] == "Running"
    with open(os.path.join(nspod.root, "pods", "p", "volumes", "d", "log")) as f:
        assert f.read() == "init\ninit\n"  # init containers ran again, in the same emptyDir


def test_liveness_exec_failure_restarts_the_container(nspod):
    probe = ("      livenessProbe:\n        exec: {command: [test, -e, /tmp/healthy]}\n"
             "        periodSeconds: 1\n        failureThreshold: 1\n")
    nspod.run_yaml(spec_with("Always", container("a", "touch /tmp/healthy; sleep 1.5; "
                                                      "rm /tmp/healthy; exec sleep 1000",
                                                 extra=probe)), *FAST)
    wait_for(lambda: cstatus(nspod, "a")["restartCount"] >= 1, timeout=15,
             what="the liveness probe to restart the container")


def test_readiness_http_probe_drives_ready(nspod):
    server = ("import http.server, os\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200 if os.path.exists('/tmp/ready') else 503)\n"
              "        self.end_headers()\n"
              "    def log_message(self, *a): pass\n"
              "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n")
    text = spec_with("Always", f"""\
    - name: web
      command: {json.dumps(["python3", "-c", server])}
      readinessProbe:
        httpGet: {{path: /, port: web}}
        periodSeconds: 1
      ports:
        - {{name: web, containerPort: 8080}}
""")
    nspod.run_yaml(text)
    time.sleep(1.5)
    st = status(nspod)
    assert st["containerStatuses"][0]["ready"] is False
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "False"
    nspod("exec", "p", "--", "touch", "/tmp/ready")
    wait_for(lambda: status(nspod)["containerStatuses"][0]["ready"], timeout=10, what="ready")
    assert next(c for c in status(nspod)["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert nspod("ps").stdout.splitlines()[1].split()[2] == "1/1"


def test_startup_tcp_probe_gates_started(nspod):
    text = spec_with("Always", """\
    - name: web
      command: [sh, -c, 'sleep 1; exec python3 -m http.server 8080']
      startupProbe:
        tcpSocket: {port: 8080}
        periodSeconds: 1
        failureThreshold: 10
""")
    nspod.run_yaml(text)
    c = cstatus(nspod, "web")
    assert c["started"] is False and c["ready"] is False
    wait_for(lambda: cstatus(nspod, "web")["started"], timeout=10, what="started")
    assert cstatus(nspod, "web")["ready"] is True


def test_prestop_runs_before_sigterm_and_poststart_runs(nspod):
    hooks = ("      lifecycle:\n"
             "        postStart:\n          exec: {command: [sh, -c, 'echo poststart >> /d/log']}\n"
             "        preStop:\n          exec: {command: [sh, -c, 'echo prestop >> /d/log']}\n")
    app = container("a", "trap 'echo term >> /d/log; exit 0' TERM; while :; do sleep 0.05; done",
                    AT_D, extra=hooks)
    nspod.run_yaml(spec_with("Never", app, extra="", volumes=SHARED).replace(
        "terminationGracePeriodSeconds: 0", "terminationGracePeriodSeconds: 5"))
    wait_for(lambda: cstatus(nspod, "a")["started"], what="postStart")
    nspod("stop", "p")
    log = open(os.path.join(nspod.root, "pods", "p", "volumes", "d", "log")).read().split()
    assert log == ["poststart", "prestop", "term"]
    assert cstatus(nspod, "a")["state"]["terminated"]["exitCode"] == 0


def test_termination_messages(nspod):
    text = spec_with("Never", container("file", "echo 'bad config' > /dev/termination-log; exit 1")
                     + container("logs", "echo line1; echo boom; exit 2",
                                 extra="      terminationMessagePolicy: FallbackToLogsOnError\n")
                     + container("custom", "echo done > /tmp/msg; exit 0",
                                 extra="      terminationMessagePath: /tmp/msg\n"))
    nspod.run_yaml(text)
    st = wait_phase(nspod, "p", ("Failed",))["status"]
    by_name = {c["name"]: c["state"]["terminated"] for c in st["containerStatuses"]}
    assert by_name["file"]["message"] == "bad config"
    assert by_name["logs"]["message"] == "line1\nboom"
    assert by_name["custom"]["message"] == "done"


def test_active_deadline(nspod):
    nspod.run_yaml(spec_with("Always", container("a"), extra="  activeDeadlineSeconds: 1\n"))
    st = wait_phase(nspod, "p", ("Failed",), timeout=10)["status"]
    assert st["reason"] == "DeadlineExceeded"


def test_backoff_timings(nspod):
    nspod.run_yaml(spec_with("Always", container("c", "echo started; exit 1")),
                   "--restart-backoff", "0.4s:1.6s")
    wait_for(lambda: cstatus(nspod, "c")["restartCount"] >= 5, timeout=20, what="5 restarts")
    log_dir = os.path.join(nspod.root, "pods", "p", "logs", "c")
    starts = []
    for n in range(6):
        with open(os.path.join(log_dir, f"{n}.log")) as f:
            stamp = f.readline().split()[0]
        starts.append(time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
                      + float("0." + stamp[20:29]))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # First restart immediate, then 0.4, 0.8, 1.6 (the cap), 1.6 - plus start-up time.
    expected = [0.0, 0.4, 0.8, 1.6, 1.6]
    for gap, want in zip(gaps, expected):
        assert want <= gap < want + 0.6, (gaps, expected)
    waiting = cstatus(nspod, "c")["state"]
    assert "waiting" not in waiting or waiting["waiting"]["reason"] == "CrashLoopBackOff"


def test_logs_rotate_and_previous_survives_rotation(nspod):
    noisy = container("c", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; "
                           "[ -e /d/again ] && exec sleep 1000; touch /d/again; exit 1", AT_D)
    result = nspod("run", nspod.manifest(spec_with("Always", noisy)), env={
        "NSPOD_LOG_MAX_SIZE": "16384", "NSPOD_LOG_MAX_FILES": "3", "NSPOD_RESTART_BACKOFF": "0.2s"})
    assert result.returncode == 0
    wait_for(lambda: cstatus(nspod, "c")["restartCount"] == 1 and
             "running" in cstatus(nspod, "c")["state"] and
             nspod("logs", "p", "--tail", "1").stdout == "line-2999\n",
             timeout=15, what="the second run")
    log_dir = os.path.join(nspod.root, "pods", "p", "logs", "c")
    assert sorted(os.listdir(log_dir)) == ["0.log", "0.log.1", "0.log.2",
                                           "1.log", "1.log.1", "1.log.2"]
    assert all(os.path.getsize(os.path.join(log_dir, f)) <= 16384 for f in os.listdir(log_dir))
    previous = nspod("logs", "p", "--previous").stdout.splitlines()
    assert previous[-1] == "line-2999" and previous == sorted(previous, key=lambda l: int(l[5:]))
    assert nspod("logs", "p").stdout.splitlines()[-1] == "line-2999"


def test_sidecar_startup_probe_gates_the_next_init_container(nspod):
    sidecar = container("proxy", "sleep 1.5; touch /d/proxy-ready; exec sleep 1000", AT_D, extra=(
        "      restartPolicy: Always\n"
        "      startupProbe:\n        exec: {command: [test, -e, /d/proxy-ready]}\n"
        "        periodSeconds: 1\n        failureThreshold: 10\n"))
    after = container("after", "test -e /d/proxy-ready && echo gated-ok >> /d/log", AT_D)
    nspod.run_yaml(spec_with("Never", container("app", "cat /d/log; sleep 1000", AT_D),
                             init=sidecar + after))
    st = status(nspod)
    assert st["phase"] == "Pending"
    assert "waiting" in st["initContainerStatuses"][1]["state"]  # not yet: proxy not started
    wait_for(lambda: nspod("logs", "p", "app").stdout == "gated-ok\n", timeout=15,
             what="the app after the gated init container")
