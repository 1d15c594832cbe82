"""podd's request protocol (nsPod/warm/protocol.py) and the thin client's pure parts: what
is accepted, and that everything past a bound is refused before it is acted on."""
import pytest

from nsPod.warm import client, protocol
from nsPod.warm.protocol import FrameReader, ProtocolError, Request


def frame_of(request):
    return protocol.encode_request(request)


def read_whole(data, fds=(), max_fds=protocol.RUN_FDS):
    reader = FrameReader(max_fds)
    body = reader.feed(data, fds)
    assert body is not None
    return protocol.decode_body(body)


def test_a_run_request_round_trips_with_odd_bytes():
    env = {"NSPOD_ROOT": "/r", "TERM": "xterm", "EMPTY": "", "EQ": "a=b", "LATIN": "caf\udce9"}
    argv = ["--root", "/r", "exec", "p", "--", "sh", "-c", "echo 'é'; exit 3", ""]
    got = read_whole(frame_of(Request("run", argv, env, 0o027)))
    assert (got.op, got.argv, got.env, got.umask) == ("run", argv, env, 0o027)


def test_a_frame_may_come_a_byte_at_a_time():
    data = frame_of(Request("run", ["ps"], {"A": "1"}))
    reader = FrameReader()
    for i, byte in enumerate(data):
        body = reader.feed(bytes([byte]), [5, 6, 7, 8] if i == 0 else [])
        if i < len(data) - 1:
            assert body is None
            if i >= protocol.HEADER.size - 1:
                assert reader.needed() == len(data) - i - 1
    assert protocol.decode_body(body).argv == ["ps"] and reader.fds == [5, 6, 7, 8]


@pytest.mark.parametrize("data, words", [
    (b"NSPD\xff\xff\xff\xff", "more than"),
    (b"GET / HTTP/1.0\r\n", "not an nspod request"),
])
def test_bad_headers_are_refused_before_any_body_is_read(data, words):
    with pytest.raises(ProtocolError, match=words):
        FrameReader().feed(data[:8])


def test_too_many_descriptors_are_refused():
    with pytest.raises(ProtocolError, match="descriptors"):
        FrameReader().feed(b"NSPD", [3, 4, 5, 6, 7])


def test_bytes_past_the_frame_are_refused():
    data = frame_of(Request("ping"))
    with pytest.raises(ProtocolError, match="after"):
        FrameReader().feed(data + b"x")


def body(*fields):
    return b"\0".join(f.encode() for f in fields)


@pytest.mark.parametrize("fields, words", [
    (("v2", "run"), "v1"),
    (("v1", "shell"), "unknown op"),
    (("v1", "ping", "x"), "takes no fields"),
    (("v1", "run"), "no umask"),
    (("v1", "run", "9"), "not a number"),            # octal
    (("v1", "run", "7777"), "out of range"),
    (("v1", "run", "22", "-1"), "not a number"),
    (("v1", "run", "22", "3", "a"), "fields left"),
    (("v1", "run", "22", "1", "ps"), "no environment count"),
    (("v1", "run", "22", "0", "1", "NOEQUALS"), "NAME=VALUE"),
    (("v1", "run", "22", "0", "1", "=x"), "NAME=VALUE"),
    (("v1", "run", "22", "0", "0", "extra"), "after the environment"),
    (("v1", "run", "22", "99999999", "0"), "out of range"),
    (("v1", "monitor", "22", "1", "relative", "0"), "absolute"),
    (("v1", "monitor", "22", "2", "/p", "yes", "0"), "0 or 1"),
])
def test_malformed_bodies_are_refused(fields, words):
    with pytest.raises(ProtocolError, match=words):
        protocol.decode_body(body(*fields))


def test_bodies_and_fields_past_their_bounds_are_refused():
    with pytest.raises(ProtocolError, match="longer than"):
        protocol.decode_body(body("v1", "run", "22", "1", "x" * (protocol.MAX_FIELD + 1), "0"))
    with pytest.raises(ProtocolError, match="fields"):
        protocol.decode_body(b"\0" * (protocol.MAX_FIELDS + 1))
    with pytest.raises(ProtocolError, match="more than"):
        frame_of(Request("run", ["x" * protocol.MAX_BODY]))
    with pytest.raises(ProtocolError, match="NUL"):
        frame_of(Request("run", ["a\0b"]))


def test_replies_are_single_bounded_lines():
    assert protocol.decode_reply(protocol.encode_reply("P", 1234)) == ("P", 1234)
    assert protocol.decode_reply(protocol.encode_reply("X", 130)) == ("X", 130)
    assert protocol.decode_reply(protocol.encode_reply("E", "two\nlines")) == ("E", "two lines")
    assert len(protocol.encode_reply("E", "x" * 10000)) == protocol.MAX_REPLY
    for bad in (b"Xabc\n", b"P1", b"Q1\n", b"X" + b"9" * 20 + b"\n"):
        with pytest.raises(ProtocolError):
            protocol.decode_reply(bad)


@pytest.mark.parametrize("argv, root", [
    (["ps"], "/env"),
    (["--root", "/a", "ps"], "/a"),
    (["--root=/a", "ps"], "/a"),
    (["--trace", "-v", "--bridge", "b", "--root", "/a", "rm", "x"], "/a"),
    (["--bridge=b", "--root", "/a", "ps"], "/a"),
    # After the subcommand, --root is the command's argument, not the global option.
    (["exec", "p", "--", "ls", "--root", "/x"], "/env"),
    (["--root"], "/env"),
])
def test_the_client_finds_the_root_as_the_cli_group_reads_it(argv, root):
    assert client.root_of(argv, {"NSPOD_ROOT": "/env"}) == root
    assert client.root_of(["ps"], {}) == client.DEFAULT_ROOT


def test_the_warm_path_is_on_unless_nspod_warm_is_0():
    assert client.enabled({}) and client.enabled({"NSPOD_WARM": "1"})
    assert not client.enabled({"NSPOD_WARM": "0"})


def test_podd_idle_time_is_bounded():
    from nsPod.podd import server
    assert server.idle_seconds({}) == server.DEFAULT_IDLE
    assert server.idle_seconds({"NSPOD_WARM_IDLE": "2.5"}) == 2.5
    for bad in ("0", "-1", "nan", "x"):
        assert server.idle_seconds({"NSPOD_WARM_IDLE": bad}) == server.DEFAULT_IDLE
    assert server.idle_seconds({"NSPOD_WARM_IDLE": "inf"}) == server.MAX_IDLE


def test_the_thin_entry_point_imports_nothing_heavy():
    import subprocess
    import sys
    code = ("import sys, nsPod.warm.client; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('nsPod', 'click', "
            "'yaml', 'json')))))")
    loaded = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == ["nsPod", "nsPod.warm", "nsPod.warm.client", "nsPod.warm.protocol"]
