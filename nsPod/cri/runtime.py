"""The RuntimeService and ImageService servicers: each method checks its request, calls
sandboxes/containers/images (on nspod's library) and builds the reply. Errors are answered
by protocol.answering (InputError -> INVALID_ARGUMENT naming the field)."""
import json
import os
import subprocess
import sys
import threading

from nsPod import __version__
from nsPod.errors import InputError
from nsPod.cri import checks, containers, images, sandboxes, store
from nsPod.cri.stats import StatsAndEvents
from nsPod.cri.protocol import (Code, CriError, answering, log, pb,
                                servicer_classes)

RuntimeBase, ImageBase = servicer_classes()
EXEC_OUTPUT_MAX = 16 << 20     # ExecSync's stdout/stderr each (the kubelet caps at 16 MiB)


class Runtime(StatsAndEvents, RuntimeBase):
    def __init__(self, server):
        self.server = server
        self.events = []            # GetContainerEvents subscribers: queues

    @property
    def cfg(self):
        return self.server.config

    # --- the runtime ---------------------------------------------------------------------

    @answering
    def Version(self, request, context):
        checks.text(request.version, "version", 64)
        return pb.VersionResponse(version="0.1.0", runtime_name="nspod",
                                  runtime_version=__version__, runtime_api_version="v1")

    @answering
    def Status(self, request, context):
        conditions = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                      pb.RuntimeCondition(type="NetworkReady", status=True)]
        info = {"config": json.dumps({"root": self.cfg.root, "subnet": self.cfg.subnet,
                                      "bridge": self.cfg.bridge,
                                      "cgroupParent": self.cfg.cgroup_parent})} \
            if request.verbose else {}
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions), info=info,
                                 runtime_handlers=[pb.RuntimeHandler(
                                     name="", features=pb.RuntimeHandlerFeatures())])

    @answering
    def RuntimeConfig(self, request, context):
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(
            cgroup_driver=pb.CGROUPFS))

    @answering
    def UpdateRuntimeConfig(self, request, context):
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            self.server.set_pod_cidr(checks.text(cidr, "runtime_config.network_config.pod_cidr",
                                                 64))
        return pb.UpdateRuntimeConfigResponse()

    # --- sandboxes -----------------------------------------------------------------------

    @answering
    def RunPodSandbox(self, request, context):
        checks.text(request.runtime_handler, "runtime_handler", 64)
        if request.runtime_handler:
            raise InputError(f"runtime_handler: {request.runtime_handler!r}: nspod has only "
                             "the default handler (\"\")")
        made = sandboxes.run(self.cfg, request.config, self.server.hostports)
        self.server.track_monitor(made)
        sandbox_id = made.id
        self.event(sandbox_id, sandbox_id, pb.CONTAINER_CREATED_EVENT)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    @answering
    def StopPodSandbox(self, request, context):
        try:
            pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        except CriError as e:
            if e.code == Code.NOT_FOUND:
                return pb.StopPodSandboxResponse()   # idempotent, as the CRI asks
            raise
        sandboxes.stop(self.cfg, pod, self.server.hostports)
        self.event(pod.id, pod.id, pb.CONTAINER_STOPPED_EVENT)
        return pb.StopPodSandboxResponse()

    @answering
    def RemovePodSandbox(self, request, context):
        try:
            pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        except CriError as e:
            if e.code == Code.NOT_FOUND:
                return pb.RemovePodSandboxResponse()
            raise
        sandboxes.remove(self.cfg, pod, self.server.hostports)
        self.event(pod.id, pod.id, pb.CONTAINER_DELETED_EVENT)
        return pb.RemovePodSandboxResponse()

    @answering
    def PodSandboxStatus(self, request, context):
        pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        status, info = sandboxes.status_message(pod, request.verbose)
        reply = pb.PodSandboxStatusResponse(status=status, info=info)
        if request.verbose:
            reply.containers_statuses.extend(
                containers.status_message(pod, *c)[0] for c in pod.containers())
        return reply

    @answering
    def ListPodSandbox(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        if flt is not None and flt.id:
            checks.object_id(flt.id, "filter.id")
        items = [sandboxes.sandbox_message(p) for p in store.all_pods(self.cfg.root)
                 if sandboxes.matches(p, flt)]
        return pb.ListPodSandboxResponse(items=items)

    # --- containers ----------------------------------------------------------------------

    @answering
    def CreateContainer(self, request, context):
        pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        cid = containers.create(self.cfg, pod, request.config)
        self.event(cid, pod.id, pb.CONTAINER_CREATED_EVENT)
        return pb.CreateContainerResponse(container_id=cid)

    @answering
    def StartContainer(self, request, context):
        pod, (cid, name, record, cstate) = store.find_container(self.cfg.root,
                                                                request.container_id)
        for w in containers.start(self.cfg, pod, name, record, cstate):
            log.info("StartContainer %s: %s", cid, w)
        self.event(cid, pod.id, pb.CONTAINER_STARTED_EVENT)
        return pb.StartContainerResponse()

    @answering
    def StopContainer(self, request, context):
        try:
            pod, (cid, name, _, cstate) = store.find_container(self.cfg.root,
                                                               request.container_id)
        except CriError as e:
            if e.code == Code.NOT_FOUND:
                return pb.StopContainerResponse()
            raise
        containers.stop(self.cfg, pod, name, cstate, request.timeout)
        self.event(cid, pod.id, pb.CONTAINER_STOPPED_EVENT)
        return pb.StopContainerResponse()

    @answering
    def RemoveContainer(self, request, context):
        try:
            pod, (cid, name, record, cstate) = store.find_container(self.cfg.root,
                                                                    request.container_id)
        except CriError as e:
            if e.code == Code.NOT_FOUND:
                return pb.RemoveContainerResponse()
            raise
        if not record:
            raise CriError(f"container_id: {cid} belongs to pod {pod.name}, which nspod run "
                           "made (nspod rm it)", Code.FAILED_PRECONDITION)
        containers.remove(self.cfg, pod, name, record, cstate)
        self.event(cid, pod.id, pb.CONTAINER_DELETED_EVENT)
        return pb.RemoveContainerResponse()

    @answering
    def ListContainers(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        if flt is not None:
            for field in ("id", "pod_sandbox_id"):
                if getattr(flt, field):
                    checks.object_id(getattr(flt, field), f"filter.{field}")
        items = []
        for pod in store.all_pods(self.cfg.root):
            alive = pod.dir.monitor_alive()
            for cid, name, record, cstate in pod.containers():
                if containers.matches(pod, cid, name, record, cstate, flt, alive):
                    items.append(containers.container_message(pod, cid, name, record,
                                                              cstate, alive))
        return pb.ListContainersResponse(containers=items)

    @answering
    def ContainerStatus(self, request, context):
        pod, c = store.find_container(self.cfg.root, request.container_id)
        status, info = containers.status_message(pod, *c, verbose=request.verbose)
        return pb.ContainerStatusResponse(status=status, info=info)

    @answering
    def UpdateContainerResources(self, request, context):
        pod, (_, _, _, cstate) = store.find_container(self.cfg.root, request.container_id)
        if request.HasField("linux"):
            containers.update_resources(pod, cstate, request.linux)
        return pb.UpdateContainerResourcesResponse()

    @answering
    def ReopenContainerLog(self, request, context):
        pod, (_, name, record, cstate) = store.find_container(self.cfg.root,
                                                               request.container_id)
        if cstate is None or not cstate.has("pid"):
            raise CriError(f"container {name} is not running", Code.FAILED_PRECONDITION)
        containers.reopen_log(pod, name, record, cstate)
        return pb.ReopenContainerLogResponse()

    @answering
    def ExecSync(self, request, context):
        pod, (_, name, _, cstate) = store.find_container(self.cfg.root, request.container_id)
        if not request.cmd:
            raise InputError("cmd: must not be empty")
        argv = [checks.text(a, f"cmd[{i}]", 128 * 1024) for i, a in enumerate(request.cmd)]
        timeout = checks.number(request.timeout, "timeout", 0, 86400 * 365) or None
        if cstate is None or not cstate.has("pid"):
            raise CriError(f"container {name} is not running", Code.FAILED_PRECONDITION)
        code, out, err = self.server.run_nspod(["exec", pod.name, "-c", name, "--", *argv],
                                               timeout)
        if code is None:
            raise CriError(f"command timed out after {request.timeout} s",
                           Code.DEADLINE_EXCEEDED)
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    # --- streaming: the stream helper's server ------------------------------------------

    @answering
    def Exec(self, request, context):
        pod, (_, name, _, _) = store.find_container(self.cfg.root, request.container_id)
        argv = [checks.text(a, f"cmd[{i}]", 128 * 1024) for i, a in enumerate(request.cmd)]
        if not argv:
            raise InputError("cmd: must not be empty")
        url = self.server.streaming().exec_url(pod.name, name, argv, request.tty,
                                               request.stdin, request.stdout, request.stderr)
        return pb.ExecResponse(url=url)

    @answering
    def Attach(self, request, context):
        pod, (_, name, _, _) = store.find_container(self.cfg.root, request.container_id)
        url = self.server.streaming().attach_url(pod.name, name, request.tty, request.stdin,
                                                 request.stdout, request.stderr)
        return pb.AttachResponse(url=url)

    @answering
    def PortForward(self, request, context):
        pod = store.find_pod(self.cfg.root, request.pod_sandbox_id)
        ports = [checks.number(p, "port", 1, 65535) for p in request.port]
        url = self.server.streaming().port_forward_url(pod.name, ports)
        return pb.PortForwardResponse(url=url)

    @answering
    def CheckpointContainer(self, request, context):
        raise CriError("CheckpointContainer is not supported", Code.UNIMPLEMENTED)

    @answering
    def ListMetricDescriptors(self, request, context):
        return pb.ListMetricDescriptorsResponse()

    @answering
    def ListPodSandboxMetrics(self, request, context):
        return pb.ListPodSandboxMetricsResponse()

    @answering
    def UpdatePodSandboxResources(self, request, context):
        raise CriError("UpdatePodSandboxResources is not supported", Code.UNIMPLEMENTED)


class Images(ImageBase):
    def __init__(self, server):
        self.server = server

    @property
    def root(self):
        return self.server.config.root

    @answering
    def ListImages(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        return pb.ListImagesResponse(images=images.list_images(self.root, flt))

    @answering
    def ImageStatus(self, request, context):
        return images.status(self.root, request.image, request.verbose)

    @answering
    def PullImage(self, request, context):
        return pb.PullImageResponse(image_ref=images.pull(self.root, request.image,
                                                          request.auth))

    @answering
    def RemoveImage(self, request, context):
        images.remove(self.server.config, request.image)
        return pb.RemoveImageResponse()

    @answering
    def ImageFsInfo(self, request, context):
        return images.fs_info(self.root)


def run_nspod(config, args, timeout):
    """(exit code or None on timeout, stdout, stderr) of `nspod ARGS` under this root."""
    env = dict(os.environ, NSPOD_ROOT=config.root, NSPOD_CGROUP_PARENT=config.cgroup_parent,
               NSPOD_BRIDGE=config.bridge, NSPOD_SUBNET=config.subnet)
    proc = subprocess.Popen([sys.executable, "-P", "-m", "nsPod", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out, err = [], []
    readers = [threading.Thread(target=_read_capped, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_read_capped, args=(proc.stderr, err), daemon=True)]
    for r in readers:
        r.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()        # nspod exec passes SIGTERM on to the command
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = None
    for r in readers:
        r.join(5)
    return code, b"".join(out), b"".join(err)


def _read_capped(pipe, into):
    size = 0
    while True:
        chunk = pipe.read(65536)
        if not chunk:
            break
        if size < EXEC_OUTPUT_MAX:
            into.append(chunk[:EXEC_OUTPUT_MAX - size])
            size += len(chunk)
    pipe.close()
