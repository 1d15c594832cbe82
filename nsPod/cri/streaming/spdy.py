"""SPDY/3.1, the server's half, as Kubernetes' clients speak it (moby/spdystream): frames,
zlib-compressed header blocks with SPDY's dictionary, and a connection whose streams the
client opens (SYN_STREAM, answered with SYN_REPLY) and half-closes (FIN). spdystream does
no flow control, so WINDOW_UPDATE and SETTINGS are read and ignored. Every length a client
sends is capped before it is read.
"""
import struct
import threading
import zlib

from nsPod.cri.streaming.buffers import Pipe
from nsPod.cri.streaming.spdy_dictionary import DICTIONARY

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
MAX_FRAME = 1 << 20          # a frame's payload a client may send
MAX_HEADER_BLOCK = 16 << 10  # a header block, decompressed
MAX_HEADERS = 64
CHUNK = 32 << 10             # what one data frame carries when we send


class SpdyError(Exception):
    """The peer broke the protocol: the connection is dropped (a GOAWAY first)."""


class HeaderCodec:
    """One zlib stream per direction for the whole connection, as SPDY/3 requires."""

    def __init__(self):
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         DICTIONARY)

    def encode(self, headers):
        """headers: {name: [values]} (names lowercased on the wire)."""
        parts = [struct.pack("!I", len(headers))]
        for name, values in headers.items():
            n, v = name.lower().encode(), "\0".join(values).encode()
            parts += [struct.pack("!I", len(n)), n, struct.pack("!I", len(v)), v]
        block = b"".join(parts)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data):
        """{lowercased name: [values]}; SpdyError for a block that is malformed or too big."""
        try:
            block = self._inflate.decompress(data, MAX_HEADER_BLOCK + 1)
        except zlib.error as e:
            raise SpdyError(f"header block: zlib: {e}") from None
        if len(block) > MAX_HEADER_BLOCK or self._inflate.unconsumed_tail:
            raise SpdyError(f"header block over {MAX_HEADER_BLOCK} bytes")
        return parse_header_block(block)


def parse_header_block(block):
    def take(n):
        nonlocal pos
        if pos + n > len(block):
            raise SpdyError("header block truncated")
        pos += n
        return block[pos - n:pos]

    pos = 0
    count, = struct.unpack("!I", take(4))
    if count > MAX_HEADERS:
        raise SpdyError(f"{count} headers (at most {MAX_HEADERS})")
    headers = {}
    for _ in range(count):
        name = take(struct.unpack("!I", take(4))[0]).decode("latin-1").lower()
        value = take(struct.unpack("!I", take(4))[0]).decode("latin-1")
        headers.setdefault(name, []).extend(value.split("\0"))
    return headers


def read_frame(recv_exact, max_payload=MAX_FRAME):
    """('control', type, flags, payload) or ('data', stream id, flags, payload)."""
    word, rest = struct.unpack("!II", recv_exact(8))
    flags, length = rest >> 24, rest & 0xFFFFFF
    if length > max_payload:
        raise SpdyError(f"frame of {length} bytes (at most {max_payload})")
    payload = recv_exact(length) if length else b""
    if word & 0x80000000:
        if (word >> 16) & 0x7FFF != VERSION:
            raise SpdyError(f"SPDY version {(word >> 16) & 0x7FFF} (only 3)")
        return "control", word & 0xFFFF, flags, payload
    return "data", word & 0x7FFFFFFF, flags, payload


def control_frame(kind, flags, payload):
    return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id, data, fin=False):
    return struct.pack("!II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


class Stream:
    """A stream the client opened: its headers, what it sent (read until b''), and our
    half (write, close = FIN, reset = RST_STREAM)."""

    def __init__(self, conn, stream_id, headers):
        self.conn, self.id, self.headers = conn, stream_id, headers
        self.inbox = Pipe()
        self._closed = False
        self.peer_reset = False

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def read(self, timeout=None):
        return self.inbox.read(timeout)

    def write(self, data):
        view = memoryview(data)
        for i in range(0, len(view), CHUNK):
            self.conn.send(data_frame(self.id, bytes(view[i:i + CHUNK])))

    def close(self):
        if not self._closed:
            self._closed = True
            self.conn.send(data_frame(self.id, b"", fin=True))

    def reset(self, status=CANCEL):
        self.inbox.finish()
        if not self._closed:
            self._closed = True
            self.conn.send(control_frame(RST_STREAM, 0, struct.pack("!II", self.id, status)))


class Connection:
    """A server's SPDY connection over any byte transport: `send_bytes(data)` (thread-safe
    here) and `recv_exact(n)`. serve() reads frames in the calling thread until the peer
    goes; `on_stream(stream)` decides each new stream (True: SYN_REPLY, False: refused)."""

    def __init__(self, send_bytes, recv_exact, on_stream, max_streams=8):
        self._send_bytes, self._recv_exact = send_bytes, recv_exact
        self.on_stream, self.max_streams = on_stream, max_streams
        self.codec = HeaderCodec()
        self.streams = {}
        self._last_id = 0
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, data):
        with self._lock:
            if self.closed.is_set():
                raise ConnectionError("SPDY connection closed")
            self._send_bytes(data)

    def serve(self):
        try:
            while True:
                kind, ident, flags, payload = read_frame(self._recv_exact)
                if kind == "data":
                    self._on_data(ident, flags, payload)
                elif not self._on_control(ident, flags, payload):
                    return
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream.inbox.finish()

    def _on_data(self, stream_id, flags, payload):
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # a stream we reset or never had: spdystream's peers drop these too
        if payload:
            stream.inbox.feed(payload)
        if flags & FLAG_FIN:
            stream.inbox.finish()

    def _on_control(self, kind, flags, payload):
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise SpdyError("SYN_STREAM shorter than 10 bytes")
            stream_id = struct.unpack("!I", payload[:4])[0] & 0x7FFFFFFF
            headers = self.codec.decode(payload[10:])  # always: the zlib stream must advance
            if stream_id % 2 == 0 or stream_id <= self._last_id:
                raise SpdyError(f"SYN_STREAM with stream id {stream_id}")
            self._last_id = stream_id
            stream = Stream(self, stream_id, headers)
            if len(self.streams) >= self.max_streams or not self.on_stream(stream):
                stream.reset(REFUSED_STREAM)
                return True
            self.streams[stream_id] = stream
            if flags & FLAG_FIN:
                stream.inbox.finish()
            self.send(control_frame(SYN_REPLY, 0, struct.pack("!I", stream_id) +
                                    self.codec.encode({})))
        elif kind in (HEADERS, SYN_REPLY):
            if len(payload) < 4:
                raise SpdyError("HEADERS shorter than 4 bytes")
            self.codec.decode(payload[4:])
        elif kind == RST_STREAM:
            if len(payload) != 8:
                raise SpdyError("RST_STREAM is not 8 bytes")
            stream = self.streams.pop(struct.unpack("!I", payload[:4])[0] & 0x7FFFFFFF, None)
            if stream is not None:
                stream._closed = stream.peer_reset = True
                stream.inbox.finish()
        elif kind == PING:
            if len(payload) != 4:
                raise SpdyError("PING is not 4 bytes")
            self.send(control_frame(PING, 0, payload))
        elif kind == GOAWAY:
            return False
        return True  # SETTINGS, WINDOW_UPDATE, and types SPDY/3 does not name: ignored

    def forget(self, stream):
        self.streams.pop(stream.id, None)

    def goaway(self):
        """GOAWAY (best effort), then no more sends."""
        try:
            self.send(control_frame(GOAWAY, 0, struct.pack("!II", self._last_id, 0)))
        except OSError:
            pass
        self.closed.set()
