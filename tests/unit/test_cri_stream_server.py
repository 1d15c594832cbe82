"""The CRI streaming server without a pod: its URLs and tokens, the HTTP head it reads, and
what it does to clients that are not welcome (404, limits, timeouts)."""
import socket
import time

import pytest

from nsPod.errors import InputError
from nsPod.cri.streaming import StreamingBusy, StreamingServer, httpreq
from nsPod.cri.streaming.remotecommand import status_document
from nsPod.cri.streaming.server import Tokens


@pytest.fixture
def server(tmp_path):
    srv = StreamingServer(str(tmp_path), max_sessions=2, handshake_timeout=1.0)
    srv.start()
    yield srv
    srv.stop()


def exchange(server, data, timeout=10):
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:   # closed by the server with our bytes unread
            pass
        return reply


def test_urls_carry_distinct_unguessable_tokens(server):
    a = server.exec_url("p", "c", ["ls"], False, False, True, True)
    b = server.exec_url("p", "c", ["ls"], False, False, True, True)
    assert a.startswith(f"http://127.0.0.1:{server.port}/exec/") and a != b
    assert len(a.rsplit("/", 1)[1]) >= 43   # 32 random bytes
    assert "/attach/" in server.attach_url("p", "c", False, False, True, False)
    assert "/portforward/" in server.port_forward_url("p", [80])


@pytest.mark.parametrize("call, field", [
    (lambda s: s.exec_url("../p", "c", ["ls"], False, False, True, True), "pod"),
    (lambda s: s.exec_url("p", "c/d", ["ls"], False, False, True, True), "container"),
    (lambda s: s.exec_url("p", "c", [], False, False, True, True), "cmd"),
    (lambda s: s.exec_url("p", "c", ["a\0b"], False, False, True, True), "cmd"),
    (lambda s: s.exec_url("p", "c", ["ls"], False, False, False, False), "stdin"),
    (lambda s: s.port_forward_url("p", [0]), "port"),
    (lambda s: s.port_forward_url("p", [70000]), "port"),
])
def test_bad_requests_for_urls_are_input_errors_naming_the_field(server, call, field):
    with pytest.raises(InputError, match=field):
        call(server)


def test_tokens_are_single_use_of_one_kind_and_expire():
    tokens = Tokens(ttl=0.2, limit=3)
    t = tokens.issue("exec", {"n": 1})
    assert tokens.take("attach", t) is None          # another kind: not this token
    assert tokens.take("exec", t) == {"n": 1}
    assert tokens.take("exec", t) is None            # used up
    late = tokens.issue("exec", {})
    time.sleep(0.3)
    assert tokens.take("exec", late) is None         # expired
    for _ in range(3):
        tokens.issue("exec", {})
    with pytest.raises(StreamingBusy):
        tokens.issue("exec", {})


@pytest.mark.parametrize("head", [
    b"GET /exec/nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST /portforward/ HTTP/1.1\r\n\r\n",
    b"DELETE /exec/x HTTP/1.1\r\n\r\n",
])
def test_anything_without_a_live_token_is_404_and_nothing_else(server, head):
    reply = exchange(server, head)
    assert reply == (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Content-Length: 19\r\nConnection: close\r\n\r\n404 page not found\n")


def test_a_token_is_used_up_by_any_request_and_an_upgrade_is_required(server):
    url = server.exec_url("p", "c", ["ls"], False, False, True, True)
    path = url.split(str(server.port), 1)[1]
    first = exchange(server, f"GET {path} HTTP/1.1\r\n\r\n".encode())
    assert first.startswith(b"HTTP/1.1 400 ") and b"Upgrade" in first
    assert exchange(server, f"GET {path} HTTP/1.1\r\n\r\n".encode()).startswith(b"HTTP/1.1 404")


def test_no_common_protocol_is_refused_with_the_ones_accepted(server):
    path = server.exec_url("p", "c", ["ls"], False, False, True, True).split(
        str(server.port), 1)[1]
    reply = exchange(server, f"POST {path} HTTP/1.1\r\nConnection: Upgrade\r\n"
                             "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403 ")
    assert b"X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in reply
    path = server.exec_url("p", "c", ["ls"], False, False, True, True).split(
        str(server.port), 1)[1]
    reply = exchange(server, f"GET {path} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket"
                             "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400 ") and b"v5.channel.k8s.io" in reply


def test_oversized_and_malformed_heads(server):
    assert exchange(server, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n") \
        .startswith(b"HTTP/1.1 431 ")
    assert exchange(server, b"hello there\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert exchange(server, b"GET / HTTP/1.1\r\nno colon\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_a_silent_client_is_dropped_after_the_handshake_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /exec/")    # and never the rest
        assert sock.recv(100) == b""


def test_connections_over_the_session_limit_are_closed_unread(server):
    # Accepted in order: the two held connections take both slots before the third.
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as third:
            third.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                assert third.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in held:
            sock.close()
    # Their slots come back once the server sees them go.
    deadline = time.monotonic() + 10
    while not exchange(server, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404"):
        assert time.monotonic() < deadline, "the slots were not given back"
        time.sleep(0.05)


def test_parse_head_keeps_repeated_headers_and_the_query():
    request = httpreq.parse_head(b"POST /exec/t?a=1&a=2 HTTP/1.1\r\n"
                                 b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                                 b"x-stream-protocol-version: v3.channel.k8s.io, channel.k8s.io")
    assert request.path == "/exec/t" and request.query == {"a": ["1", "2"]}
    assert request.listed("X-Stream-Protocol-Version") == [
        "v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]


def test_status_documents_carry_the_exit_code_as_client_go_reads_it():
    assert status_document({"exit": 0}) == {"metadata": {}, "status": "Success"}
    failed = status_document({"exit": 7})
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    internal = status_document({"error": "pod gone"})
    assert internal["reason"] == "InternalError" and "pod gone" in internal["message"]
    assert status_document({"exit": 300})["details"]["causes"][0]["message"] == "255"
