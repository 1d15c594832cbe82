"""Where nspod follows the kubelet's less obvious rules (issue 9): a new sandbox under
OnFailure, init containers' readiness and waiting reasons, apply during init, postStart
ordering and failure, the phase of a pod with sidecars, the termination message file of a
non-root container, unsafe sysctls. Each test names the kubelet code it follows."""
import json
import os
import signal
import uuid

from busybox import make_rootfs
from helpers import container, container_status, pod_yaml, wait_for, wait_phase

FAST = ("--restart-backoff", "0.2s:1s")
SHARED = "    - name: d\n      emptyDir: {}\n"
AT_D = "        - name: d\n          mountPath: /d\n"
# A name of this run's own: /run/netns/nspod-<pod> is global until names are per state root.
P = f"ks{uuid.uuid4().hex[:8]}"
# Waits until the test creates /d/go (the volume's directory on the host).
GATE = "while [ ! -e /d/go ]; do sleep 0.05; done"


def spec_with(policy, containers, init="", grace=0, volumes=SHARED, extra=""):
    text = pod_yaml(P, containers, volumes=volumes, grace=grace, extra_spec=extra)
    text = text.replace("restartPolicy: Never", f"restartPolicy: {policy}")
    if init:
        text = text.replace("  containers:\n", f"  initContainers:\n{init}  containers:\n")
    return text


def volume_file(nspod, name, pod=None):
    return os.path.join(nspod.root, "pods", pod or P, "volumes", "d", name)


def read_log(nspod):
    with open(volume_file(nspod, "log")) as f:
        return f.read().split()


def open_gate(nspod):
    with open(volume_file(nspod, "go"), "w"):
        pass


def cstatus(nspod, name):
    return container_status(nspod.inspect(P), name)


def test_onfailure_new_sandbox_does_not_rerun_succeeded_containers(nspod):
    """kuberuntime_manager.go computePodActions (createPodSandbox): with restartPolicy
    OnFailure the containers that already succeeded are left out of the new sandbox's
    ContainersToStart; init containers run again from the first."""
    init = container("setup", "echo init >> /d/log", AT_D)
    apps = (container("once", "echo once >> /d/log; exit 0", AT_D)
            + container("long", "echo long >> /d/log; exec sleep 1000", AT_D))
    nspod.run_yaml(spec_with("OnFailure", apps, init=init), *FAST)
    wait_for(lambda: (cstatus(nspod, "once")["state"].get("terminated", {}).get("exitCode") == 0
                      and "running" in cstatus(nspod, "long")["state"]),
             what="once to succeed and long to run")
    before = nspod.inspect(P)
    os.kill(before["runtime"]["pausePid"], signal.SIGKILL)

    def rebuilt():
        obj = nspod.inspect(P)
        long = container_status(obj, "long")
        # The phase is recomputed right after the container's start is recorded: a reader
        # may see the one before the other, so both are waited for.
        return obj["runtime"].get("pausePid") not in (None, before["runtime"]["pausePid"]) \
            and "running" in long["state"] and long["restartCount"] == 1 \
            and obj["status"]["phase"] == "Running" and obj
    after = wait_for(rebuilt, timeout=15, what="a new sandbox, Running")
    once = container_status(after, "once")
    assert once["restartCount"] == 0
    assert once["state"]["terminated"]["exitCode"] == 0
    assert after["status"]["phase"] == "Running"
    assert sorted(read_log(nspod)) == ["init", "init", "long", "long", "once"]


def test_init_containers_ready_and_waiting_reasons(nspod):
    """prober/prober_manager.go UpdatePodStatus: an init container that exited 0 is ready.
    kubelet_pods.go convertToAPIContainerStatuses: in a pod with init containers, every
    container not started yet waits with PodInitializing (not ContainerCreating)."""
    inits = container("first", GATE, AT_D) + container("second", "true", AT_D)
    nspod.run_yaml(spec_with("Never", container("app", mounts=AT_D), init=inits))
    wait_for(lambda: "running" in cstatus(nspod, "first")["state"], what="first to run")
    st = nspod.inspect(P)["status"]
    first, second = st["initContainerStatuses"]
    assert first["ready"] is False  # a running init container is not ready
    assert second["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    open_gate(nspod)
    wait_for(lambda: "running" in cstatus(nspod, "app")["state"], what="the app")
    st = nspod.inspect(P)["status"]
    for init in st["initContainerStatuses"]:
        assert init["state"]["terminated"]["exitCode"] == 0 and init["ready"] is True
    nspod("stop", P, "--timeout", "0")
    st = nspod.inspect(P)["status"]
    assert [c["ready"] for c in st["initContainerStatuses"]] == [True, True]
    assert st["containerStatuses"][0]["ready"] is False


def test_containers_behind_a_failing_init_container_report_pod_initializing(nspod):
    """kubelet_pods.go convertToAPIContainerStatuses: the later init containers and the app
    containers wait with PodInitializing while an earlier init container fails and retries."""
    inits = container("setup", "exit 3") + container("next", "true")
    nspod.run_yaml(spec_with("OnFailure", container("app"), init=inits, volumes=""), *FAST)
    wait_for(lambda: cstatus(nspod, "setup")["restartCount"] >= 1, timeout=15,
             what="setup to be retried")
    st = nspod.inspect(P)["status"]
    assert st["phase"] == "Pending"
    assert st["initContainerStatuses"][0]["ready"] is False
    assert st["initContainerStatuses"][1]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_apply_during_init_does_not_start_the_app_before_init_finished(nspod):
    """kuberuntime_manager.go computePodActions: while initialization is in progress no
    regular container is inspected or started, whatever changed in its spec."""
    text = spec_with("Always", container("app", "echo v1; exec sleep 1000", AT_D),
                     init=container("setup", GATE, AT_D))
    nspod.run_yaml(text)
    wait_for(lambda: "running" in cstatus(nspod, "setup")["state"], what="setup to run")
    out = nspod("apply", nspod.manifest(text.replace("echo v1", "echo v2"), "v2.yaml")).stdout
    assert out.strip() == f"pod {P}: container app restarted (command changed)"
    app = cstatus(nspod, "app")
    assert app["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert app["started"] is False and app["restartCount"] == 0
    assert nspod.inspect(P)["status"]["phase"] == "Pending"
    open_gate(nspod)
    wait_for(lambda: nspod("logs", P, "app").stdout == "v2\n", what="the changed app")
    assert cstatus(nspod, "app")["restartCount"] == 0


def test_poststart_returns_before_the_next_container_starts(nspod):
    """kuberuntime_container.go startContainer runs the postStart hook before it returns, and
    SyncPod starts the containers one after another: the next container starts only once the
    previous container's postStart hook has returned."""
    hook = ("      lifecycle:\n        postStart:\n          exec: {command: [sh, -c, "
            "'sleep 1; echo a-hook-done >> /d/log']}\n")
    apps = (container("a", "echo a-up >> /d/log; exec sleep 1000", AT_D, extra=hook)
            + container("b", "echo b-up >> /d/log; exec sleep 1000", AT_D))
    nspod.run_yaml(spec_with("Never", apps))
    wait_for(lambda: "running" in cstatus(nspod, "b")["state"], timeout=15, what="b to start")
    assert read_log(nspod) == ["a-up", "a-hook-done", "b-up"]
    assert cstatus(nspod, "a")["started"] is True


def test_restarts_wait_for_a_running_poststart_hook(nspod):
    """kubelet SyncPod is blocked while startContainer runs a postStart hook: a restart that
    comes due meanwhile (crash-loop backoff) happens only after the hook has returned."""
    hook = ("      lifecycle:\n        postStart:\n          exec: {command: [sh, -c, "
            "'sleep 2; echo a-hook >> /d/log']}\n")
    apps = (container("a", "echo a-up >> /d/log; exec sleep 1000", AT_D, extra=hook)
            + container("b", "echo b-up >> /d/log; exit 1", AT_D))
    nspod.run_yaml(spec_with("Always", apps), *FAST)
    wait_for(lambda: cstatus(nspod, "b")["restartCount"] >= 2, timeout=15, what="b crash-looping")
    nspod("restart", P, "a")
    wait_for(lambda: read_log(nspod).count("a-hook") == 2, timeout=15, what="a's second hook")
    wait_for(lambda: read_log(nspod)[-1] == "b-up", timeout=15, what="b after the hook")
    log = read_log(nspod)
    second = len(log) - 1 - log[::-1].index("a-up")
    # Between a's second start and its hook's end nothing else started.
    assert log[second:second + 2] == ["a-up", "a-hook"], log
    assert nspod.inspect(P)["status"]["phase"] == "Running"


def test_failing_poststart_kills_the_container_before_the_next_starts(nspod):
    """kuberuntime_container.go startContainer: a failed postStart hook kills the container
    (killContainer with reason FailedPostStartHook: preStop, SIGTERM, grace period) and returns
    only then; the pod's restartPolicy decides about a restart (Never: none)."""
    hook = "      lifecycle:\n        postStart:\n          exec: {command: [sh, -c, 'exit 1']}\n"
    bad = container("bad", "trap 'echo bad-term >> /d/log; exit 7' TERM; echo bad-up >> /d/log; "
                           "while :; do sleep 0.05; done", AT_D, extra=hook)
    after = container("after", "echo after-up >> /d/log; exec sleep 1000", AT_D)
    nspod.run_yaml(spec_with("Never", bad + after, grace=5))
    wait_for(lambda: "running" in cstatus(nspod, "after")["state"], timeout=15,
             what="the next container")
    terminated = cstatus(nspod, "bad")["state"]["terminated"]
    assert terminated["exitCode"] == 7
    assert terminated["message"].startswith("FailedPostStartHook")
    assert cstatus(nspod, "bad")["restartCount"] == 0
    assert read_log(nspod) == ["bad-up", "bad-term", "after-up"]


def test_pod_succeeds_only_once_its_sidecars_have_terminated(nspod):
    """kubelet_pods.go getPhase counts a running restartable init container as running: the
    pod is Running until the sidecar has terminated, then Succeeded (the regular containers
    all exited 0)."""
    sidecar = container("side", "trap 'sleep 2; exit 0' TERM; while :; do sleep 0.05; done",
                        extra="      restartPolicy: Always\n")
    nspod.run_yaml(spec_with("Never", container("app", "sleep 0.3; exit 0"), init=sidecar,
                             grace=10, volumes=""))
    seen = []

    def ended():
        obj = nspod.inspect(P)
        st = obj["status"]
        seen.append((st["phase"], list(container_status(obj, "side")["state"]),
                     list(container_status(obj, "app")["state"])))
        return st["phase"] in ("Succeeded", "Failed") and st
    st = wait_for(ended, timeout=20, what="the pod to end")
    assert st["phase"] == "Succeeded"
    assert "terminated" in st["initContainerStatuses"][0]["state"]
    assert not [s for s in seen if s[0] == "Succeeded" and s[1] == ["running"]], seen
    # The window in which the app is done and the sidecar still stops was observed Running.
    assert ("Running", ["running"], ["terminated"]) in seen, seen


def test_non_root_container_writes_its_termination_message(nspod, tmp_path):
    """kuberuntime_container.go makeMounts: the kubelet creates the termination message file
    mode 0666 before the container starts, so a non-root container can write it (also at a
    custom terminationMessagePath in a directory the image does not have)."""
    rootfs = make_rootfs(str(tmp_path / "rootfs"))
    user = '      securityContext: {"runAsUser": 1000, "runAsGroup": 1000}\n'
    apps = (f"    - name: custom\n      image: {json.dumps(rootfs)}\n"
            "      command: [sh, -c, 'echo custom message > /var/run/app/msg; exit 3']\n"
            "      terminationMessagePath: /var/run/app/msg\n" + user
            + f"    - name: default\n      image: {json.dumps(rootfs)}\n"
            "      command: [sh, -c, 'echo default message > /dev/termination-log; exit 4']\n"
            + user)
    nspod.run_yaml(spec_with("Never", apps, volumes=""))
    st = wait_phase(nspod, P, ("Failed",))["status"]
    by_name = {c["name"]: c["state"]["terminated"] for c in st["containerStatuses"]}
    assert by_name["custom"]["exitCode"] == 3
    assert by_name["custom"].get("message") == "custom message"
    assert by_name["default"].get("message") == "default message"


UNSAFE = """\
  securityContext:
    sysctls:
      - name: net.ipv4.tcp_keepalive_time
        value: "600"
      - name: kernel.msgmax
        value: "12345"
"""


def test_unsafe_sysctls_need_the_nodes_opt_in(nspod):
    """pkg/kubelet/sysctl/allowlist.go patternAllowlist.Admit: a sysctl outside the kubelet's
    safe set (safe_sysctls.go) refuses the pod (SysctlForbidden) unless the node's
    --allowed-unsafe-sysctls names it or a pattern of it."""
    path = nspod.manifest(pod_yaml(P, container("a"), extra_spec=UNSAFE))
    for command in (("run", path), ("validate", path)):
        refused = nspod(*command, check=False)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(
            'error: spec.securityContext.sysctls[1].name: "kernel.msgmax" is an unsafe sysctl '
            "(SysctlForbidden"), refused.stderr
        assert "Traceback" not in refused.stderr
    assert nspod.pods() == []
    bad = nspod("--allowed-unsafe-sysctls", "vm.*", "validate", path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --allowed-unsafe-sysctls: ")
    assert nspod("validate", path, env={"NSPOD_ALLOWED_UNSAFE_SYSCTLS": "kernel.msgmax"}) \
        .returncode == 0
    nspod("--allowed-unsafe-sysctls", "kernel.msg*", "run", path)
    out = nspod("exec", P, "--", "cat", "/proc/sys/kernel/msgmax",
                "/proc/sys/net/ipv4/tcp_keepalive_time").stdout.split()
    assert out == ["12345", "600"]
    with open("/proc/sys/kernel/msgmax") as f:
        assert f.read().strip() != "12345"
    # Admitted once, as the kubelet admits a pod: apply of the running pod needs no list.
    changed = pod_yaml(P, container("a", "sleep 999"), extra_spec=UNSAFE)
    out = nspod("apply", nspod.manifest(changed, "changed.yaml")).stdout
    assert out.strip() == f"pod {P}: container a restarted (command changed)"
