"""The container's identity and the RuntimeDefault seccomp filter, without root: users and
groups resolved as runc resolves them, and the filter loaded in a child under no_new_privs."""
import errno
import os

import pytest

from nsPod.kernel import identity as kernel_identity, seccomp, security
from nsPod.plan.make import DEFAULT_CAPABILITIES
from nsPod.kernel.syscalls import CloneFlag, mount, unshare

PASSWD = [["root", "x", "0", "0", "root", "/root", "/bin/sh"],
          ["app", "x", "1000", "1000", "", "/home/app", "/bin/sh"]]
GROUP = [["root", "x", "0", ""], ["app", "x", "1000", ""], ["staff", "x", "50", "app,other"],
         ["wheel", "x", "10", "root"]]


@pytest.fixture
def dbs(monkeypatch):
    files = {"/etc/passwd": PASSWD, "/etc/group": GROUP}
    monkeypatch.setattr(kernel_identity, "_read_db", lambda path: files[path])


def identity(**settings):
    return kernel_identity.resolve_identity({**kernel_identity.DEFAULT_SECURITY, **settings})


def test_identity_as_runc_finds_it(dbs):
    assert identity() == (0, 0, [10])
    assert identity(user="app") == (1000, 1000, [50])
    assert identity(user="1000", group="staff") == (1000, 50, [50])
    # A uid without an entry needs none: group 0, no groups from the file.
    assert identity(user="4242") == (4242, 0, [])
    assert identity(user="1000", group="3000", supplementalGroups=[4000, 50], fsGroup=2000) == \
        (1000, 3000, [50, 4000, 2000])
    with pytest.raises(LookupError, match="unable to find user ghost"):
        identity(user="ghost")
    with pytest.raises(LookupError, match="unable to find group ghosts"):
        identity(user="app", group="ghosts")


def test_old_plans_get_the_defaults():
    class Old:
        security = {}
    settings = kernel_identity.security_settings(Old())
    assert settings["capabilities"] == list(DEFAULT_CAPABILITIES)
    assert settings["seccomp"] == "Unconfined" and not settings["privileged"]


def test_capability_names_to_numbers():
    assert security.capability_numbers(["CHOWN", "cap_net_raw", "SYS_ADMIN", "NOPE"]) == \
        {0, 13, 21}
    assert security.capability_numbers(DEFAULT_CAPABILITIES) == \
        {n for n in range(64) if 0xA80425FB >> n & 1}


def _in_child(check):
    """Run check() in a forked child; its exit code (0: it passed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = check()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _errno_of(call):
    try:
        call()
    except OSError as e:
        return e.errno
    return 0


def test_runtime_default_refuses_namespaces_and_mounts_but_not_forks():
    f = seccomp.runtime_default(DEFAULT_CAPABILITIES)
    assert {"unshare", "setns", "mount", "keyctl", "kexec_load", "init_module",
            "clone(CLONE_NEW*)"} <= set(f.denied)
    assert "chroot" not in f.denied and "ptrace" not in f.denied

    def check():
        security.set_no_new_privs()   # what lets an unprivileged process load a filter
        seccomp.load(f)
        results = [
            _errno_of(lambda: unshare(CloneFlag.CLONE_NEWUSER)) == errno.EPERM,
            _errno_of(lambda: mount("none", "/", "tmpfs")) == errno.EPERM,
            _in_child(lambda: 0) == 0,            # a plain fork still works
            os.getpid() > 0,
        ]
        return 0 if all(results) else 2
    assert _in_child(check) == 0


def test_sys_admin_lifts_the_namespace_rules():
    f = seccomp.runtime_default(list(DEFAULT_CAPABILITIES) + ["SYS_ADMIN"])
    assert "unshare" not in f.denied and "mount" not in f.denied
    assert "kexec_load" in f.denied   # never allowed, whatever the capabilities


# --- the container's /etc/passwd and /etc/group are hostile files ----------------------------

def test_a_passwd_that_is_no_regular_file_is_refused_without_blocking(tmp_path):
    """A FIFO (no writer: a blocking open or read would wait forever), a device and a
    directory are refused, each with a line naming the file and what it is."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (zero, "a character device"), (tmp_path, "a directory")):
        with pytest.raises(OSError) as caught:
            kernel_identity._read_db(str(path))
        assert f"not a regular file ({kind})" in str(caught.value)
        assert caught.value.filename == str(path)


def test_a_huge_passwd_is_refused_before_it_is_read(tmp_path):
    sparse = tmp_path / "passwd"
    with open(sparse, "wb") as f:
        f.truncate(20 << 30)   # 20 GB of holes: no newline, so a line reader would hold all
    with pytest.raises(OSError, match="larger than 1 MiB"):
        kernel_identity._read_db(str(sparse))


def test_passwd_records_are_read_and_a_missing_file_is_none(tmp_path):
    path = tmp_path / "passwd"
    path.write_bytes(b"# comment\nroot:x:0:0::/root:/bin/sh\n\nbad line\napp:x:1000:1000\n\xff:x:7\n")
    assert kernel_identity._read_db(str(path)) == [
        ["root", "x", "0", "0", "", "/root", "/bin/sh"], ["app", "x", "1000", "1000"],
        ["\ufffd", "x", "7"]]
    assert kernel_identity._read_db(str(tmp_path / "none")) == []


def test_hostile_ids_in_the_files_are_clear_errors(monkeypatch):
    files = {"/etc/passwd": [["short", "x", "12"], ["bad", "x", "abc", "0"],
                             ["big", "x", "9" * 5000, "0"], ["uni", "x", "\u00b2", "0"]],
             "/etc/group": [["g", "x", "99999999999"], ["odd", "x", "1", "short"]]}
    monkeypatch.setattr(kernel_identity, "_read_db", lambda path: files[path])
    # A record without a gid field: group 0, as before; the malformed member gid is skipped.
    assert identity(user="short") == (12, 0, [1])
    for user, shown in (("bad", "'abc'"), ("big", "'99999999999999999999'"), ("uni", "'\u00b2'")):
        with pytest.raises(LookupError, match=f"user {user}: uid in /etc/passwd: {shown} is not a "
                                              "number"):
            identity(user=user)
    with pytest.raises(LookupError, match="group g: gid in /etc/group"):
        identity(user="short", group="g")
    with pytest.raises(LookupError, match="user: '4294967296' is not a number"):
        identity(user="4294967296")
