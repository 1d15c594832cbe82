"""The CRI <-> library mapping, through a real gRPC client on a real unix socket: what every
request field turns into, and that hostile fields are INVALID_ARGUMENT naming the field with
nothing made (pods, containers and images need root and the kernel: tests/integration)."""
import os

import pytest

from nsPod import config as config_module
from nsPod.errors import InputError
from nsPod.cri import checks, sandboxes, security
from nsPod.cri.protocol import Code, RpcError, channel, image_stub, pb, runtime_stub
from nsPod.cri.server import Server, socket_path


@pytest.fixture
def cri(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the CRI server checks its state root as root does: run as root")
    root = tmp_path / "root"
    cfg = config_module.load(root=str(root), cgroup_parent="nspod-unit-cri")
    server = Server(cfg, f"unix://{tmp_path}/cri.sock")
    server.start()
    ch = channel(f"unix://{tmp_path}/cri.sock")
    try:
        yield runtime_stub(ch), image_stub(ch), server, root
    finally:
        ch.close()
        server.stop()


def refused(call, request, *words, code=Code.INVALID_ARGUMENT):
    with pytest.raises(RpcError) as e:
        call(request)
    assert e.value.code() == code, e.value.details()
    for w in words:
        assert w in e.value.details(), e.value.details()
    return e.value.details()


def pod_config(**kw):
    md = kw.pop("metadata", {"name": "web", "namespace": "default", "uid": "u1"})
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(**md), **kw)


def test_version_status_and_runtime_config(cri):
    rt, _, _, _ = cri
    v = rt.Version(pb.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("nspod", "v1")
    conditions = {c.type: c.status for c in rt.Status(pb.StatusRequest()).status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert rt.RuntimeConfig(pb.RuntimeConfigRequest()).linux.cgroup_driver == pb.CGROUPFS


def test_the_socket_is_root_only(cri, tmp_path):
    assert os.stat(tmp_path / "cri.sock").st_mode & 0o777 == 0o600


def test_empty_root_lists_nothing(cri):
    rt, im, _, _ = cri
    assert list(rt.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
    assert list(rt.ListContainers(pb.ListContainersRequest()).containers) == []
    assert list(im.ListImages(pb.ListImagesRequest()).images) == []
    # A missing image is an empty status, not an error (the kubelet then pulls).
    status = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="busybox:1")))
    assert not status.HasField("image")


@pytest.mark.parametrize("field, md, words", [
    ("name", {"name": "../etc", "uid": "u"}, ["config.metadata.name", "'../etc'"]),
    ("empty name", {"name": "", "uid": "u"}, ["config.metadata.name", "empty"]),
    ("namespace", {"name": "a", "namespace": "Bad_NS", "uid": "u"},
     ["config.metadata.namespace"]),
    ("nul", {"name": "a\0b", "uid": "u"}, ["config.metadata.name", "NUL"]),
])
def test_hostile_sandbox_metadata_is_refused_naming_the_field(cri, field, md, words):
    rt, _, _, root = cri
    refused(rt.RunPodSandbox, pb.RunPodSandboxRequest(config=pod_config(metadata=md)), *words)
    assert not (root / "pods").exists() or not os.listdir(root / "pods")


def test_hostile_log_directory_and_ids(cri):
    rt, _, _, _ = cri
    refused(rt.RunPodSandbox, pb.RunPodSandboxRequest(
        config=pod_config(log_directory="/var/log/../../etc")), "config.log_directory")
    refused(rt.RunPodSandbox, pb.RunPodSandboxRequest(
        config=pod_config(log_directory="relative/dir")), "config.log_directory")
    refused(rt.RunPodSandbox, pb.RunPodSandboxRequest(config=pod_config(), runtime_handler="x"),
            "runtime_handler")
    refused(rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="../x"),
            "pod_sandbox_id")
    refused(rt.ContainerStatus, pb.ContainerStatusRequest(container_id="a/b"), "container_id")
    refused(rt.ListPodSandbox, pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(id="not hex")), "filter.id")
    refused(rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="ab" * 32),
            "no pod sandbox", code=Code.NOT_FOUND)
    # Stop and remove of what is not there are no-ops, as the CRI asks (idempotent).
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id="ab" * 32))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id="ab" * 32))
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id="cd" * 32))


def test_hostile_image_names(cri):
    _, im, _, _ = cri
    refused(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image="")), "image.image")
    refused(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image="UPPER/../x")),
            "image.image")
    refused(im.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image="a" * 5000)),
            "image.image")


def test_pod_cidr_is_checked_and_taken(cri):
    rt, _, server, _ = cri
    refused(rt.UpdateRuntimeConfig, pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.0.0.0/99"))),
        "pod_cidr")
    rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
        network_config=pb.NetworkConfig(pod_cidr="10.77.0.0/24"))))
    assert server.config.subnet == "10.77.0.0/24"


def test_server_survives_garbage_and_unimplemented(cri):
    rt, _, _, _ = cri
    refused(rt.CheckpointContainer, pb.CheckpointContainerRequest(container_id="ab"),
            code=Code.UNIMPLEMENTED)
    assert rt.Version(pb.VersionRequest()).runtime_name == "nspod"


# --- the mapping, without a server --------------------------------------------------------

def test_sandbox_config_becomes_a_pod_manifest():
    config = pod_config(
        hostname="web-host", log_directory="/var/log/pods/x",
        dns_config=pb.DNSConfig(servers=["10.0.0.10"], searches=["svc.local"],
                                options=["ndots:5"]),
        linux=pb.LinuxPodSandboxConfig(
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(pid=pb.POD, ipc=pb.NODE),
                supplemental_groups=[5])))
    name, manifest, record = sandboxes.manifest_of(config)
    assert name.startswith("web-") and len(name) == len("web-") + 8
    spec = manifest["spec"]
    assert spec["restartPolicy"] == "Never" and spec["containers"] == []
    assert spec["shareProcessNamespace"] is True and spec["hostIPC"] is True
    assert spec["hostname"] == "web-host"
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["options"] == [{"name": "ndots", "value": "5"}]
    assert spec["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    assert record["sandbox"]["log_directory"] == "/var/log/pods/x"
    # Same metadata, same name; another attempt, another pod.
    assert sandboxes.manifest_of(config)[0] == name
    config.metadata.attempt = 1
    assert sandboxes.manifest_of(config)[0] != name


def test_host_network_sandbox_has_no_bridge():
    config = pod_config(linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    _, manifest, _ = sandboxes.manifest_of(config)
    assert manifest["spec"]["hostNetwork"] is True


def test_port_mappings_are_checked():
    with pytest.raises(InputError, match=r"config.port_mappings\[0\].host_port"):
        sandboxes.manifest_of(pod_config(port_mappings=[pb.PortMapping(host_port=70000)]))


def test_container_resources_map_to_cgroup_limits():
    r = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_quota=50000,
                                   cpu_period=100000, cpu_shares=512)
    assert security.resources_of(r, "linux.resources") == {
        "oom_group": True, "memory": 64 << 20, "cpu_millis": 500, "cpu_request_millis": 500}
    with pytest.raises(InputError, match="linux.resources.oom_score_adj"):
        security.resources_of(pb.LinuxContainerResources(oom_score_adj=5000), "linux.resources")
    with pytest.raises(InputError, match="cpu_period"):
        security.resources_of(pb.LinuxContainerResources(cpu_period=-1), "linux.resources")


def test_security_context_maps_to_the_plan():
    sc = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["CAP_NET_ADMIN"],
                                   drop_capabilities=["CHOWN"]),
        run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=50),
        readonly_rootfs=True, no_new_privs=True,
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))
    s = security.security_of(sc, "sc")
    assert (s["user"], s["group"], s["add"], s["drop"], s["seccomp"]) == \
        ("1000", "50", ["NET_ADMIN"], ["CHOWN"], "RuntimeDefault")
    assert s["readOnlyRootFilesystem"] and s["noNewPrivs"]
    with pytest.raises(InputError, match="sc.capabilities.add_capabilities"):
        security.security_of(pb.LinuxContainerSecurityContext(
            capabilities=pb.Capability(add_capabilities=["CAP_EVERYTHING"])), "sc")
    with pytest.raises(InputError, match="sc.seccomp.localhost_ref"):
        security.security_of(pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(
            profile_type=pb.SecurityProfile.Localhost, localhost_ref="../../etc/x")), "sc")
    with pytest.raises(InputError, match="sc.seccomp.localhost_ref: /dev/zero is not a regular"):
        security.security_of(pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(
            profile_type=pb.SecurityProfile.Localhost, localhost_ref="/dev/zero")), "sc")
    with pytest.raises(InputError, match="sc.masked_paths"):
        security.security_of(pb.LinuxContainerSecurityContext(masked_paths=["rel"]), "sc")


@pytest.mark.parametrize("value", ["", "/", "//x", "/a/../b", "a/b", "/a/./b", "/a/"])
def test_absolute_paths(value):
    if value == "/":
        assert checks.absolute_path(value, "f") == "/"
        return
    with pytest.raises(InputError, match="^f: "):
        checks.absolute_path(value, "f")


@pytest.mark.parametrize("value", ["../x", "a/../b", "/abs", "a//b", ".", ""])
def test_relative_log_paths(value):
    with pytest.raises(InputError, match="^config.log_path"):
        checks.relative_path(value, "config.log_path")


def test_nspod_names_are_dns_labels_and_distinct():
    a = checks.nspod_name("Container-For-Test-" + "x" * 80, 0)
    b = checks.nspod_name("container-for-test-" + "x" * 80, 0)
    assert a != b and len(a) <= 63 and a == a.lower()
    assert checks.nspod_name("___", 0).startswith("c-")
    assert checks.id_of("uid") != checks.id_of("uid", "c") and len(checks.id_of("u")) == 64


def test_listen_address_is_checked():
    for bad in ("tcp://0.0.0.0:1", "unix://rel/sock", "unix:///a/../b", "unix:///" + "x" * 200):
        with pytest.raises(InputError, match="--listen"):
            socket_path(bad)


def test_localhost_seccomp_profiles_are_checked(tmp_path):
    from nsPod.cri import seccomp_profiles
    from nsPod.cri.protocol import CriError
    good = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}
    path = tmp_path / "p.json"
    path.write_text(__import__("json").dumps(good))
    assert seccomp_profiles.read(str(path), "ref") == {
        "defaultAction": "SCMP_ACT_ALLOW", "defaultErrno": 1,
        "rules": [["SCMP_ACT_ERRNO", 1, ["sethostname"]]]}
    for bad, words in (({"defaultAction": "ALLOW"}, "defaultAction"),
                       ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["../x"],
                         "action": "SCMP_ACT_ERRNO"}]}, r"syscalls\[0\]: names"),
                       ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                         "action": "SCMP_ACT_ERRNO", "errnoRet": 99999}]}, "errnoRet"),
                       ([], "not a JSON object")):
        with pytest.raises(InputError, match=words):
            seccomp_profiles.check(bad, "ref")
    with pytest.raises(CriError, match="argument conditions"):
        seccomp_profiles.check({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0}]}]}, "ref")
    link = tmp_path / "link.json"
    link.symlink_to(path)
    with pytest.raises(InputError, match="ref"):
        seccomp_profiles.read(str(link), "ref")


def test_every_rpc_with_empty_or_odd_requests_is_answered_never_internal(cri):
    """Each unary RPC, with an empty request and with one of odd values: an answer or a
    status naming the problem, never INTERNAL (a bug); the server lives on."""
    rt, im, _, root = cri
    from nsPod.cri.protocol import rpc_methods
    odd = {"pod_sandbox_id": "\u00e9\u0000", "container_id": "x" * 500, "timeout": -5,
           "cmd": ["\u0000"], "port": [0, 70000], "verbose": True}
    for stub, method, request_type in rpc_methods(rt, im):
        for request in (request_type(), _with_odd_fields(request_type, odd)):
            try:
                getattr(stub, method)(request, timeout=30)
            except RpcError as e:
                assert e.code() != Code.INTERNAL, (method, e.details())
                assert e.code() != Code.UNKNOWN or "Traceback" not in e.details()
    assert rt.Version(pb.VersionRequest()).runtime_name == "nspod"
    assert not (root / "pods").exists() or not os.listdir(root / "pods")


def _with_odd_fields(request_type, odd):
    request = request_type()
    for field in request.DESCRIPTOR.fields:
        if field.name in odd:
            value = odd[field.name]
            if isinstance(value, list):
                getattr(request, field.name).extend(value)
            else:
                try:
                    setattr(request, field.name, value)
                except (TypeError, ValueError):
                    pass
    return request


def test_log_link_is_not_made_through_a_symlinked_directory(tmp_path):
    """The kubelet's log path is made as a link in its directory opened without following
    symlinks: a directory that is (or passes through) a symlink is refused, nothing made."""
    from nsPod.cri.containers import link_log
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "logs").symlink_to(elsewhere)
    with pytest.raises(InputError, match="config.log_path: .*symlink"):
        link_log(str(tmp_path / "logs" / "app" / "0.log"), "/target")
    with pytest.raises(InputError, match="config.log_path: .*symlink"):
        link_log(str(tmp_path / "logs" / "0.log"), "/target")
    assert [p.name for p in elsewhere.iterdir()] == ["app"]   # makedirs's, not a link
    link_log(str(tmp_path / "real" / "0.log"), "/target")
    assert os.readlink(tmp_path / "real" / "0.log") == "/target"
    with pytest.raises(InputError, match="already exists"):
        link_log(str(tmp_path / "real" / "0.log"), "/target")
