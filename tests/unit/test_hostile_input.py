"""Hostile or careless input outside the manifest's fields: files, global options, $(VAR)
expansion. Each gives one line naming the argument or field (InputError, exit 2)."""
import os
import stat

import pytest

from nsPod import config
from nsPod.api import manifests
from nsPod.plan import make as plan
from nsPod.manifest import spec
from nsPod.errors import InputError


# --- reading a manifest ----------------------------------------------------------------------

def read_problem(path):
    with pytest.raises(InputError) as info:
        manifests.read_manifest(path)
    return str(info.value)


def test_endless_file_is_read_only_up_to_the_cap():
    """`validate /dev/zero` was an internal MemoryError."""
    assert read_problem("/dev/zero") == "FILE: /dev/zero: manifest larger than 4 MiB"


def test_large_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (spec.MANIFEST_MAX_BYTES + 1))
    assert read_problem(str(big)) == f"FILE: {big}: manifest larger than 4 MiB"
    big.write_bytes(b"#" * spec.MANIFEST_MAX_BYTES)
    assert manifests.read_manifest(str(big))[0] == "#" * spec.MANIFEST_MAX_BYTES


def test_directory_is_refused(tmp_path):
    assert read_problem(str(tmp_path)) == f"FILE: {tmp_path} is a directory, not a manifest"


def test_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "pod.yaml"
    os.mkfifo(fifo)
    assert read_problem(str(fifo)) == (f"FILE: {fifo} is a FIFO, not a manifest "
                                       "(to read a stream, pipe it to: nspod ... -)")


def test_shell_pipe_is_read(tmp_path):
    """`nspod validate <(cat pod.yaml)` names /dev/fd/N, a pipe: read, as kubectl reads it."""
    r, w = os.pipe()
    os.write(w, b"kind: Pod\n")
    os.close(w)
    try:
        assert stat.S_ISFIFO(os.fstat(r).st_mode)
        assert manifests.read_manifest(f"/dev/fd/{r}") == ("kind: Pod\n", f"/dev/fd/{r}")
    finally:
        os.close(r)


def test_binary_file_is_refused(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"kind: \xff\xfe\n")
    assert read_problem(str(f)) == f"FILE: {f} is not UTF-8 text (byte 6)"


# --- global options ----------------------------------------------------------------------------

@pytest.mark.parametrize("subnet, problem", [
    ("0.0.0.0/0", "0.0.0.0/0 is the unspecified network address space"),
    ("0.0.0.0/8", "0.0.0.0/8 is the unspecified network address space"),
    ("127.0.0.0/8", "127.0.0.0/8 is loopback address space"),
    ("224.0.0.0/4", "224.0.0.0/4 is multicast address space"),
    ("169.254.0.0/16", "169.254.0.0/16 is link-local address space"),
    ("240.0.0.0/4", "240.0.0.0/4 is reserved (240.0.0.0/4) address space"),
    ("10.0.0.0/7", "10.0.0.0/7 is wider than a /8; use a /8 to /30"),
    ("10.1.2.0/31", "'10.1.2.0/31' has room for no pods (use /30 or wider)"),
    ("10.1.2.3", "'10.1.2.3' needs a prefix length (as in 10.89.0.0/16)"),
    ("10.1.2.3/24", "'10.1.2.3/24' is not an IPv4 network in CIDR form: "
                    "10.1.2.3/24 has host bits set"),
    ("x" * 300, "'" + "x" * 55 + "...' is not an IPv4 network in CIDR form: "
                "not an address/prefix"),
])
def test_subnets_that_would_break_the_host_are_refused(subnet, problem):
    """--subnet 0.0.0.0/0, 127.0.0.0/8 and 224.0.0.0/4 were accepted."""
    with pytest.raises(InputError) as info:
        config.load(subnet=subnet, environ={})
    assert str(info.value).startswith(f"--subnet: {problem}")


@pytest.mark.parametrize("subnet", ["10.0.0.0/8", "172.16.0.0/12", "192.168.7.0/24",
                                    "10.89.3.0/30"])
def test_private_subnets_are_accepted(subnet):
    assert config.load(subnet=subnet, environ={}).subnet == subnet


@pytest.mark.parametrize("options, problem", [
    ({"restart_backoff": "1e9"}, "--restart-backoff: '1e9' is not a duration"),
    ({"restart_backoff": "9" * 40 + "s"}, "--restart-backoff: '" + "9" * 40 + "s' is not a duration"),
    ({"restart_backoff": "25h"}, "--restart-backoff: '25h' is longer than a day (24h)"),
    ({"restart_backoff": "1s:2000h"}, "--restart-backoff: '2000h' is longer than a day (24h)"),
    ({"cgroup_parent": "a/\0b"}, "--cgroup-parent: 'a/\\x00b' is not a cgroup path"),
    ({"cgroup_parent": "a/\nb"}, "--cgroup-parent: 'a/\\nb' is not a cgroup path"),
    ({"cgroup_parent": "a/../../b"}, "--cgroup-parent: 'a/../../b' is not a cgroup path"),
    ({"cgroup_parent": "x" * 256}, "--cgroup-parent: '" + "x" * 55 + "...' is not a cgroup"),
    ({"bridge": "a/b"}, "--bridge: 'a/b' is not a link name"),
    ({"bridge": ".."}, "--bridge: '..' is not a link name"),
    ({"bridge": "br\u00e9"}, "--bridge: 'br\u00e9' is not a link name"),
    ({"bridge": "a" * 16}, "--bridge: '" + "a" * 16 + "' is not a link name"),
    ({"root": "/x\0"}, "--root: '/x\\x00' holds control characters"),
])
def test_bad_global_options_name_the_option(options, problem):
    with pytest.raises(InputError) as info:
        config.load(environ={}, **options)
    assert str(info.value).startswith(problem)


# --- $(VAR) expansion ---------------------------------------------------------------------------

FACTS = plan.Facts(uid="u", pod_dir="/pods/p", state_root="/run/nspod")


def pod_with(env=(), command=("x",), args=(), mounts=()):
    container = {"name": "c", "command": list(command), "args": list(args), "env": list(env),
                 "volumeMounts": list(mounts)}
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"},
           "spec": {"restartPolicy": "Never", "containers": [container],
                    "volumes": [{"name": "v", "emptyDir": {}}]}}
    return spec.pod_from_dict(doc)[0]


def plan_problem(pod):
    with pytest.raises(InputError) as info:
        plan.make_plan(pod, FACTS)
    return str(info.value)


def doubling(n, first="x" * 100):
    return [{"name": "A0", "value": first}] + [
        {"name": f"A{i}", "value": f"$(A{i - 1})$(A{i - 1})"} for i in range(1, n)]


def test_expansion_is_single_pass():
    """Kubernetes expands each value once; $(...) in a referenced value stays as written."""
    pod = pod_with(env=[{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"},
                        {"name": "C", "value": "$(A)-$$(B)-$(B)"}],
                   command=["echo", "$(C)", "$$(C)"])
    c = plan.make_plan(pod, FACTS).containers[0]
    assert c.env_dict()["A"] == "$(B)" and c.env_dict()["C"] == "$(B)-$(B)-b"
    assert c.argv == ["echo", "$(B)-$(B)-b", "$(C)"]


def test_expansion_bomb_in_env_names_the_value():
    """An 8 KB $(VAR) doubling chain was an internal MemoryError."""
    assert plan_problem(pod_with(env=doubling(60))) == (
        "spec.containers[0].env[11].value: expands to more than 128 KiB, Linux's limit for "
        "one argument or environment string")


def test_expansion_bomb_in_args_names_the_arg():
    pod = pod_with(env=doubling(11), command=["x", "$(A10)"], args=["$(A10)$(A10)$(A10)"])
    assert plan_problem(pod) == (
        "spec.containers[0].args[0]: expands to more than 128 KiB, Linux's limit for one "
        "argument or environment string")


def test_expansion_total_is_capped():
    env = [{"name": "BIG", "value": "y" * 100_000}]
    pod = pod_with(env=env, command=["x"] + ["$(BIG)"] * 70)
    assert plan_problem(pod) == (
        "spec.containers[0].command[62]: the container's command, args and env expand to more "
        "than 6 MiB, Linux's limit for a program's arguments and environment together")


def test_expansion_in_sub_path_expr_is_capped():
    pod = pod_with(env=doubling(11), mounts=[{"name": "v", "mountPath": "/v",
                                              "subPathExpr": "$(A10)$(A10)"}])
    assert plan_problem(pod).startswith("spec.containers[0].volumeMounts[0].subPathExpr: "
                                        "expands to more than 128 KiB")


def test_expansion_at_the_limit_is_fine():
    pod = pod_with(env=[{"name": "A", "value": "z" * plan.ARG_STRLEN_MAX}])
    assert len(plan.make_plan(pod, FACTS).containers[0].env_dict()["A"]) == plan.ARG_STRLEN_MAX


def test_unclosed_references_stay_as_written():
    assert plan.expand("$(A $(B) $(A)", {"A": "a", "B": "b"}) == "$(A $(B) a"
    assert plan.expand("$(A) $$ $( $$", {"A": "a"}) == "a $ $( $"
    assert plan.expand("x$(", {}) == "x$(" and plan.expand("$", {}) == "$"


# --- an image's config is input too -----------------------------------------------------------

def image_pod():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "img"}]}}
    return spec.pod_from_dict(doc)[0]


def image_facts(**config):
    return plan.Facts(uid="u", pod_dir="/pods/p", state_root="/run/nspod",
                      images={"img:latest": {"rootfs": "/r", **config}})


@pytest.mark.parametrize("config, problem", [
    ({"entrypoint": 5}, "Entrypoint is not a list of strings"),
    ({"cmd": "sh -c x"}, "Cmd is not a list of strings"),
    ({"env": [1]}, "Env is not a list of strings"),
    ({"env": ["A=\0"]}, "Env holds a NUL character"),
    ({"user": 0}, "User is not a string"),
    ({"workingDir": ["/"]}, "WorkingDir is not a string"),
    ({"cmd": ["x" * 1000] * 7000}, "Cmd is longer than 6 MiB"),
])
def test_bad_image_config_is_bad_input(config, problem):
    """An OCI image's config is someone else's input: `"Env": [1]` was an internal
    AttributeError at run."""
    with pytest.raises(InputError) as info:
        plan.make_plan(image_pod(), image_facts(**{"cmd": ["x"], **config}))
    assert str(info.value) == f"spec.containers[0].image: 'img': the image's config is not usable: {problem}"


def test_image_entrypoint_and_cmd_still_run():
    c = plan.make_plan(image_pod(), image_facts(entrypoint=["/bin/sh", "-c"], cmd=["echo hi"],
                                                env=["A=1"], user="1:2", workingDir="/w"))
    assert c.containers[0].argv == ["/bin/sh", "-c", "echo hi"]
    assert c.containers[0].env_dict()["A"] == "1" and c.containers[0].cwd == "/w"


def test_image_argv_counts_toward_execve_total():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "c", "image": "img",
               "env": [{"name": f"E{i}", "value": "v" * 100_000} for i in range(30)]}]}}
    pod = spec.pod_from_dict(doc)[0]
    with pytest.raises(InputError) as info:
        plan.make_plan(pod, image_facts(cmd=["x" * 100_000] * 35))
    assert str(info.value) == (
        "spec.containers[0].image: the container's command, args and env expand to more than "
        "6 MiB, Linux's limit for a program's arguments and environment together")


def test_manifests_of_a_directory_are_capped_together(tmp_path):
    """Each file may be up to 4 MiB; a directory (or several FILEs) is one request: the
    files are not read into memory past 4 MiB together."""
    import pytest
    from nsPod.api import manifests
    from nsPod.errors import InputError
    for i in range(3):
        (tmp_path / f"f{i}.yaml").write_text("#" * (3 << 20))
    with pytest.raises(InputError) as info:
        manifests.load_manifests([str(tmp_path)])
    assert str(info.value) == f"FILE: {tmp_path}: manifests larger than 4 MiB together"
