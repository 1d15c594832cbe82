"""Bad input of any kind, through the real CLI as root (docs/interface.md, "Exit codes", "Errors").

The contract under test: one line per problem on stderr, starting with "error: " (warnings with
"warning: "), naming the field path or the argument; exit code 2 for bad input, 1 for an unknown
pod; never a Python traceback; and a failed command leaves nothing behind (the `nspod` fixture
checks processes, mounts, links, netns, cgroups and state dirs after every test; the tests here
also check that no pod directory was made).
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

# --- helpers --------------------------------------------------------------------------------

PREFIXES = ("error: ", "warning: ")


def describe(result):
    return (f"exit code {result.returncode}\n"
            f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}")


def error_lines(result, code=2, lines=None):
    """The error lines of a failed command, after checking the shape of its stderr.

    `code` is the expected exit code; `lines`, when given, the exact number of error lines.
    """
    assert "Traceback" not in result.stderr, "a Python traceback:\n" + describe(result)
    assert result.returncode == code, f"expected exit code {code}\n" + describe(result)
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert stderr, "nothing on stderr\n" + describe(result)
    stray = [line for line in stderr if not line.startswith(PREFIXES)]
    assert not stray, (f"every stderr line must start with {' or '.join(map(repr, PREFIXES))}; "
                       f"these do not: {stray}\n" + describe(result))
    errors = [line for line in stderr if line.startswith("error: ")]
    assert errors, "no error line\n" + describe(result)
    if lines is not None:
        assert len(errors) == lines, (f"expected {lines} error line(s), got {len(errors)}\n"
                                      + describe(result))
    return errors


def assert_names(errors, *needles):
    for needle in needles:
        assert any(needle in line for line in errors), \
            f"no error line names {needle!r}: {errors}"


def pod_yaml(spec_extra="", container_extra="", metadata="name: p", head=None,
             containers=None):
    """A Never-restarting one-container pod manifest, with pieces swapped or added."""
    head = head or "apiVersion: v1\nkind: Pod\n"
    containers = containers or textwrap.indent(
        '- name: c\n  command: ["true"]\n' + textwrap.indent(container_extra, "  "), "  ")
    return (head
            + "metadata:\n" + textwrap.indent(metadata, "  ") + "\n"
            + "spec:\n  restartPolicy: Never\n"
            + textwrap.indent(spec_extra, "  ")
            + "  containers:\n" + containers)


DATA_VOLUME = "volumes:\n- name: data\n  emptyDir: {}\n"


def data_mount(extra):
    return "volumeMounts:\n- name: data\n  mountPath: /data\n" + textwrap.indent(extra, "  ")


# --- 1. malformed manifests: `run FILE` and `validate FILE` ---------------------------------

# (id, manifest text, what the error lines must name, number of error lines)
MANIFESTS = [
    ("unknown-field-suggestion",
     pod_yaml(container_extra='comand: ["true"]\n'),
     ['spec.containers[0].comand', 'did you mean "command"'], 1),
    ("command-is-a-string",
     pod_yaml(containers='  - name: c\n    command: "sleep 1"\n'),
     ["spec.containers[0].command", "list"], 1),
    ("containers-is-a-mapping",
     pod_yaml(containers='    name: c\n    command: ["true"]\n'),
     ["spec.containers", "list"], 1),
    ("env-is-a-mapping",
     pod_yaml(container_extra="env:\n  GREETING: hello\n"),
     ["spec.containers[0].env", "list"], 1),
    ("missing-metadata-name",
     pod_yaml(metadata="labels: {app: x}"),
     ["metadata.name", "required"], 1),
    ("pod-name-uppercase",
     pod_yaml(metadata="name: MyPod"),
     ["metadata.name", '"MyPod"'], 1),
    ("pod-name-too-long",
     pod_yaml(metadata="name: " + "a" * 254),
     ["metadata.name", "253"], 1),
    ("pod-name-underscore",
     pod_yaml(metadata="name: my_pod"),
     ["metadata.name", '"my_pod"'], 1),
    ("duplicate-container-names",
     pod_yaml(containers='  - name: c\n    command: ["true"]\n'
                         '  - name: c\n    command: ["true"]\n'),
     ["spec.containers[1].name", '"c"'], 1),
    ("mount-of-undeclared-volume",
     pod_yaml(container_extra=data_mount("")),
     ["spec.containers[0].volumeMounts[0].name", '"data"'], 1),
    ("relative-mountPath",
     pod_yaml(DATA_VOLUME, "volumeMounts:\n- name: data\n  mountPath: data\n"),
     ["spec.containers[0].volumeMounts[0].mountPath", '"data"'], 1),
    ("subPath-with-dotdot",
     pod_yaml(DATA_VOLUME, data_mount("subPath: ../etc\n")),
     ["spec.containers[0].volumeMounts[0].subPath", "'..'"], 1),
    ("absolute-subPath",
     pod_yaml(DATA_VOLUME, data_mount("subPath: /etc\n")),
     ["spec.containers[0].volumeMounts[0].subPath", '"/etc"'], 1),
    ("subPath-and-subPathExpr",
     pod_yaml(DATA_VOLUME, data_mount("subPath: a\nsubPathExpr: $(POD_NAME)\n")),
     ["spec.containers[0].volumeMounts[0].subPath"], 1),
    ("emptyDir-bad-sizeLimit",
     pod_yaml("volumes:\n- name: data\n  emptyDir: {medium: Memory, sizeLimit: 12XB}\n"),
     ["spec.volumes[0].emptyDir.sizeLimit", '"12XB"'], 1),
    ("hostPath-relative-path",
     pod_yaml("volumes:\n- name: data\n  hostPath: {path: tmp/data}\n"),
     ["spec.volumes[0].hostPath.path", '"tmp/data"'], 1),
    ("hostPath-bogus-type",
     pod_yaml("volumes:\n- name: data\n  hostPath: {path: /tmp, type: Bogus}\n"),
     ["spec.volumes[0].hostPath.type", '"Bogus"'], 1),
    ("two-volume-sources",
     pod_yaml("volumes:\n- name: data\n  emptyDir: {}\n  hostPath: {path: /tmp}\n"),
     ["spec.volumes[0]", "emptyDir", "hostPath"], 1),
    # (a configMap volume is supported now; its ConfigMap missing from the file is an error
    # at run and a warning at validate: test_config_volumes.py)
    ("unsupported-volume-type",
     pod_yaml("volumes:\n- name: data\n  nfs: {server: nfs.example, path: /export}\n"),
     ["spec.volumes[0].nfs"], 1),
    ("restartPolicy-bogus",
     pod_yaml().replace("restartPolicy: Never", "restartPolicy: Sometimes"),
     ["spec.restartPolicy", '"Sometimes"'], 1),
    ("negative-grace-period",
     pod_yaml("terminationGracePeriodSeconds: -1\n"),
     ["spec.terminationGracePeriodSeconds", "-1"], 1),
    ("shareProcessNamespace-with-hostPID",
     pod_yaml("shareProcessNamespace: true\nhostPID: true\n"),
     ["spec.shareProcessNamespace", "hostPID"], 1),
    ("image-bad-name",
     pod_yaml(container_extra="image: Busy_Box\n"),
     ["spec.containers[0].image", '"Busy_Box"', "not an image name"], 1),
    ("kind-Service",
     pod_yaml(head="apiVersion: v1\nkind: Service\n"),
     ["kind", '"Service"'], 1),
    ("apiVersion-v2",
     pod_yaml(head="apiVersion: v2\nkind: Pod\n"),
     ["apiVersion", '"v2"'], 1),
    ("yaml-syntax-error",
     pod_yaml(container_extra="args: [unclosed\n"),
     ["line "], 1),
    ("empty-file", "", ["empty"], 1),
    ("list-document", "- apiVersion: v1\n  kind: Pod\n", ["mapping", "list"], 1),
    ("env-value-and-valueFrom",
     pod_yaml(container_extra="env:\n- name: A\n  value: x\n"
                              "  valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"),
     ["spec.containers[0].env[0]", "valueFrom"], 1),
    ("fieldRef-unsupported-fieldPath",
     pod_yaml(container_extra="env:\n- name: A\n"
                              "  valueFrom: {fieldRef: {fieldPath: spec.containers}}\n"),
     ["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", '"spec.containers"'], 1),
    ("resourceFieldRef-unknown-container",
     pod_yaml(container_extra="env:\n- name: A\n  valueFrom:\n    resourceFieldRef:\n"
                              "      {containerName: ghost, resource: limits.memory}\n"),
     ["spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName", '"ghost"'], 1),
    ("not-yet-seccomp-localhost",
     pod_yaml(container_extra="securityContext:\n  seccompProfile: {type: Localhost, localhostProfile: p.json}\n"),
     ["spec.containers[0].securityContext.seccompProfile", "not supported yet"], 1),
    ("bad-probe-port",
     pod_yaml(container_extra='livenessProbe:\n  httpGet: {port: nosuchport}\n'),
     ["spec.containers[0].livenessProbe.httpGet.port", '"nosuchport"'], 1),
    ("scalar-document", "hello\n", ["mapping", "string"], 1),
    # Hostile YAML (issue 9): run failed with an internal TypeError or grew to gigabytes.
    ("billion-laughs-in-an-ignored-field",
     pod_yaml(metadata="name: p\nlabels:\n" + "".join(
         f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "lol"] * 10) + "]\n"
         for i in range(9))),
     ["metadata.labels.l", "aliases copy more than 10000 nodes", "line "], 1),
    ("binary-tag", pod_yaml("nodeName: !!binary aGVsbG8=\n"),
     ["spec.nodeName", "tag !!binary is not allowed", "line 7"], 1),
    ("timestamp-tag", pod_yaml(metadata="name: p\nannotations: {t: !!timestamp 2001-02-30}"),
     ["metadata.annotations.t", "tag !!timestamp"], 1),
    ("set-tag", pod_yaml("nodeSelector: !!set {a, b}\n"), ["spec.nodeSelector", "!!set"], 1),
    ("python-tag", pod_yaml("nodeName: !!python/object/apply:os.system [echo]\n"),
     ["spec.nodeName", "!!python/object/apply:os.system"], 1),
    ("bool-tag-on-text", pod_yaml("hostNetwork: !!bool maybe\n"),
     ["spec.hostNetwork", '"maybe" is not a valid !!bool'], 1),
    ("infinite-grace-period", pod_yaml("terminationGracePeriodSeconds: .inf\n"),
     ["spec.terminationGracePeriodSeconds", ".inf"], 1),
    ("int64-overflow-deadline", pod_yaml("activeDeadlineSeconds: 9223372036854775808\n"),
     ["spec.activeDeadlineSeconds", "must be at most 9223372036854775807"], 1),
    ("int32-overflow-probe-period",
     pod_yaml(container_extra="livenessProbe: {exec: {command: [x]}, periodSeconds: 2147483648}\n"),
     ["spec.containers[0].livenessProbe.periodSeconds", "must be at most 2147483647"], 1),
    ("five-thousand-digit-quantity",
     pod_yaml(container_extra="resources: {limits: {memory: '" + "9" * 5000 + "'}}\n"),
     ["spec.containers[0].resources.limits.memory", "more than 100 digits"], 1),
    ("recursive-alias", pod_yaml("nodeSelector: &a {x: *a}\n"),
     ["spec.nodeSelector.x", "recursive alias"], 1),
]


@pytest.mark.parametrize("text, needles, lines",
                         [case[1:] for case in MANIFESTS], ids=[case[0] for case in MANIFESTS])
def test_malformed_manifest_run_and_validate(nspod, text, needles, lines):
    path = nspod.manifest(text)
    ran = nspod("run", path, check=False)
    errors = error_lines(ran, 2, lines)
    assert_names(errors, *needles)
    assert ran.stdout == "", "nothing may be started: " + describe(ran)
    assert nspod.pods() == []

    validated = nspod("validate", path, check=False)
    assert error_lines(validated, 2, lines) == errors, \
        "validate must report exactly what run reports\n" + describe(validated)
    assert nspod.pods() == []


def test_yaml_syntax_error_has_a_line_number(nspod):
    path = nspod.manifest(pod_yaml(container_extra="args: [unclosed\n"))
    errors = error_lines(nspod("run", path, check=False), 2, 1)
    assert re.search(r"\bline \d+", errors[0]), errors
    assert path in errors[0] or os.path.basename(path) in errors[0], \
        f"the line should name the file: {errors}"


def test_every_bad_document_of_a_stream_is_reported(nspod):
    path = nspod.manifest(pod_yaml(metadata="name: Bad_One") + "---\n"
                          + pod_yaml(metadata="name: q", container_extra="image: Busy_Box\n"))
    for command in ("run", "validate"):
        result = nspod(command, path, check=False)
        errors = error_lines(result, 2, 2)
        assert errors[0].startswith("error: document 1: metadata.name:"), errors
        assert errors[1].startswith("error: document 2: spec.containers[0].image:"), errors
        assert nspod.pods() == []


def test_one_good_and_one_bad_document_start_nothing(nspod):
    path = nspod.manifest(pod_yaml(metadata="name: good") + "---\n"
                          + pod_yaml(metadata="name: bad", container_extra="comand: [x]\n"))
    errors = error_lines(nspod("run", path, check=False), 2, 1)
    assert_names(errors, "document 2: spec.containers[0].comand")
    assert nspod.pods() == []


# --- 2. input errors found at run time ------------------------------------------------------

def test_missing_hostPath_is_bad_input_and_creates_nothing(nspod):
    missing = os.path.join(nspod.workdir, "no-such-dir")
    path = nspod.manifest(pod_yaml(
        f'volumes:\n- name: data\n  hostPath: {{path: "{missing}", type: ""}}\n',
        data_mount("")))
    assert nspod("validate", path, check=False).returncode == 0, \
        "the manifest itself is well-formed; only the host lacks the path"
    result = nspod("run", path, check=False)
    errors = error_lines(result, 2, 1)
    assert_names(errors, "spec.volumes[0].hostPath.path", missing)
    assert not os.path.exists(missing), "type \"\" must not create the host path"
    assert nspod.pods() == []


def test_hostPath_into_a_state_root_is_refused(nspod):
    """A hostPath inside a state root would give a container other pods' control sockets
    and Secrets: refused, also through a symlink to it and for the root itself."""
    link = os.path.join(nspod.workdir, "to-the-root")
    os.symlink(nspod.root, link)
    for target in (nspod.root, os.path.join(nspod.root, "pods"), link):
        path = nspod.manifest(pod_yaml(
            f'volumes:\n- name: data\n  hostPath: {{path: "{target}"}}\n', data_mount("")))
        errors = error_lines(nspod("run", path, check=False), 2, 1)
        assert_names(errors, "spec.volumes[0].hostPath.path", "nspod's state")
        assert nspod.pods() == []


def test_run_name_with_two_documents(nspod):
    path = nspod.manifest(pod_yaml(metadata="name: one") + "---\n"
                          + pod_yaml(metadata="name: two"))
    errors = error_lines(nspod("run", "--name", "x", path, check=False), 2, 1)
    assert_names(errors, "--name")
    assert nspod.pods() == []


def test_run_of_a_missing_file(nspod):
    missing = os.path.join(nspod.workdir, "nope.yaml")
    errors = error_lines(nspod("run", missing, check=False), 2, 1)
    assert_names(errors, missing)
    assert nspod.pods() == []


def test_run_reads_a_manifest_from_stdin(nspod):
    result = nspod("run", "-", input=pod_yaml(metadata="name: from-stdin"), check=False)
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "from-stdin"
    assert nspod.pods() == ["from-stdin"]
    nspod("rm", "-f", "--timeout", "0", "from-stdin")
    assert nspod.pods() == []


def test_endless_manifest_is_capped(nspod):
    """`validate /dev/zero` was an internal MemoryError; at most 4 MiB + 1 byte is read."""
    for command in ("validate", "run"):
        errors = error_lines(nspod(command, "/dev/zero", check=False), 2, 1)
        assert_names(errors, "/dev/zero", "manifest larger than 4 MiB")
    errors = error_lines(nspod("run", "-", input="#" * (4 << 20) + "\n", check=False), 2, 1)
    assert_names(errors, "<stdin>", "manifest larger than 4 MiB")
    assert nspod.pods() == []


def test_manifest_that_is_a_directory_or_a_fifo(nspod):
    fifo = os.path.join(nspod.workdir, "fifo.yaml")
    os.mkfifo(fifo)
    for command in ("validate", "run"):
        errors = error_lines(nspod(command, fifo, check=False, timeout=30), 2, 1)
        assert_names(errors, fifo, "is a FIFO")
    # a directory's manifests are read (`run DIR`): a FIFO among them is refused all the same
    empty = os.path.join(nspod.workdir, "empty")
    os.mkdir(empty)
    for command in ("validate", "run"):
        errors = error_lines(nspod(command, nspod.workdir, check=False, timeout=30), 2, 1)
        assert_names(errors, fifo, "is a FIFO")
        errors = error_lines(nspod(command, empty, check=False, timeout=30), 2, 1)
        assert_names(errors, empty, "is a directory without *.yaml, *.yml or *.json")
    assert nspod.pods() == []


def test_expansion_bomb_is_bad_input_and_creates_nothing(nspod):
    """An 8 KB $(VAR) doubling chain was an internal MemoryError at `run`."""
    env = "env:\n- {name: A0, value: " + "x" * 64 + "}\n" + "".join(
        f"- {{name: A{i}, value: '$(A{i - 1})$(A{i - 1})'}}\n" for i in range(1, 64))
    path = nspod.manifest(pod_yaml(container_extra=env))
    assert nspod("validate", path, check=False).returncode == 0
    errors = error_lines(nspod("run", path, check=False), 2, 1)
    assert_names(errors, "spec.containers[0].env[11].value", "expands to more than 128 KiB")
    assert nspod.pods() == []


def test_bad_manifest_on_stdin(nspod):
    result = nspod("run", "-", input=pod_yaml(metadata="name: Bad_One"), check=False)
    assert_names(error_lines(result, 2, 1), "metadata.name")
    assert nspod.pods() == []


# --- 3. bad arguments, command by command ---------------------------------------------------

# (id, argv after the fixture's global options, what the error line must name)
BAD_ARGUMENTS = [
    ("unknown-command", ["bogus"], ["bogus"]),
    ("inspect-without-pod", ["inspect"], ["POD"]),
    ("logs-negative-tail", ["logs", "p", "--tail", "-5"], ["--tail"]),
    ("stop-negative-timeout", ["stop", "p", "--timeout", "-1"], ["--timeout"]),
    ("ps-unknown-output", ["ps", "-o", "xml"], ["xml"]),
    ("create-bad-name", ["create", "bad_Name"], ['"bad_Name"']),
    ("create-share-without-ipc-uts", ["create", "p", "--share", "net"], ["--share"]),
    ("create-share-unknown-kind", ["create", "p", "--share", "net,ipc,uts,user"],
     ["--share", "user"]),
    ("create-bad-volume-size", ["create", "p", "--volume", "data:12XB"],
     ["sizeLimit", '"12XB"']),
    ("create-bad-memory", ["create", "p", "--memory", "lots"],
     ["limits.memory", '"lots"']),
    ("create-bad-network", ["create", "p", "--network", "wifi"], ["wifi"]),
    ("global-relative-root", ["--root", "relative", "ps"], ["--root"]),
    ("global-slash-root", ["--root", "/", "ps"], ["--root", "'/'"]),
    # Names are checked before any path is formed (issue 9): a path is no pod name.
    ("inspect-dotdot", ["inspect", "../etc"], ["invalid pod name", '"../etc"']),
    ("rm-force-dot", ["rm", "-f", "."], ["invalid pod name", '"."']),
    # (`rm -f /` is tested in-process with removal made impossible: tests/unit/test_names.py)
    ("stop-dir", ["stop", "DIR"], ["invalid pod name", '"DIR"']),
    ("logs-bad-container", ["logs", "p", "../c"], ["invalid container name", '"../c"']),
    ("exec-bad-container", ["exec", "-c", "C", "p", "--", "true"],
     ["invalid container name", '"C"']),
    ("add-bad-container", ["add", "p", "a/b", "--", "true"], ["invalid container name"]),
    ("create-long-name", ["create", "x" * 254], ["invalid pod name", "at most 253"]),
    ("create-bad-volume-name", ["create", "p", "--volume", "../v"],
     ["invalid volume name", '"../v"']),
    ("global-bad-subnet", ["--subnet", "10.0.0.0/99", "ps"], ["--subnet"]),
    ("global-bad-cgroup-parent", ["--cgroup-parent", "../x", "ps"], ["--cgroup-parent"]),
    ("global-bad-restart-backoff", ["--restart-backoff", "fast", "ps"], ["--restart-backoff"]),
    ("global-bad-bridge", ["--bridge", "a-bridge-name-far-too-long", "ps"], ["--bridge"]),
    ("global-bridge-with-slash", ["--bridge", "a/b", "ps"], ["--bridge"]),
    ("global-subnet-default-route", ["--subnet", "0.0.0.0/0", "ps"], ["--subnet", "unspecified"]),
    ("global-subnet-loopback", ["--subnet", "127.0.0.0/8", "ps"], ["--subnet", "loopback"]),
    ("global-subnet-multicast", ["--subnet", "224.0.0.0/4", "ps"], ["--subnet", "multicast"]),
    ("global-subnet-link-local", ["--subnet", "169.254.0.0/16", "ps"], ["--subnet", "link-local"]),
    ("global-subnet-too-wide", ["--subnet", "10.0.0.0/7", "ps"], ["--subnet", "/8"]),
    ("global-subnet-too-small", ["--subnet", "10.0.0.0/31", "ps"], ["--subnet"]),
    ("global-restart-backoff-huge", ["--restart-backoff", "1e9", "ps"], ["--restart-backoff"]),
    ("global-restart-backoff-years", ["--restart-backoff", "1s:99999h", "ps"],
     ["--restart-backoff", "longer than a day"]),
    ("global-cgroup-parent-dotdot-inside", ["--cgroup-parent", "a/../../b", "ps"],
     ["--cgroup-parent"]),
    ("global-cgroup-parent-newline", ["--cgroup-parent", "a\nb", "ps"], ["--cgroup-parent"]),
]


@pytest.mark.parametrize("argv, needles", [case[1:] for case in BAD_ARGUMENTS],
                         ids=[case[0] for case in BAD_ARGUMENTS])
def test_bad_arguments(nspod, argv, needles):
    result = nspod(*argv, check=False)
    assert_names(error_lines(result, 2, 1), *needles)
    assert result.stdout == "", describe(result)
    assert nspod.pods() == []


# (id, `nspod add p c ...` options before `--`, what the error line must name)
BAD_ADD_ARGUMENTS = [
    ("mount-without-colon", ["--mount", "nocolon"], ["--mount", "nocolon"]),
    ("mount-bad-mode", ["--mount", "data:/data:rx"], ["--mount"]),
    ("env-without-equals", ["--env", "NOEQUALS"], ["--env", "NOEQUALS"]),
    ("env-without-key", ["--env", "=value"], ["--env"]),
    ("mount-bad-volume-name", ["--mount", "../v:/data"], ["invalid volume name", '"../v"']),
]


@pytest.mark.parametrize("options, needles", [case[1:] for case in BAD_ADD_ARGUMENTS],
                         ids=[case[0] for case in BAD_ADD_ARGUMENTS])
def test_bad_add_arguments_leave_the_pod_as_it_was(nspod, options, needles):
    assert nspod("create", "p").stdout.strip() == "p"
    before = nspod.inspect("p")
    result = nspod("add", "p", "c", *options, "--", "true", check=False)
    assert_names(error_lines(result, 2, 1), *needles)
    assert nspod.pods() == ["p"]
    after = nspod.inspect("p")
    assert after["spec"]["containers"] == before["spec"]["containers"] == []
    assert after["runtime"].get("containers", {}) == {}


def test_add_without_a_command(nspod):
    nspod("create", "p")
    result = nspod("add", "p", "c", check=False)
    assert_names(error_lines(result, 2, 1), "CMD")
    assert nspod.inspect("p")["spec"]["containers"] == []


# --- 4. unknown pods ------------------------------------------------------------------------

UNKNOWN_POD = [
    ("inspect", ["inspect", "ghost"]),
    ("logs", ["logs", "ghost"]),
    ("exec", ["exec", "ghost", "--", "true"]),
    ("stop", ["stop", "ghost"]),
    ("rm", ["rm", "ghost"]),
    ("ns", ["ns", "ghost"]),
    ("generate", ["generate", "ghost"]),
]


@pytest.mark.parametrize("argv", [case[1] for case in UNKNOWN_POD],
                         ids=[case[0] for case in UNKNOWN_POD])
def test_unknown_pod_is_a_runtime_failure(nspod, argv):
    result = nspod(*argv, check=False)
    assert_names(error_lines(result, 1, 1), "ghost")
    assert nspod.pods() == []


def test_rm_force_of_an_unknown_pod_is_fine(nspod):
    result = nspod("rm", "-f", "ghost", check=False)
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr
    assert nspod.pods() == []


# --- 5. not root ----------------------------------------------------------------------------

NOBODY = 65534


def as_nobody(argv, input=None):
    """argv run as user nobody (uid and gid 65534, no supplementary groups), from /."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSPOD_")}
    env.update(HOME="/", USER="nobody", LOGNAME="nobody")
    return subprocess.run(
        [shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         *argv], input=input, capture_output=True, text=True, timeout=60, cwd="/", env=env)


@pytest.fixture
def nobody_python():
    """The interpreter the suite runs on, if user nobody can run it and import nsPod."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop to user nobody")
    probe = as_nobody([sys.executable, "-P", "-c", "import nsPod.cli"])
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run {sys.executable} and import nsPod "
                    f"(exit {probe.returncode}: {probe.stderr.strip()[:200]}); the non-root "
                    f"contract is untested here (is a parent directory such as /root not "
                    f"traversable by others?)")
    return sys.executable


def test_non_root_is_refused_before_anything_is_made(nspod, nobody_python):
    result = as_nobody([nobody_python, "-m", "nsPod", "--root", nspod.root,
                        "--cgroup-parent", nspod.cgroup_parent, "ps"])
    errors = error_lines(result, 1, 1)
    assert re.search(r"\b(as|needs|requires?) root\b|\broot (is )?required\b", errors[0]), \
        f"the line should say that root is required: {errors}"
    assert not os.path.exists(nspod.root), "nothing may be created for a non-root user"


def test_validate_works_as_non_root(nspod, nobody_python):
    argv = [nobody_python, "-m", "nsPod", "validate", "-"]
    good = as_nobody(argv, input=pod_yaml(metadata="name: fine"))
    assert good.returncode == 0, describe(good)
    assert "fine" in good.stdout
    bad = as_nobody(argv, input=pod_yaml(container_extra='comand: ["true"]\n'))
    assert_names(error_lines(bad, 2, 1), "spec.containers[0].comand")
    assert not os.path.exists(nspod.root)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["validate", "--help"]],
                         ids=["help", "version", "validate-help"])
def test_help_and_version_work_as_non_root(nobody_python, argv):
    result = as_nobody([nobody_python, "-m", "nsPod", *argv])
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() and "Traceback" not in result.stderr
