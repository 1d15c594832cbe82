"""WebSocket (RFC 6455), server side, on the standard library: the opening handshake's accept
key, frames (masking, 7/16/64-bit lengths, fragmentation, ping/pong, close) and a connection
that reads whole messages from a blocking socket. Every length a client sends is capped
before anything is allocated for it.
"""
import base64
import hashlib
import struct
import threading

from nsPod.cri.streaming.buffers import Closed

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL = {CLOSE, PING, PONG}
DATA = {CONTINUATION, TEXT, BINARY}
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED, TOO_BIG = 1000, 1001, 1002, 1003, 1009
MAX_MESSAGE = 1 << 20   # a message (all its fragments) a client may send
MAX_FRAGMENTS = 1024    # so a stream of empty continuation frames cannot spin forever


class ProtocolError(Exception):
    """The peer broke RFC 6455; `code` is the close code to send before dropping it."""

    def __init__(self, message, code=PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key; ProtocolError unless the key is 16
    bytes in base64, as RFC 6455 4.2.1 requires."""
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ProtocolError("Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise ProtocolError("Sec-WebSocket-Key is not 16 bytes")
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode()


def apply_mask(mask, payload):
    """XOR with the 4-byte mask, repeated (masking and unmasking are the same)."""
    if not payload:
        return b""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def encode_frame(opcode, payload, fin=True, mask=None):
    """One frame; `mask` (4 bytes) is for a client's frames (tests), servers send none."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is not None:
        return header + mask + apply_mask(mask, payload)
    return header + payload


def read_frame(recv_exact, max_payload=MAX_MESSAGE, masked=True):
    """(fin, opcode, payload) of the next frame, unmasked. `recv_exact(n)` returns exactly n
    bytes or raises Closed. A client's frames must be masked (RFC 6455 5.1)."""
    first, second = recv_exact(2)
    fin, rsv, opcode = first & 0x80, first & 0x70, first & 0x0F
    if rsv:
        raise ProtocolError("reserved bits set (no extension was negotiated)")
    if opcode not in CONTROL | DATA:
        raise ProtocolError(f"unknown opcode {opcode:#x}")
    if bool(second & 0x80) != masked:
        raise ProtocolError("client frame not masked" if masked else "masked server frame")
    n = second & 0x7F
    if opcode in CONTROL and (n > 125 or not fin):
        raise ProtocolError("control frame fragmented or longer than 125 bytes")
    if n == 126:
        n, = struct.unpack("!H", recv_exact(2))
    elif n == 127:
        n, = struct.unpack("!Q", recv_exact(8))
        if n >> 63:
            raise ProtocolError("64-bit length with the top bit set")
    if n > max_payload:
        raise ProtocolError(f"frame of {n} bytes is over {max_payload}", TOO_BIG)
    mask = recv_exact(4) if masked else None
    payload = recv_exact(n) if n else b""
    return bool(fin), opcode, apply_mask(mask, payload) if masked else payload


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()[:120]


def parse_close(payload):
    """The close code of a close frame's payload (1005: none given); ProtocolError if bad."""
    if not payload:
        return 1005
    if len(payload) == 1:
        raise ProtocolError("close frame of 1 byte")
    code, = struct.unpack("!H", payload[:2])
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code > 4999:
        raise ProtocolError(f"close code {code} is not one a peer may send")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not UTF-8") from None
    return code


class Connection:
    """A server's WebSocket over a connected socket whose handshake is done. One thread reads
    (recv_message: Closed when the peer goes); any thread may send (one lock). The socket's
    timeout bounds each send, so a client that stops reading loses its own session and
    holds up nobody else's."""

    def __init__(self, sock, reader, max_message=MAX_MESSAGE):
        self.sock, self.reader = sock, reader   # reader: a buffers.SocketReader
        self.max_message = max_message
        self._send_lock = threading.Lock()
        self.close_sent = False

    def recv_message(self):
        """(opcode, payload) of the next data message, fragments joined; pings answered.
        Raises Closed when the peer closes (after answering its close), ProtocolError."""
        parts, opcode, size = [], None, 0
        for _ in range(MAX_FRAGMENTS + 64):
            fin, op, payload = read_frame(self.reader.recv_exact, self.max_message - size)
            if op == PING:
                self.send(PONG, payload)
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                code = parse_close(payload)
                self.close(NORMAL if code == 1005 else code)
                raise Closed(f"close frame {code}")
            if (op == CONTINUATION) != (opcode is not None):
                raise ProtocolError("continuation frame without a message" if opcode is None
                                    else "new message inside a fragmented one")
            if opcode is None:
                opcode = op
            parts.append(payload)
            size += len(payload)
            if fin:
                message = b"".join(parts)
                if opcode == TEXT:
                    try:
                        message.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError("text message is not UTF-8", 1007) from None
                return opcode, message
            if len(parts) > MAX_FRAGMENTS:
                raise ProtocolError(f"message of more than {MAX_FRAGMENTS} fragments", TOO_BIG)
        raise ProtocolError("too many control frames inside one message")

    def send(self, opcode, payload):
        with self._send_lock:
            if self.close_sent:
                return
            self.sock.sendall(encode_frame(opcode, payload))

    def close(self, code=NORMAL, reason=""):
        """Send a close frame once (best effort: the peer may be gone)."""
        with self._send_lock:
            if self.close_sent:
                return
            self.close_sent = True
            try:
                self.sock.sendall(encode_frame(CLOSE, close_payload(code, reason)))
            except OSError:
                pass
