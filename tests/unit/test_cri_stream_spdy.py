"""SPDY/3.1 framing and the server connection of the CRI streaming server, driven by a
hand-made client (frames built here, header blocks with the shared zlib dictionary)."""
import socket
import struct
import threading
import zlib

import pytest

from nsPod.cri.streaming import spdy
from nsPod.cri.streaming.buffers import Closed, SocketReader
from nsPod.cri.streaming.spdy_dictionary import DICTIONARY


def test_the_dictionary_is_spdy3s():
    assert len(DICTIONARY) == 1423
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options")
    assert DICTIONARY.endswith(b",*,enq=0.")


def test_header_blocks_round_trip_across_one_zlib_stream_per_direction():
    ours, theirs = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = ours.encode({"streamType": ["stdout"], "port": ["80"]})
    second = ours.encode({"multi": ["a", "b"]})
    assert theirs.decode(first) == {"streamtype": ["stdout"], "port": ["80"]}
    assert theirs.decode(second) == {"multi": ["a", "b"]}
    # The second block depends on the first: alone, it does not decode.
    with pytest.raises(spdy.SpdyError):
        spdy.HeaderCodec().decode(second)


def test_a_header_block_that_inflates_too_far_is_refused():
    bomb = spdy.HeaderCodec()
    block = struct.pack("!I", 1) + struct.pack("!I", 1) + b"x" + struct.pack("!I", 1 << 20) + \
        b"y" * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    data = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 4096
    with pytest.raises(spdy.SpdyError, match="over"):
        bomb.decode(data)


@pytest.mark.parametrize("block, why", [
    (struct.pack("!I", 1000), "headers"),
    (struct.pack("!I", 1) + struct.pack("!I", 50) + b"short", "truncated"),
])
def test_malformed_header_blocks(block, why):
    with pytest.raises(spdy.SpdyError, match=why):
        spdy.parse_header_block(block)


def test_frames_are_read_with_their_length_capped_first():
    frame = spdy.data_frame(5, b"hello", fin=True)
    assert spdy.read_frame(iter_reader(frame)) == ("data", 5, spdy.FLAG_FIN, b"hello")
    ping = spdy.control_frame(spdy.PING, 0, struct.pack("!I", 7))
    assert spdy.read_frame(iter_reader(ping)) == ("control", spdy.PING, 0, struct.pack("!I", 7))
    huge = struct.pack("!II", 1, 0xFFFFFF)   # 16 MB announced, nothing follows
    with pytest.raises(spdy.SpdyError, match="at most"):
        spdy.read_frame(iter_reader(huge))
    v2 = struct.pack("!HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1"
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.read_frame(iter_reader(v2))


def iter_reader(data):
    pos = 0

    def recv_exact(n):
        nonlocal pos
        if pos + n > len(data):
            raise Closed("end of file")
        pos += n
        return data[pos - n:pos]
    return recv_exact


class Client:
    """A SPDY client on the other end of a socketpair."""

    def __init__(self, on_stream, max_streams=4):
        self.sock, server = socket.socketpair()
        self.sock.settimeout(5)
        server.settimeout(5)
        self.codec = spdy.HeaderCodec()
        self.reader = SocketReader(self.sock)
        self.conn = spdy.Connection(server.sendall, SocketReader(server).recv_exact, on_stream,
                                    max_streams)
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.conn.serve()
        except (spdy.SpdyError, Closed) as e:
            self.error = e

    def syn(self, stream_id, headers, fin=False):
        self.sock.sendall(spdy.control_frame(
            spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0,
            struct.pack("!IIBB", stream_id, 0, 0, 0) + self.codec.encode(headers)))

    def frame(self):
        kind, ident, flags, payload = spdy.read_frame(self.reader.recv_exact)
        if kind == "control" and ident == spdy.SYN_REPLY:
            return "reply", struct.unpack("!I", payload[:4])[0]
        if kind == "control" and ident == spdy.RST_STREAM:
            return "rst", struct.unpack("!II", payload)
        if kind == "control":
            return ident, payload
        return "data", ident, flags, payload


def test_streams_open_carry_data_and_half_close():
    accepted = []
    client = Client(lambda s: accepted.append(s) or s.header("streamtype") != "bad")
    client.syn(1, {"streamtype": ["stdin"]})
    assert client.frame() == ("reply", 1)
    client.sock.sendall(spdy.data_frame(1, b"abc") + spdy.data_frame(1, b"", fin=True))
    stream = accepted[0]
    assert stream.header("streamType") == "stdin"
    assert stream.read(5) == b"abc" and stream.read(5) == b""
    stream.write(b"x" * (spdy.CHUNK + 1))
    stream.close()
    assert client.frame() == ("data", 1, 0, b"x" * spdy.CHUNK)
    assert client.frame() == ("data", 1, 0, b"x")
    assert client.frame() == ("data", 1, spdy.FLAG_FIN, b"")
    client.syn(3, {"streamtype": ["bad"]})
    assert client.frame() == ("rst", (3, spdy.REFUSED_STREAM))
    # Pings are echoed; SETTINGS and WINDOW_UPDATE are read and ignored.
    client.sock.sendall(spdy.control_frame(spdy.SETTINGS, 0, struct.pack("!I", 0)) +
                        spdy.control_frame(spdy.WINDOW_UPDATE, 0, struct.pack("!II", 1, 9)) +
                        spdy.control_frame(spdy.PING, 0, struct.pack("!I", 11)))
    assert client.frame() == (spdy.PING, struct.pack("!I", 11))
    client.sock.sendall(spdy.control_frame(spdy.RST_STREAM, 0, struct.pack("!II", 1, 5)))
    client.sock.sendall(spdy.control_frame(spdy.GOAWAY, 0, struct.pack("!II", 3, 0)))
    client.thread.join(5)
    assert stream.peer_reset and client.error is None and client.conn.closed.is_set()


def test_stream_ids_must_be_odd_and_increasing():
    client = Client(lambda s: True)
    client.syn(3, {})
    assert client.frame() == ("reply", 3)
    client.syn(1, {})
    client.thread.join(5)
    assert isinstance(client.error, spdy.SpdyError)


def test_streams_over_the_limit_are_refused():
    client = Client(lambda s: True, max_streams=2)
    for sid in (1, 3):
        client.syn(sid, {})
        assert client.frame() == ("reply", sid)
    client.syn(5, {})
    assert client.frame() == ("rst", (5, spdy.REFUSED_STREAM))


def test_data_for_an_unknown_stream_is_dropped_and_garbage_ends_the_connection():
    client = Client(lambda s: True)
    client.sock.sendall(spdy.data_frame(99, b"nobody's"))
    client.sock.sendall(b"\xff" * 16)
    client.thread.join(5)
    assert isinstance(client.error, spdy.SpdyError)
