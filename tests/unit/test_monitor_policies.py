"""The monitor's policies on a fake spawner, cgroup driver and clock: no root, no process.

The Monitor's parts act only through its Launcher (processes) and its cgroup driver; here
both are fakes that record what they were asked, and the timers run on a clock the test
moves. Each test drives the real scheduler, checks, stopper and phase code the way the
loop would (a child's exit is Monitor.on_exit, time is Clock.tick) and reads what the fake
was asked to do and what state.json would say. Every test runs in milliseconds.
"""
import signal

import pytest

from nsPod.errors import NspodError
from nsPod.monitor import phase
from nsPod.monitor.supervisor import Monitor
from nsPod.plan.make import ContainerPlan, PodPlan
from nsPod.store.podstate import Proc

TERM, KILL = signal.SIGTERM, signal.SIGKILL


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeDir:
    root, path = "/nonexistent-root", "/nonexistent-root/pods/p"

    def __init__(self):
        self.saves = 0

    def write_state(self, pod_state):
        self.saves += 1

    def file(self, *parts):
        return "/".join((self.path,) + parts)


class FakeLauncher:
    """Records every start, check and signal; a container's pid is 100+, a check's 500+."""

    def __init__(self):
        self.events = []
        self.fail = set()          # names whose start fails (StartError)
        self.pids = {}             # pid -> container name, or (name, check kind)
        self.next_pid, self.next_check = 100, 500

    def start_container(self, run, cstate):
        if run.name in self.fail:
            raise NspodError(f"exec {run.plan.argv[0]}: no such file")
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.pids[pid] = run.name
        self.events.append(("start", run.name))
        return pid, "2026-01-01T00:00:00Z"

    def identify(self, pid, kinds=None):
        return {"pid": pid, "startTime": 1}, {}

    def container_exited(self, run, cstate):
        return False

    def drain(self, run):
        pass

    def termination_message(self, run, cstate, code):
        return ""

    def spawn_check(self, run, cstate, handler):
        pid, self.next_check = self.next_check, self.next_check + 1
        self.pids[pid] = (run.name, handler["what"])
        self.events.append(("check", run.name, handler["what"]))
        return pid

    def kill(self, pid, sig):
        self.events.append(("kill", self.pids.get(pid, pid), sig))

    def drain_logs(self):
        pass

    def take(self):
        events, self.events = self.events, []
        return events


def container(name, init=False, sidecar=False, **lifecycle):
    for kind, value in list(lifecycle.items()):
        if kind.endswith("Probe"):
            spec = {"initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10,
                    "successThreshold": 1, "failureThreshold": 3,
                    "terminationGracePeriodSeconds": None}
            spec.update(value)
            spec["handler"] = {"kind": "exec", "command": ["true"], "what": kind}
            lifecycle[kind] = spec
        elif kind in ("postStart", "preStop"):
            lifecycle[kind] = dict({"kind": "exec", "command": ["true"], "what": kind}, **value)
    if sidecar:
        lifecycle["restartPolicy"] = "Always"
    return ContainerPlan(name=name, argv=[f"/bin/{name}"], env=[], cwd="/", mounts=[],
                         init=init or sidecar, lifecycle=lifecycle)


class Pod:
    def __init__(self, containers, init=(), restart_policy="Always", grace=30):
        self.clock = Clock()
        self.fake = FakeLauncher()
        plan = PodPlan(name="p", namespace="default", uid="u", hostname="p", namespaces={},
                       volumes=[], containers=list(containers), init_containers=list(init),
                       restart_policy=restart_policy, grace_seconds=grace)
        self.m = Monitor(FakeDir(), plan, backoff=(10.0, 300.0), launcher=self.fake,
                         clock=self.clock)
        self.m.selector.close()    # the loop is not run: no fd kept
        self.m.state.pause = Proc(pid=1, startTime=1)
        self.m.children[1] = ("pause",)
        self.fake.pids[1] = "pause"

    def start(self):
        warnings = self.m.scheduler.advance()
        phase.update(self.m)
        return warnings

    def pid(self, name):
        return self.m.runs[name].pid

    def exit(self, name, code=0, sig=None):
        """The container's process ended (as waitpid reports it)."""
        self.m.on_exit(self.pid(name), sig if sig else code << 8)

    def check_exit(self, name, kind, ok=True):
        pid = next(p for p, what in self.fake.pids.items() if what == (name, kind)
                   and p in self.m.children)
        self.m.on_exit(pid, 0 if ok else 1 << 8)

    def tick(self, seconds):
        self.clock.t += seconds
        self.m.timers.run()

    def cstate(self, name):
        return self.m.state.containers[name].to_json()  # a snapshot, as it is saved

    @property
    def phase(self):
        return self.m.state.phase


def starts(events):
    return [e[1] for e in events if e[0] == "start"]


# --- the state the monitor keeps: store/podstate.py's records --------------------------------

def test_the_monitors_state_is_typed_and_saved_as_state_json_was():
    """The monitor's state is a PodState of records; what it saves round-trips through the
    schema with no key the schema does not list (the state.json format is unchanged)."""
    from nsPod.store.podstate import ContainerState, ContainerStatus, PodState
    pod = Pod([container("app")], init=[container("setup", init=True)])
    pod.start()
    pod.exit("setup", 0)
    pod.exit("app", 1)
    pod.tick(0)
    state = pod.m.state
    assert isinstance(state, PodState) and isinstance(state.containers["app"], ContainerStatus)
    assert isinstance(state.containers["app"].lastState, ContainerState)
    saved = state.to_json()
    assert saved["containers"]["app"]["lastState"]["terminated"]["exitCode"] == 1
    assert saved["containers"]["app"]["state"] == {"running": {
        "startedAt": "2026-01-01T00:00:00Z"}}
    assert set(saved) <= set(PodState.fields)
    assert PodState.from_json(saved).to_json() == saved
    again = PodState.from_json(saved)
    assert not again.extra and not any(c.extra for c in again.containers.values())


# --- restart decisions: restartPolicy x exit code x backoff ----------------------------------

@pytest.mark.parametrize("policy, code, restarted", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False),
    ("OnFailure", 1, True), ("Never", 0, False), ("Never", 1, False)])
def test_an_app_container_is_restarted_by_the_pods_policy(policy, code, restarted):
    """kubelet's ShouldContainerBeRestarted (pkg/kubelet/container/helpers.go): Always
    restarts every exit, OnFailure a non-zero one, Never none."""
    pod = Pod([container("app")], restart_policy=policy)
    pod.start()
    pod.exit("app", code)
    pod.tick(0)    # the first restart is immediate
    assert starts(pod.fake.take()) == (["app", "app"] if restarted else ["app"])
    if not restarted:
        assert pod.phase == ("Succeeded" if code == 0 else "Failed")
        assert pod.m.stopping
    else:
        assert pod.phase == "Running" and pod.cstate("app")["restartCount"] == 1


def test_crash_loop_backoff_doubles_up_to_the_maximum_and_resets_after_a_long_run():
    """kubelet's backoff: immediate, then 10 s doubling to 300 s; 10 minutes of running
    starts it afresh."""
    pod = Pod([container("app")], restart_policy="Always")
    pod.start()
    delays = []
    for _ in range(8):
        pod.exit("app", 1)
        delays.append(pod.m.timers.next_timeout())
        if delays[-1]:
            waiting = pod.cstate("app")["state"]["waiting"]
            assert waiting["reason"] == "CrashLoopBackOff"
            assert waiting["message"].startswith(f"back-off {delays[-1]:g}s restarting")
        pod.tick(delays[-1])
        assert pod.pid("app") is not None
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    pod.tick(600)     # ran ten minutes: the next restart is immediate again
    pod.exit("app", 1)
    assert pod.m.timers.next_timeout() == 0


def test_a_start_error_is_the_containers_end_and_a_returned_warning():
    """A start that fails is that container's StartError (exit code 128), reported to the
    caller as a warning; the pod and its other containers go on."""
    pod = Pod([container("bad"), container("good")], restart_policy="Never")
    pod.fake.fail.add("bad")
    warnings = pod.start()
    assert warnings == ["container bad: StartError: exec /bin/bad: no such file"]
    assert pod.cstate("bad")["state"]["terminated"]["exitCode"] == 128
    assert pod.pid("good") is not None and pod.phase == "Running"


# --- init containers and sidecars ------------------------------------------------------------

def test_init_containers_run_one_at_a_time_before_the_app_containers():
    pod = Pod([container("app")], init=[container("i1", init=True), container("i2", init=True)])
    pod.start()
    assert starts(pod.fake.take()) == ["i1"]
    assert pod.phase == "Pending"
    pod.exit("i1", 0)
    assert starts(pod.fake.take()) == ["i2"]
    pod.exit("i2", 0)
    assert starts(pod.fake.take()) == ["app"]
    assert pod.phase == "Running" and pod.m.state.initialized


@pytest.mark.parametrize("policy, rerun", [("Always", True), ("OnFailure", True),
                                           ("Never", False)])
def test_a_failed_init_container_reruns_unless_the_pod_never_restarts(policy, rerun):
    pod = Pod([container("app")], init=[container("i1", init=True)], restart_policy=policy)
    pod.start()
    pod.exit("i1", 3)
    pod.tick(0)
    assert starts(pod.fake.take()) == (["i1", "i1"] if rerun else ["i1"])
    if not rerun:
        assert pod.phase == "Failed" and pod.m.init_failed == "i1"


def test_a_sidecar_gates_the_next_init_container_until_its_startup_probe_succeeded():
    """KEP-753 native sidecars: the next init container starts once the sidecar has
    started, i.e. its startupProbe succeeded; the sidecar keeps running beside the apps."""
    pod = Pod([container("app")], init=[container("side", sidecar=True, startupProbe={}),
                                        container("i1", init=True)])
    pod.start()
    assert starts(pod.fake.take()) == ["side"]
    pod.tick(0)       # the startup probe's first run
    assert pod.fake.take() == [("check", "side", "startupProbe")]
    pod.check_exit("side", "startupProbe", ok=False)
    assert starts(pod.fake.take()) == []           # still not started: i1 waits
    pod.tick(10)
    pod.check_exit("side", "startupProbe", ok=True)
    assert starts(pod.fake.take()) == ["i1"]
    pod.exit("i1", 0)
    assert starts(pod.fake.take()) == ["app"]
    assert pod.pid("side") is not None


# --- probes ----------------------------------------------------------------------------------

def test_the_startup_probe_gates_liveness_and_readiness():
    pod = Pod([container("app", startupProbe={}, livenessProbe={}, readinessProbe={})])
    pod.start()
    pod.tick(0)
    assert pod.fake.take()[-1:] == [("check", "app", "startupProbe")]
    assert not pod.cstate("app")["started"] and not pod.cstate("app")["ready"]
    pod.tick(0)
    assert pod.fake.take() == []                   # nothing else probes meanwhile
    pod.check_exit("app", "startupProbe")
    assert pod.cstate("app")["started"] and not pod.cstate("app")["ready"]
    pod.tick(0)
    assert sorted(e[2] for e in pod.fake.take()) == ["livenessProbe", "readinessProbe"]
    pod.check_exit("app", "readinessProbe")
    assert pod.cstate("app")["ready"]
    assert pod.m.state.conditions["Ready"].status is True


def test_liveness_failures_up_to_the_threshold_kill_and_the_policy_restarts():
    """kubelet prober: failureThreshold consecutive failures; the container is killed
    (SIGTERM, SIGKILL after the grace period) and restarted by restartPolicy."""
    pod = Pod([container("app", livenessProbe={"failureThreshold": 3})], grace=5)
    pod.start()
    pod.fake.take()
    for i in range(3):
        pod.tick(0 if i == 0 else 10)
        pod.check_exit("app", "livenessProbe", ok=False)
    assert pod.fake.take()[-1] == ("kill", "app", TERM)
    pod.tick(5)
    assert pod.fake.take() == [("kill", "app", KILL)]
    pod.exit("app", sig=KILL)
    pod.tick(0)
    assert starts(pod.fake.take()) == ["app"]
    assert pod.cstate("app")["lastState"]["terminated"]["exitCode"] == 137


def test_readiness_failures_unready_without_a_kill():
    pod = Pod([container("app", readinessProbe={"failureThreshold": 2})])
    pod.start()
    pod.tick(0)
    pod.check_exit("app", "readinessProbe")
    assert pod.cstate("app")["ready"]
    for _ in range(2):
        pod.tick(10)
        pod.check_exit("app", "readinessProbe", ok=False)
    assert not pod.cstate("app")["ready"]
    assert not any(e[0] == "kill" for e in pod.fake.take())


# --- hooks -----------------------------------------------------------------------------------

def test_post_start_holds_the_next_container_until_it_returns():
    """kuberuntime startContainer runs postStart before it returns: the next container of
    SyncPod starts after it."""
    pod = Pod([container("a", postStart={}), container("b")])
    pod.start()
    assert pod.fake.take() == [("start", "a"), ("check", "a", "postStart")]
    assert not pod.cstate("a")["started"]
    pod.check_exit("a", "postStart")
    assert starts(pod.fake.take()) == ["b"]
    assert pod.cstate("a")["started"]


def test_a_failed_post_start_kills_the_container_and_names_why():
    pod = Pod([container("a", postStart={})], restart_policy="Never")
    pod.start()
    pod.check_exit("a", "postStart", ok=False)
    assert pod.fake.take()[-1] == ("kill", "a", TERM)
    pod.exit("a", sig=TERM)
    assert pod.cstate("a")["state"]["terminated"]["message"].startswith("FailedPostStartHook")


def test_pre_stop_runs_before_sigterm():
    pod = Pod([container("a", preStop={})], grace=30)
    pod.start()
    pod.fake.take()
    pod.m.stopper.begin_stop(30)
    assert pod.fake.take() == [("check", "a", "preStop")]     # no SIGTERM yet
    pod.check_exit("a", "preStop")
    assert pod.fake.take() == [("kill", "a", TERM)]


# --- stopping --------------------------------------------------------------------------------

def test_stop_terminates_apps_then_sidecars_then_pause_and_kills_at_the_deadline():
    pod = Pod([container("app")], init=[container("s1", sidecar=True),
                                        container("s2", sidecar=True)], grace=30)
    pod.start()
    assert starts(pod.fake.take()) == ["s1", "s2", "app"]
    pod.m.stopper.begin_stop(30)
    assert pod.fake.take() == [("kill", "app", TERM)]          # sidecars keep running
    assert not pod.m.stopper.finished()
    pod.exit("app", sig=TERM)
    assert not pod.m.stopper.finished()
    # KEP-753: sidecars in reverse order, once the app containers are gone
    assert pod.fake.take() == [("kill", "s2", TERM), ("kill", "s1", TERM)]
    pod.exit("s2", 0)
    pod.tick(30)                                                # the grace period is over
    assert ("kill", "s1", KILL) in pod.fake.take()
    pod.exit("s1", sig=KILL)
    assert not pod.m.stopper.finished()
    assert pod.fake.take() == [("kill", "pause", TERM)]
    pod.m.on_exit(1, 0)
    assert pod.m.stopper.finished()


def test_a_zero_grace_stop_kills_at_once():
    pod = Pod([container("app", preStop={})])
    pod.start()
    pod.fake.take()
    pod.m.stopper.begin_stop(0)
    assert ("kill", "app", KILL) in pod.fake.take()


# --- phase -----------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, codes, expected", [
    ("Never", (0, 0), "Succeeded"), ("Never", (0, 1), "Failed"),
    ("OnFailure", (0, 0), "Succeeded"), ("Always", (0, 0), "Running")])
def test_the_phase_follows_the_app_containers(policy, codes, expected):
    pod = Pod([container("a"), container("b")], restart_policy=policy)
    pod.start()
    assert pod.phase == "Running"
    for name, code in zip("ab", codes):
        pod.exit(name, code)
    assert pod.phase == expected


def test_the_phase_stays_running_until_the_sidecars_have_ended():
    pod = Pod([container("app")], init=[container("side", sidecar=True)],
              restart_policy="Never")
    pod.start()
    pod.exit("app", 0)
    assert pod.m.stopping and pod.phase == "Running"
    pod.exit("side", sig=TERM)
    assert pod.phase == "Succeeded"


def test_the_deadline_fails_the_pod():
    pod = Pod([container("app")])
    pod.m.timers.at(60, pod.m.scheduler.on_deadline)
    pod.start()
    pod.tick(60)
    assert pod.m.final_reason[0] == "DeadlineExceeded" and pod.m.stopping
    pod.exit("app", sig=TERM)
    assert pod.phase == "Failed"


# --- apply: the fake cgroup driver -----------------------------------------------------------

class FakeCgroups:
    def __init__(self, refuse):
        self.limits, self.refuse = {}, refuse

    def path(self, rel):
        return "/"        # every container's cgroup exists

    def save_limits(self, rel):
        return self.limits.get(rel, "old")

    def set_limits(self, rel, limits):
        if rel.endswith(self.refuse):
            raise NspodError(f"write {rel}/memory.max: Device or resource busy")
        self.limits[rel] = "new"

    def restore_limits(self, rel, saved):
        self.limits[rel] = saved


def test_apply_sets_every_limit_or_none():
    pod = Pod([container("a"), container("b")])
    pod.m.pod_cgroup = "podu"
    pod.m.cgroups = FakeCgroups(refuse="b")
    with pytest.raises(NspodError, match="memory.max"):
        pod.m.control.set_limits_all_or_nothing([container("a"), container("b")])
    assert set(pod.m.cgroups.limits.values()) == {"old"}


# --- the one table of (do, undo) steps -------------------------------------------------------

def test_setup_and_both_teardowns_run_the_same_table(monkeypatch):
    """crun's container_init_setup: one table of named steps; the monitor's setup runs each
    `do` in order, its teardown runs the `undo`s through teardown.undo (as api's
    clean_up_after_monitor does after a dead monitor: tests/integration/test_kill_points.py),
    each even when one before it failed."""
    from nsPod.monitor import sandbox, teardown
    done = []
    for step in teardown.STEPS:
        monkeypatch.setattr(sandbox.Sandbox, step.do, lambda self, n=step.name: done.append(n))
    pod = Pod([container("app")])
    pod.m.sandbox.make()
    assert done == [step.name for step in teardown.STEPS]

    undone, failures = [], []

    def undo(name, fail=False):
        def step(root, pod_name, pod_state):
            undone.append(name)
            if fail:
                raise OSError(16, "Device or resource busy")
        return step
    by_name = {step.name: step for step in teardown.STEPS}
    monkeypatch.setattr(by_name["volumes"], "undo", undo("volumes", fail=True))
    monkeypatch.setattr(by_name["cgroup"], "undo", undo("cgroup"))
    monkeypatch.setattr(by_name["sandbox"], "undo", undo("sandbox"))
    teardown.undo("/root", "p", {}, lambda step, e: failures.append(step.what))
    assert undone == ["volumes", "cgroup", "sandbox"] and failures == ["unmount volumes"]
    # the monitor's own teardown: the same steps, its failures in monitor.log
    undone.clear()
    pod.m.sandbox.teardown()
    assert undone == ["volumes", "cgroup", "sandbox"]
    assert pod.m.state.phase == "Failed"     # app never ended: as if killed (137)
