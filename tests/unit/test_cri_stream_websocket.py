"""RFC 6455 framing of the CRI streaming server: lengths, masking, fragments, control
frames, close codes, caps -- against hand-made frames."""
import io
import socket
import struct
import threading

import pytest

from nsPod.cri.streaming import websocket
from nsPod.cri.streaming.buffers import Closed, SocketReader

MASK = b"\x37\xfa\x21\x3d"


def reader_of(data):
    stream = io.BytesIO(data)

    def recv_exact(n):
        out = stream.read(n)
        if len(out) < n:
            raise Closed("end of file")
        return out
    return recv_exact


def test_accept_key_is_rfc_6455s_example():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("key", ["", "not base64!", "c2hvcnQ=", "A" * 400])
def test_accept_key_refuses_what_is_not_16_bytes_of_base64(key):
    with pytest.raises(websocket.ProtocolError):
        websocket.accept_key(key)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_round_trip_at_each_length_encoding(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = websocket.encode_frame(websocket.BINARY, payload, mask=MASK)
    assert frame[1] & 0x7F == (size if size < 126 else 126 if size < 65536 else 127)
    assert websocket.read_frame(reader_of(frame)) == (True, websocket.BINARY, payload)
    # The mask really is applied on the wire.
    assert size == 0 or payload not in frame


def test_server_frames_are_unmasked_and_client_frames_must_be_masked():
    unmasked = websocket.encode_frame(websocket.TEXT, b"hi")
    assert unmasked == b"\x81\x02hi"
    with pytest.raises(websocket.ProtocolError, match="not masked"):
        websocket.read_frame(reader_of(unmasked))
    assert websocket.read_frame(reader_of(unmasked), masked=False) == (True, websocket.TEXT,
                                                                       b"hi")


def test_a_length_over_the_cap_is_refused_before_the_payload_is_read():
    header = struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + MASK   # no payload follows
    with pytest.raises(websocket.ProtocolError) as e:
        websocket.read_frame(reader_of(header))
    assert e.value.code == websocket.TOO_BIG
    with pytest.raises(websocket.ProtocolError, match="top bit"):
        websocket.read_frame(reader_of(struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + MASK))


@pytest.mark.parametrize("frame, why", [
    (b"\xc2\x80" + MASK, "reserved"),                     # RSV1 without an extension
    (b"\x83\x80" + MASK, "opcode"),                       # opcode 3 is reserved
    (b"\x09\x80" + MASK, "control"),                      # a fragmented ping
    (b"\x89\xfe\x00\x7e" + MASK + b"x" * 126, "control"),  # a ping over 125 bytes
])
def test_malformed_frames_are_protocol_errors(frame, why):
    with pytest.raises(websocket.ProtocolError, match=why):
        websocket.read_frame(reader_of(frame))


@pytest.mark.parametrize("payload, code", [(b"", 1005), (struct.pack("!H", 1000), 1000),
                                           (struct.pack("!H", 4000) + b"bye", 4000)])
def test_close_codes(payload, code):
    assert websocket.parse_close(payload) == code


@pytest.mark.parametrize("payload", [b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999),
                                     struct.pack("!H", 2000), struct.pack("!H", 1000) + b"\xff"])
def test_close_frames_a_peer_may_not_send(payload):
    with pytest.raises(websocket.ProtocolError):
        websocket.parse_close(payload)


def connection_pair():
    server, client = socket.socketpair()
    server.settimeout(5)
    client.settimeout(5)
    return websocket.Connection(server, SocketReader(server)), client


def client_frames(conn, client):
    """The frames the server sent, once it is done sending."""
    data = b""
    conn.sock.shutdown(socket.SHUT_WR)
    while chunk := client.recv(65536):
        data += chunk
    frames, read = [], reader_of(data)
    while True:
        try:
            frames.append(websocket.read_frame(read, masked=False))
        except Closed:
            return frames


def test_fragments_join_and_pings_between_them_are_answered():
    conn, client = connection_pair()
    client.sendall(websocket.encode_frame(websocket.BINARY, b"\x00ab", fin=False, mask=MASK) +
                   websocket.encode_frame(websocket.PING, b"p1", mask=MASK) +
                   websocket.encode_frame(websocket.CONTINUATION, b"cd", fin=False, mask=MASK) +
                   websocket.encode_frame(websocket.CONTINUATION, b"ef", mask=MASK) +
                   websocket.encode_frame(websocket.CLOSE, struct.pack("!H", 1000), mask=MASK))
    assert conn.recv_message() == (websocket.BINARY, b"\x00abcdef")
    with pytest.raises(Closed):
        conn.recv_message()
    frames = client_frames(conn, client)
    assert frames == [(True, websocket.PONG, b"p1"),
                      (True, websocket.CLOSE, struct.pack("!H", 1000))]


@pytest.mark.parametrize("frames", [
    websocket.encode_frame(websocket.CONTINUATION, b"x", mask=MASK),
    websocket.encode_frame(websocket.BINARY, b"x", fin=False, mask=MASK) +
    websocket.encode_frame(websocket.BINARY, b"y", mask=MASK),
    websocket.encode_frame(websocket.TEXT, b"\xff\xfe", mask=MASK),
])
def test_bad_message_sequences_are_protocol_errors(frames):
    conn, client = connection_pair()
    client.sendall(frames)
    with pytest.raises(websocket.ProtocolError):
        conn.recv_message()


def test_a_message_of_many_fragments_is_capped_in_total():
    conn, client = connection_pair()
    conn.max_message = 1000
    chunk = websocket.encode_frame(websocket.CONTINUATION, b"x" * 400, fin=False, mask=MASK)
    sender = threading.Thread(target=client.sendall, args=(
        websocket.encode_frame(websocket.BINARY, b"x" * 400, fin=False, mask=MASK) +
        chunk * 2,))
    sender.start()
    with pytest.raises(websocket.ProtocolError) as e:
        conn.recv_message()
    sender.join()
    assert e.value.code == websocket.TOO_BIG


def test_close_is_sent_once_and_sends_after_it_are_dropped():
    conn, client = connection_pair()
    conn.close(1001, "bye")
    conn.close(1000)
    conn.send(websocket.BINARY, b"late")
    assert client_frames(conn, client) == [(True, websocket.CLOSE, struct.pack("!H", 1001) + b"bye")]


def test_apply_mask_is_its_own_inverse():
    data = bytes(range(256)) * 3 + b"tail"
    assert websocket.apply_mask(MASK, websocket.apply_mask(MASK, data)) == data
    assert websocket.apply_mask(MASK, b"\x00\x00\x00\x00\x00") == MASK + MASK[:1]
