"""Names, paths under the state root, and the state root itself (nsPod.kernel.paths,
nsPod.store.state).

Pod names follow Kubernetes' apimachinery validation as the API server applies it to
metadata.name (IsDNS1123Subdomain, at most 253 characters); container and volume names are
DNS-1123 labels (IsDNS1123Label, at most 63).
"""
import json
import os
import stat

import pytest

from nsPod import config
from nsPod.kernel import paths, root_registry
from nsPod.manifest import spec, syntax
from nsPod.store import state
from nsPod.errors import InputError, PodNotFound, StateError

HOSTILE_POD_NAMES = ["", ".", "..", "/", "../etc", "../../x", "/some/dir", "a/b", "DIR",
                     "-a", "a-", "a..b", ".a", "a.", "a\0b", "a\nb", "x" * 254, "é"]
GOOD_POD_NAMES = ["a", "web", "a.b-c", "0", "a" * 253, ".".join(["a" * 63] * 4)[:253]]


@pytest.mark.parametrize("name", HOSTILE_POD_NAMES)
def test_hostile_pod_names_are_refused_before_any_path(name, tmp_path):
    with pytest.raises(InputError, match="^invalid pod name"):
        paths.check_pod_name(name)
    with pytest.raises(InputError, match="^invalid pod name"):
        state.PodDir(str(tmp_path), name)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", GOOD_POD_NAMES)
def test_valid_pod_names_pass(name):
    assert paths.check_pod_name(name) == name


def test_non_string_names_are_refused():
    for value in (None, 3, ["a"]):
        with pytest.raises(InputError, match="must be a string"):
            paths.check_pod_name(value)


def test_container_and_volume_names_are_labels():
    assert paths.check_container_name("a" * 63)
    for bad in ("a" * 64, "a.b", "..", "A", ""):
        with pytest.raises(InputError, match="^invalid container name"):
            paths.check_container_name(bad)
        with pytest.raises(InputError, match="^invalid volume name"):
            paths.check_volume_name(bad)


@pytest.mark.parametrize("name", HOSTILE_POD_NAMES + GOOD_POD_NAMES + ["a" * 63, "a" * 64])
def test_the_checks_agree_with_the_manifest_checks(name):
    """One rule: a name `validate` accepts in a manifest is one every command accepts."""
    assert (paths.subdomain_problem(name) is None) == (syntax.name_problem(
        name, syntax.dns_subdomain_problem) is None)
    assert (paths.label_problem(name) is None) == (syntax.name_problem(
        name, syntax.dns_label_problem) is None)


@pytest.mark.parametrize("part", ["", ".", "..", "a/b", "/", "a\0"])
def test_join_refuses_components_that_leave(part):
    with pytest.raises(StateError, match="refusing path component"):
        paths.join("/run/nspod", "pods", part)


def test_root_option_refuses_slash_and_relative():
    for bad in ("/", "//", "relative/root", "/a\0b", "/a\nb", "/a\tb"):
        with pytest.raises(InputError, match="^--root"):
            config.load(root=bad, environ={})
    assert config.load(root="/run/nspod/../x/", environ={}).root == "/run/x"


# --- the state root -------------------------------------------------------------------------

def test_root_is_made_0700_with_its_parents(tmp_path):
    root = tmp_path / "a" / "b" / "root"
    assert paths.check_root(str(root), create=True)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert paths.check_root(str(tmp_path / "absent")) is False
    assert not (tmp_path / "absent").exists()


def test_symlinked_root_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "root").symlink_to(target)
    with pytest.raises(StateError, match="is a symlink"):
        paths.check_root(str(tmp_path / "root"), create=True)
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_root_of_another_user_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(StateError, match="belongs to uid 65534"):
        paths.check_root(str(root))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_root_below_a_directory_of_another_user_is_refused(tmp_path):
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, 65534, 65534)
    with pytest.raises(StateError, match="belongs to uid 65534, who could replace"):
        paths.check_root(str(parent / "root"), create=True)
    assert os.listdir(parent) == []


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_root_writable_by_others_is_refused(tmp_path, mode):
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, mode)
    with pytest.raises(StateError, match="writable by group or others"):
        paths.check_root(str(root))


def test_root_below_a_world_writable_directory_is_refused_unless_sticky(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    with pytest.raises(StateError, match="writable by group or others"):
        paths.check_root(str(parent / "root"), create=True)
    os.chmod(parent, 0o1777)  # as /tmp: only an entry's owner may rename it
    assert paths.check_root(str(parent / "root"), create=True)


def test_a_directory_that_is_no_state_root_is_refused(tmp_path):
    root = tmp_path / "usr"
    root.mkdir(mode=0o700)
    (root / "bin").mkdir()
    with pytest.raises(StateError, match="not an nspod state root"):
        paths.check_root(str(root))


@pytest.mark.parametrize("entry", ["pods", "admission.lock", "network", "images",
                                   "cgroup-parents.json", "anything"])
def test_symlinks_planted_in_the_root_are_refused_not_followed(tmp_path, entry):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / entry).symlink_to(elsewhere)
    with pytest.raises(StateError, match=f"{entry} is a symlink"):
        paths.check_root(str(root))
    with pytest.raises(StateError, match="is a symlink"):
        state.PodDir(str(root), "web").create()
    assert list(elsewhere.iterdir()) == []


def test_pod_dir_symlink_is_refused_and_its_target_untouched(tmp_path):
    root = tmp_path / "root"
    state.PodDir(str(root), "web").create()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (root / "pods" / "evil").symlink_to(victim)
    pod_dir = state.PodDir(str(root), "evil")
    with pytest.raises(StateError, match="symlink"):
        pod_dir.exists()
    with pytest.raises(StateError, match="symlink"):
        pod_dir.remove()
    with pytest.raises(StateError, match="symlink"):
        pod_dir.write_state({"phase": "Failed"})
    assert [p.name for p in state.list_pods(str(root))] == ["web"]
    assert os.listdir(victim) == ["keep"]


def test_planted_state_file_symlink_is_not_read_or_written_through(tmp_path):
    root = tmp_path / "root"
    pod_dir = state.PodDir(str(root), "web")
    pod_dir.create()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"phase": "Running"}))
    os.symlink(secret, pod_dir.file("state.json"))
    with pytest.raises(StateError, match="cannot read"):
        pod_dir.read_state()
    pod_dir.write_state({"phase": "Failed"})  # replaces the link, never writes through it
    assert json.loads(secret.read_text()) == {"phase": "Running"}
    assert not os.path.islink(pod_dir.file("state.json"))


def test_planted_lock_symlink_is_refused(tmp_path):
    root = tmp_path / "root"
    pod_dir = state.PodDir(str(root), "web")
    pod_dir.create()
    target = tmp_path / "target"
    os.symlink(target, pod_dir.file("monitor.lock"))
    with pytest.raises(StateError, match="symlink"):
        pod_dir.lock_monitor()
    assert not target.exists()


def test_remove_does_not_follow_symlinks_inside_the_pod(tmp_path):
    root = tmp_path / "root"
    pod_dir = state.PodDir(str(root), "web")
    pod_dir.create()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    os.makedirs(pod_dir.file("volumes", "data"))
    os.symlink(victim, pod_dir.file("volumes", "data", "link"))
    os.symlink(victim / "keep", pod_dir.file("volumes", "file-link"))
    pod_dir.remove()
    assert not os.path.lexists(pod_dir.path)
    assert os.listdir(victim) == ["keep"]
    with pytest.raises(PodNotFound):
        pod_dir.read_pod()


def test_list_pods_skips_entries_that_are_no_pod_names(tmp_path):
    root = tmp_path / "root"
    state.PodDir(str(root), "web").create()
    (root / "pods" / "Not_A_Pod").mkdir()
    (root / "pods" / "file").write_text("")
    assert [p.name for p in state.list_pods(str(root))] == ["web"]


# --- the registry of state roots ------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="the registry is root's")
def test_roots_are_registered_once_and_gone_ones_pruned(tmp_path):
    registry = str(tmp_path / "registry")
    a, b = tmp_path / "a", tmp_path / "b"
    assert paths.check_root(str(a), create=True)
    root_registry.register(str(a), registry)
    root_registry.register(str(a), registry)
    root_registry.register(str(b), registry)  # b does not exist (yet): registered, pruned later
    assert root_registry.registered_roots(registry) == [str(a), str(b)]
    assert stat.S_IMODE(os.stat(registry).st_mode) == 0o700
    a.rmdir()
    root_registry.register(str(tmp_path / "c"), registry)
    assert root_registry.registered_roots(registry) == [str(tmp_path / "c")]
    assert not [e for e in os.listdir(registry) if e.startswith(".")]


@pytest.mark.skipif(os.geteuid() != 0, reason="the registry is root's")
def test_a_symlinked_registry_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, tmp_path / "registry")
    with pytest.raises(StateError, match="symlink"):
        root_registry.register("/run/x", str(tmp_path / "registry"))
    assert root_registry.registered_roots(str(tmp_path / "registry")) == []
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the registry is root's")
def test_using_a_root_registers_it(tmp_path):
    root = str(tmp_path / "root")
    state.PodDir(root, "web").create()
    assert root in root_registry.registered_roots()


@pytest.mark.skipif(os.geteuid() != 0, reason="the registry is root's")
def test_container_hides_every_registered_root(tmp_path):
    from nsPod.kernel import container
    roots = [str(tmp_path / n) for n in ("b", "a", "a/inner")]
    for r in roots:
        paths.check_root(r, create=True)
    hidden = container.state_roots_to_hide(str(tmp_path / "own"))
    assert set(roots) | {str(tmp_path / "own")} <= set(hidden)
    assert hidden.index(str(tmp_path / "a")) < hidden.index(str(tmp_path / "a/inner"))
    assert root_registry.REGISTRY in hidden


# --- the control socket's address -----------------------------------------------------------

def test_control_socket_binds_and_connects_with_a_253_character_name(tmp_path):
    import socket
    name = "a" * 253
    pod_dir = state.PodDir(str(tmp_path / "root"), name)
    pod_dir.create()
    assert len(pod_dir.file(state.CONTROL_SOCKET)) > 108
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pod_dir.socket_address() as address:
        server.bind(address)
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pod_dir.socket_address() as address:
        client.connect(address)
    conn, _ = server.accept()
    client.sendall(b"x")
    assert conn.recv(1) == b"x"
    for s in (conn, client, server):
        s.close()
    assert stat.S_ISSOCK(os.lstat(pod_dir.file(state.CONTROL_SOCKET)).st_mode)


# --- the entry of every command -------------------------------------------------------------

HOSTILE_COMMANDS = [
    ["rm", "-f", "/"], ["rm", "-f", "."], ["rm", "-f", ".."], ["rm", "../../x"],
    ["rm", "-f", "/some/host/dir"], ["rm", "-f", "web", "../x"], ["stop", "DIR"],
    ["stop", "/some/dir"], ["inspect", "../etc"], ["logs", ".."], ["logs", "web", "../c"],
    ["exec", "..", "--", "true"], ["exec", "-c", "../c", "web", "--", "true"],
    ["debug", "/", "--", "true"], ["debug", "--target", "A", "web", "--", "true"],
    ["restart", "..", "c"], ["restart", "web", "C/x"], ["ns", "../.."], ["top", "/"],
    ["stats", "."], ["generate", "../etc"], ["add", "..", "c", "--", "true"],
    ["add", "web", "../c", "--", "true"], ["create", "../x"], ["create", "x" * 254],
]


@pytest.mark.skipif(os.geteuid() != 0, reason="every command but validate needs root")
@pytest.mark.parametrize("argv", HOSTILE_COMMANDS, ids=lambda a: " ".join(a)[:40])
def test_every_command_refuses_hostile_names_before_touching_anything(
        argv, tmp_path, monkeypatch, capsys):
    """One line, exit 2, and nothing touched: the calls that remove, stop or talk to a pod
    are made to fail the test if reached."""
    from nsPod import cli
    from nsPod.api import control, pods as pod

    def forbidden(*args, **kwargs):
        raise AssertionError(f"reached with {args}")

    for name in ("_remove_dir", "clean_up_after_monitor", "_start_monitor"):
        monkeypatch.setattr(pod, name, forbidden)
    monkeypatch.setattr(control, "request", forbidden)
    monkeypatch.setattr(state.PodDir, "remove", forbidden)
    monkeypatch.setattr(state.PodDir, "create", forbidden)
    root = tmp_path / "root"
    paths.check_root(str(root), create=True)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_command(["--root", str(root), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: invalid "), err
    assert os.listdir(root) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="run needs root")
def test_run_closes_its_lock_fd_when_admission_fails(tmp_path):
    """pod.run is a library call: a failed run must not leave the pod's monitor.lock open."""
    from nsPod.api import pods as pod
    pods, _ = spec.load_pods(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big, annotations: "
        "{nspod.io/network: none}}\nspec:\n  containers:\n  - name: c\n    command: ['true']\n"
        "    resources: {limits: {memory: 100Pi}}\n")
    conf = config.load(root=str(tmp_path / "root"), environ={})
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(Exception, match="needs"):
            pod.run(conf, pods[0])
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert os.listdir(tmp_path / "root" / "pods") == []


def test_a_planted_control_socket_symlink_is_not_connected_through(tmp_path):
    import socket
    pod_dir = state.PodDir(str(tmp_path / "root"), "web")
    pod_dir.create()
    elsewhere = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elsewhere.bind(str(tmp_path / "other.sock"))
    elsewhere.listen(1)
    os.symlink(tmp_path / "other.sock", pod_dir.file(state.CONTROL_SOCKET))
    with pytest.raises(StateError, match="not a socket"):
        with pod_dir.socket_address(existing=True):
            pass
    elsewhere.close()


@pytest.mark.parametrize("have_openat2", [True, False], ids=["openat2", "O_NOFOLLOW-walk"])
def test_open_beneath_follows_no_symlink_with_or_without_openat2(tmp_path, monkeypatch,
                                                                have_openat2):
    """Kernels before 5.6 have no openat2: the fallback walk refuses the same paths."""
    monkeypatch.setattr(paths, "_have_openat2", have_openat2)
    (tmp_path / "pods" / "web").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "pods" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "pods" / "web" / "f").symlink_to("/etc/passwd")
    base = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(paths.open_dir(base, "pods", "web"))
        for parts in (("pods", "link"),):
            with pytest.raises(StateError, match="symlink"):
                paths.open_dir(base, *parts)
        with pytest.raises(StateError, match="symlink"):
            paths.open_beneath(base, "pods/web/f", os.O_RDONLY)
        with pytest.raises(StateError):
            paths.open_dir(base, "pods", "..")
    finally:
        os.close(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="exec needs root")
@pytest.mark.parametrize("call", ["exec", "debug"])
def test_exec_and_debug_do_not_join_a_process_state_json_wrongly_names(tmp_path, monkeypatch,
                                                                       call):
    """A state.json naming another process (here: this test's, with its true start time) is
    not believed: exec/debug refuse instead of entering that process's namespaces."""
    from nsPod.kernel import container
    from nsPod.api import enter
    me = state.ProcessRef.of(os.getpid())
    doc = {"plan": {"containers": [{"name": "c"}], "init_containers": []}}
    pod_state = {"cgroup": "nspod/web", "pause": me.to_json(),
                 "containers": {"c": {"pid": me.pid, "pidStartTime": me.start_time}}}
    from nsPod.store.podstate import PodState
    monkeypatch.setattr(enter, "load",
                        lambda config, name: (None, doc, PodState.from_json(pod_state)))

    def forbidden(*args, **kwargs):
        raise AssertionError("joined a process that is not the pod's")

    monkeypatch.setattr(container, "spawn_joined", forbidden)
    monkeypatch.setattr(container, "spawn", forbidden)
    from nsPod.plan import make as plan
    monkeypatch.setattr(plan, "container_from_json", lambda data: type("C", (), data))
    conf = config.load(root=str(tmp_path / "root"), environ={})
    with pytest.raises(StateError, match="is not running"):
        if call == "exec":
            enter.exec_in(conf, "web", "c", ["true"])
        else:
            enter.debug(conf, "web", "c", ["true"])


def test_pod_dir_file_takes_relative_paths_and_refuses_leaving_ones(tmp_path):
    pod_dir = state.PodDir(str(tmp_path), "web")
    assert pod_dir.file("logs/c/0.log") == os.path.join(pod_dir.path, "logs", "c", "0.log")
    assert pod_dir.file("logs", "c") == os.path.join(pod_dir.path, "logs", "c")
    for bad in ("../x", "/etc/passwd", "logs/../../x", "a//b", "."):
        with pytest.raises(StateError, match="refusing path component"):
            pod_dir.file(bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_root_reached_through_a_symlink_another_user_could_replace_is_refused(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (tmp_path / "real").mkdir(mode=0o755)
    os.symlink(tmp_path / "real", sticky / "link")
    os.lchown(sticky / "link", 65534, 65534)
    with pytest.raises(StateError, match="is a symlink of uid 65534"):
        paths.check_root(str(sticky / "link" / "root"), create=True)
    assert os.listdir(tmp_path / "real") == []  # nothing made through it
    os.lchown(sticky / "link", 0, 0)  # root's own symlink there is fine
    assert paths.check_root(str(sticky / "link" / "root"), create=True)


def test_root_below_a_writable_directory_behind_a_symlink_is_refused(tmp_path):
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "open", 0o777)
    (tmp_path / "open" / "real").mkdir()
    os.symlink(tmp_path / "open" / "real", tmp_path / "link")
    with pytest.raises(StateError, match="writable by group or others"):
        paths.check_root(str(tmp_path / "link" / "root"), create=True)
