"""The pod's sandbox: its cgroup, volumes, etc files, pause and network, host ports.

Made by running monitor/teardown.py's table of steps in order, each recorded in the state
before it is taken; made again (pause and network) when pause dies and the policy restarts
the pod; undone by the same table's undo steps at teardown.
"""
import os
import signal
import sys

from nsPod.errors import NspodError, describe
from nsPod.kernel import volumes
from nsPod.kernel.cgroups import CgroupExists, Limits, pod_cgroup_name
from nsPod.kernel.cgroups import parents as cgroup_parents
from nsPod.monitor import phase, teardown
from nsPod.plan import lifecycle
from nsPod.plan.lifecycle import APP
from nsPod.plan.make import PAUSE_CGROUP, SHM_SIZE
from nsPod.store import state
from nsPod.store.podstate import Network, Proc


class Sandbox:
    def __init__(self, monitor):
        self.m = monitor
        self.forwarders = []       # hostPort relays (monitor/ports.py)

    def make(self):
        """Every step of the table, in order."""
        for step in teardown.STEPS:
            getattr(self, step.do)()

    def make_pod_cgroup(self):
        # Recorded before it is made: a crash in between leaves gc a name that does not
        # exist, which it takes as removed. The mkdir is exclusive: a directory already
        # there is someone else's and is never adopted; then the record goes, so neither
        # teardown nor gc touches it.
        m = self.m
        m.pod_cgroup = pod_cgroup_name(m.plan.uid)
        m.state.cgroup = f"{m.plan.cgroup_parent}/{m.cgroup_rel()}"
        m.save()
        m.test_point("cgroup-recorded")
        try:
            m.cgroups = cgroup_parents.create(
                m.dir.root, m.plan.cgroup_parent, m.cgroup_rel(),
                Limits(**m.plan.pod_limits), exclusive=True)
        except CgroupExists:
            m.state.cgroup = None
            m.save()
            raise
        m.test_point("cgroup")
        m.cgroups.create(m.cgroup_rel(PAUSE_CGROUP), Limits())

    def make_volumes(self):
        plan = self.m.plan
        for v in plan.volumes:
            if v.kind in ("tmpfs", "secret"):   # a Secret's volume is a tmpfs too
                self.record_mount(v.path)
            volumes.create(v)
        if plan.shm_path:
            os.makedirs(plan.shm_path, exist_ok=True)
            self.record_mount(plan.shm_path)
            from nsPod.kernel.mounts import mount_tmpfs
            from nsPod.kernel.syscalls import MountFlag
            mount_tmpfs(plan.shm_path, f"mode=1777,size={SHM_SIZE}",
                        MountFlag.MS_NOSUID | MountFlag.MS_NODEV | MountFlag.MS_NOEXEC)
        self.m.test_point("volumes")

    def record_mount(self, path):
        self.m.state.mounts.append(path)
        self.m.save()

    def write_etc_files(self):
        """The pod's hosts, hostname and resolv.conf: one copy, bind-mounted into each container."""
        etc = self.m.dir.file("etc")
        os.makedirs(etc, exist_ok=True)
        for name, content in self.m.plan.etc_files.items():
            state.write_text(os.path.join(etc, name), content)

    def make_sandbox(self):
        """pause in the pod's new namespaces, then its network (the same IP every time)."""
        m = self.m
        pid = m.launcher.spawn_pause()
        m.children[pid] = ("pause",)
        pause, m.state.namespaces = m.launcher.identify(pid, ("net", "ipc", "uts", "pid"))
        m.state.pause = Proc.from_json(pause)
        m.save()
        m.test_point("sandbox")
        self.connect_network()

    def connect_network(self):
        m = self.m
        network = m.plan.network
        if network["mode"] != "bridge":
            return
        from nsPod.net import client as netclient
        root, name, pid = m.dir.root, m.plan.name, m.state.pause.pid
        # Recorded first, with the names and the netns netd is about to bind: whatever part
        # of it exists, teardown and gc know to undo it, and that it is this pod's. A netns
        # name an earlier sandbox of the pod left is recorded as stale: netd may replace it.
        previous = m.state.get("network") or {}
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        stale = previous.get("netnsInode") if previous.get("netnsInode") != inode else \
            previous.get("staleNetnsInode")
        m.state.network = Network(
            bridge=network["bridge"], subnet=network["subnet"],
            hostVeth=netclient.host_veth_name(root, name, network["bridge"]),
            netns=netclient.netns_path(root, name), netnsInode=inode)
        if stale:
            m.state.network.staleNetnsInode = stale
        m.state.podIP = network["ip"]
        m.save()
        m.test_point("network-recorded")
        reply = netclient.attach(root, name, pid, network["bridge"], network["subnet"],
                                 preferred=network["ip"], netns_inode=inode,
                                 stale_netns_inode=stale)
        reply.pop("ok", None)
        m.state.network = Network.from_json(reply)
        m.state.network.subnet = network["subnet"]
        m.state.podIP = reply["ip"]
        m.save()
        m.test_point("network")

    def publish_host_ports(self):
        m = self.m
        if not m.plan.host_ports:
            return
        from nsPod.monitor import ports
        for host_port, container_port, _ in m.plan.host_ports:
            listener = ports.bind(host_port)
            self.forwarders.append(
                ports.Forwarder(m.selector, listener, m.state.podIP, container_port))
        m.state.hostPorts = m.plan.host_ports
        m.save()

    # --- pause died: a new sandbox ---------------------------------------------------------

    def on_pause_exit(self, code, sig):
        m = self.m
        if m.stopping:
            return
        how = f"signal {sig}" if sig else f"exit code {code}"
        m.scheduler.drop_deferred()
        if m.plan.restart_policy == "Never":
            m.final_reason = ("SandboxDied", f"the pod's pause process ended ({how})")
            m.stopper.begin_stop(0)
            return
        # A new sandbox: everything of the old one goes first, then pause, network, init
        # containers in order and the app containers again, each restart counted.
        m.sandbox_down = True
        m.state.pause = None
        print(f"nspod monitor: pause ended ({how}); making a new sandbox", file=sys.stderr)
        for run in m.runs.values():
            m.timers.cancel(run.pending)
            run.pending = None
            m.stop_checks(run)
            if run.pid:
                m.launcher.kill(run.pid, signal.SIGKILL)
        m.save()
        self.rebuild_when_reaped()

    def rebuild_when_reaped(self):
        """The new sandbox comes once the old one's last container has been reaped."""
        if self.m.sandbox_down and not any(r.pid for r in self.m.runs.values()):
            self.rebuild()

    def rebuild(self):
        m = self.m
        if m.stopping:
            return  # told to stop while the old sandbox went down: no new one
        apps = []
        for run in m.ordered((APP,)):
            terminated = m.cstate(run).state.get("terminated") or {}
            apps.append((run.name, terminated.get("exitCode")))
        make, skip = lifecycle.after_sandbox_death(m.plan.restart_policy, apps)
        if not make:
            # Every app container has succeeded: nothing to run in a new sandbox.
            phase.update(m)
            m.stopper.begin_stop(0)
            return
        for run in m.runs.values():
            if run.name in skip:
                continue  # OnFailure: it succeeded, the kubelet does not run it again
            run.launched = False
            run.completed = False
            run.done = False
        m.state.initialized = False
        try:
            self.make_sandbox()
        except (NspodError, OSError) as e:
            m.final_reason = ("SandboxCreationFailed", describe(e))
            m.stopper.begin_stop(0)
            return
        m.sandbox_down = False
        for forwarder in self.forwarders:
            forwarder.target = (m.state.podIP, forwarder.target[1])
        m.scheduler.advance()
        phase.update(m)

    # --- teardown: every step idempotent ---------------------------------------------------

    def teardown(self):
        m = self.m
        m.test_point("teardown")
        for forwarder in self.forwarders:
            forwarder.close()
        self.forwarders = []
        m.launcher.drain_logs()

        def failed(step, e):
            print(f"nspod monitor: {step.what}: {describe(e)}", file=sys.stderr)

        teardown.undo(m.dir.root, m.plan.name, m.state, failed,
                      after=lambda step: m.test_point(f"teardown-{step.what.split()[0]}"))
        phase.record_end(m)
        m.save()
