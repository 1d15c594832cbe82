"""The stats and events half of the RuntimeService: cgroup figures per container and
sandbox, and GetContainerEvents' stream (a bounded queue per subscriber)."""
import queue
import time

from nsPod.cri import containers, sandboxes, store
from nsPod.cri.protocol import CriError, answering, answering_stream, pb


class StatsAndEvents:
    """Mixed into runtime.Runtime (which has .cfg and .events)."""

    # --- stats ---------------------------------------------------------------------------

    def _container_stats(self, pod, cid, name, record, cstate):
        attributes = pb.ContainerAttributes(id=cid, metadata=containers.metadata_of(name, record),
                                            labels=record.get("labels", {}),
                                            annotations=record.get("annotations", {}))
        stats = pb.ContainerStats(attributes=attributes)
        if cstate is not None and cstate.get("cgroup") and pod.dir.monitor_alive():
            driver, rel = containers.cgroup_rel(pod, cstate)
            _fill(stats, driver.stats(rel))
        return stats

    @answering
    def ContainerStats(self, request, context):
        pod, c = store.find_container(self.cfg.root, request.container_id)
        return pb.ContainerStatsResponse(stats=self._container_stats(pod, *c))

    @answering
    def ListContainerStats(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        out = []
        for pod in store.all_pods(self.cfg.root):
            if flt is not None and flt.pod_sandbox_id and not pod.id.startswith(flt.pod_sandbox_id):
                continue
            for c in pod.containers():
                if flt is not None and flt.id and not c[0].startswith(flt.id):
                    continue
                labels = c[2].get("labels", {})
                if flt is not None and not all(labels.get(k) == v
                                               for k, v in flt.label_selector.items()):
                    continue
                if c[3] is not None and c[3].has("pid"):
                    out.append(self._container_stats(pod, *c))
        return pb.ListContainerStatsResponse(stats=out)

    def _sandbox_stats(self, pod):
        attributes = pb.PodSandboxAttributes(id=pod.id, metadata=sandboxes.metadata_of(pod),
                                             labels=sandboxes.labels_of(pod),
                                             annotations=sandboxes.annotations_of(pod))
        linux = pb.LinuxPodSandboxStats()
        if pod.ready() and pod.state.get("cgroup"):
            from nsPod.kernel.cgroups import open_driver, rel_in_parent
            parent = pod.plan["cgroup_parent"]
            s = open_driver(parent).stats(rel_in_parent(pod.state.cgroup, parent))
            holder = pb.ContainerStats()
            _fill(holder, s)
            linux.cpu.CopyFrom(holder.cpu)
            linux.memory.CopyFrom(holder.memory)
            linux.containers.extend(self._container_stats(pod, *c) for c in pod.containers()
                                    if c[3] is not None and c[3].has("pid"))
        return pb.PodSandboxStats(attributes=attributes, linux=linux)

    @answering
    def PodSandboxStats(self, request, context):
        pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self._sandbox_stats(pod))

    @answering
    def ListPodSandboxStats(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        out = []
        for pod in store.all_pods(self.cfg.root):
            if flt is not None and flt.id and not pod.id.startswith(flt.id):
                continue
            labels = sandboxes.labels_of(pod)
            if flt is not None and not all(labels.get(k) == v
                                           for k, v in flt.label_selector.items()):
                continue
            out.append(self._sandbox_stats(pod))
        return pb.ListPodSandboxStatsResponse(stats=out)

    # --- events --------------------------------------------------------------------------

    def event(self, cid, sandbox_id, kind):
        ev = pb.ContainerEventResponse(container_id=cid, container_event_type=kind,
                                       created_at=time.time_ns())
        for q in list(self.events):
            try:
                q.put_nowait((ev, sandbox_id))
            except queue.Full:
                pass        # a subscriber that does not read loses events, not the server

    @answering_stream
    def GetContainerEvents(self, request, context):
        q = queue.Queue(maxsize=1024)
        self.events.append(q)
        try:
            while context.is_active():
                try:
                    ev, sandbox_id = q.get(timeout=1.0)
                except queue.Empty:
                    continue
                try:
                    pod = store.find_pod(self.cfg.root, sandbox_id)
                    ev.pod_sandbox_status.CopyFrom(sandboxes.status_message(pod)[0])
                except CriError:
                    pass
                yield ev
        finally:
            self.events.remove(q)


def _fill(stats, s):
    now = time.time_ns()
    cpu = (s or {}).get("cpu") or {}
    mem = (s or {}).get("memory") or {}
    stats.cpu.timestamp = now
    if cpu.get("usageUsec") is not None:
        stats.cpu.usage_core_nano_seconds.value = cpu["usageUsec"] * 1000
    stats.memory.timestamp = now
    if mem.get("usage") is not None:
        stats.memory.working_set_bytes.value = mem["usage"]
        stats.memory.usage_bytes.value = mem["usage"]
    stats.writable_layer.timestamp = now
    stats.writable_layer.used_bytes.value = 0


