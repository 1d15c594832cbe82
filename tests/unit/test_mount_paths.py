"""Resolving paths inside a root by file descriptor (mounts.open_in_root, open_beneath,
volumes.open_source): with openat2 and with the O_NOFOLLOW walk used where the kernel lacks
it. No mount is made: O_PATH opens and mkdirat need no privilege."""
import errno
import os
import stat

import pytest

from nsPod.kernel import mounts, volumes
from nsPod.kernel.mounts import PathEscapeError


@pytest.fixture(params=["openat2", "walk", "eagain"])
def impl(request, monkeypatch):
    """Each test thrice: the kernel's openat2; the walk a kernel without it gets (ENOSYS);
    and the walk after openat2 kept answering EAGAIN (renames running all the while)."""
    err = {"walk": errno.ENOSYS, "eagain": errno.EAGAIN}.get(request.param)
    if err:
        def failing_openat2(*args, **kwargs):
            raise OSError(err, f"openat2: {os.strerror(err)}")
        monkeypatch.setattr(mounts, "openat2", failing_openat2)
    return request.param


def where(fd):
    try:
        return mounts.fd_path(fd)
    finally:
        os.close(fd)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "real" / "sub").mkdir(parents=True)
    (r / "data").symlink_to("/etc")
    (r / "up").symlink_to("../../..")
    (r / "loop").symlink_to("loop")
    (r / "inside").symlink_to("real/sub")
    (r / "real" / "back").symlink_to("../etc")
    (r / "dangling").symlink_to("/made/by/walk")
    return r


def open_dir(path):
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def test_in_root_keeps_every_symlink_inside(root, impl):
    """runc's rule for mount targets: absolute links restart at the root, '..' stops there."""
    fd = open_dir(root)
    try:
        assert where(mounts.open_in_root(fd, "/data")) == str(root / "etc")
        assert where(mounts.open_in_root(fd, "/up/etc")) == str(root / "etc")
        assert where(mounts.open_in_root(fd, "../../etc")) == str(root / "etc")
        assert where(mounts.open_in_root(fd, "/inside/../back")) == str(root / "etc")
        assert where(mounts.open_in_root(fd, "/")) == str(root)
        with pytest.raises(OSError) as info:
            mounts.open_in_root(fd, "/loop/x")
        assert info.value.errno == errno.ELOOP
        with pytest.raises(FileNotFoundError):
            mounts.open_in_root(fd, "/nothing")
    finally:
        os.close(fd)


def test_in_root_creates_by_fd_and_through_links_stays_inside(root, impl):
    fd = open_dir(root)
    try:
        assert where(mounts.open_in_root(fd, "/data/x/y", create="dir")) == \
            str(root / "etc" / "x" / "y")
        made = mounts.open_in_root(fd, "/up/up/f", create="file")
        assert stat.S_ISREG(os.fstat(made).st_mode)
        assert where(made) == str(root / "f")
        # A dangling absolute link: what it names is made inside the root.
        assert where(mounts.open_in_root(fd, "/dangling", create="dir")) == \
            str(root / "made" / "by" / "walk")
    finally:
        os.close(fd)
    assert not os.path.exists("/made")


def test_beneath_follows_links_inside_and_refuses_links_out(root, impl):
    """The kubelet's rule for subPath: inside is followed, out is refused."""
    fd = open_dir(root)
    try:
        assert where(mounts.open_beneath(fd, "inside", str(root))) == str(root / "real" / "sub")
        assert where(mounts.open_beneath(fd, "real/back", str(root))) == str(root / "etc")
        # An absolute target under the root's own host path is inside (the kubelet compares
        # the host's resolution of the link with the volume's path).
        (root / "abs").symlink_to(root / "real")
        assert where(mounts.open_beneath(fd, "abs/sub", str(root))) == str(root / "real" / "sub")
        for sub_path, message in [("data", "'data' is a symlink to '/etc', outside the volume"),
                                  ("up", "'up' is a symlink to '../../..', which leads outside the volume"),
                                  ("real/sub/../../up/x", "'real/sub/../../up' is a symlink to '../../..'")]:
            with pytest.raises(PathEscapeError) as info:
                mounts.open_beneath(fd, sub_path, str(root))
            assert message in str(info.value)
        with pytest.raises(PathEscapeError):
            mounts.open_beneath(fd, "dangling", str(root), create="dir")
    finally:
        os.close(fd)
    assert not os.path.exists("/made")


def test_beneath_makes_missing_directories_with_the_roots_mode(root, impl):
    fd = open_dir(root)
    old = os.umask(0o022)
    try:
        made = mounts.open_beneath(fd, "inside/n1/n2", str(root), create="dir", mode=0o777)
        assert where(made) == str(root / "real" / "sub" / "n1" / "n2")
    finally:
        os.umask(old)
        os.close(fd)
    for d in (root / "real" / "sub" / "n1", root / "real" / "sub" / "n1" / "n2"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777


def test_make_mountpoint_returns_the_resolved_path(root, impl):
    assert mounts.make_mountpoint(str(root), "/data/proc") == str(root / "etc" / "proc")
    assert mounts.make_mountpoint(str(root), "/up/file", directory=False) == str(root / "file")
    assert (root / "file").is_file()


def test_open_source_subpath_of_an_empty_dir(tmp_path, impl):
    vol = tmp_path / "vol"
    (vol / "a").mkdir(parents=True)
    vol.chmod(0o777)
    (vol / "in").symlink_to("a")
    (vol / "out").symlink_to("/")
    assert where(volumes.open_source("dir", str(vol), "in", "v")) == str(vol / "a")
    assert where(volumes.open_source("dir", str(vol), "", "v")) == str(vol)
    assert where(volumes.open_source("dir", str(vol), "new/dir", "v")) == str(vol / "new" / "dir")
    assert stat.S_IMODE((vol / "new" / "dir").stat().st_mode) == 0o777
    # An fsGroup volume's setgid bit is kept (a chmod to 0777 would drop what mkdir inherited).
    vol.chmod(0o2775)
    os.close(volumes.open_source("dir", str(vol), "g/h", "v"))
    assert stat.S_IMODE((vol / "g" / "h").stat().st_mode) == 0o2775
    with pytest.raises(PathEscapeError) as info:
        volumes.open_source("dir", str(vol), "out", "v")
    assert str(info.value) == "subPath 'out': 'out' is a symlink to '/', outside volume v"
    # An emptyDir's own directory is never followed if it is a symlink...
    (tmp_path / "link").symlink_to(vol)
    with pytest.raises(OSError) as info:
        volumes.open_source("tmpfs", str(tmp_path / "link"), "in", "v")
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    # ...a hostPath's is (the admin chose it), and its subPath is resolved inside it.
    assert where(volumes.open_source("host", str(tmp_path / "link"), "in", "v")) == str(vol / "a")
    with pytest.raises(PathEscapeError):
        volumes.open_source("host", str(tmp_path / "link"), "out", "v")
