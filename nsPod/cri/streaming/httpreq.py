"""The one HTTP/1.1 request a streaming connection starts with (an upgrade to WebSocket or
SPDY), read with a size cap from a socket whose timeout bounds the whole handshake, and the
few responses the server sends. Nothing is logged from a request: it is the client's text.
"""
import time
import urllib.parse

MAX_HEAD = 16 << 10
MAX_HEADERS = 64


class BadRequest(Exception):
    """A request that is not HTTP we serve; `status` is the response to send (0: none)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Request:
    def __init__(self, method, path, query, headers):
        self.method, self.path, self.query, self.headers = method, path, query, headers

    def header(self, name):
        """The first value of a header (names are case-insensitive), or ''."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def tokens(self, name):
        """A comma-separated header's items, lowercased, over all its lines."""
        return [t.strip().lower() for v in self.headers.get(name.lower(), ())
                for t in v.split(",") if t.strip()]

    def listed(self, name):
        """A comma-separated header's items as sent (protocol names keep their case)."""
        return [t.strip() for v in self.headers.get(name.lower(), ())
                for t in v.split(",") if t.strip()]


def read_request(sock, deadline):
    """(Request, bytes read past the head). The socket's timeout is lowered to what is left
    until `deadline` (time.monotonic()) before every recv."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BadRequest("handshake timed out", status=0)
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise BadRequest("handshake timed out", status=0) from None
        if not chunk:
            raise BadRequest("closed before a request", status=0)
        data += chunk
        if len(data) > MAX_HEAD and b"\r\n\r\n" not in data[:MAX_HEAD + 4]:
            raise BadRequest("request head too large", status=431)
    head, rest = bytes(data).split(b"\r\n\r\n", 1)
    return parse_head(head), rest


def parse_head(head):
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes anything; kept for clarity of intent
        raise BadRequest("request head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("not an HTTP/1.x request line")
    method, target, _ = parts
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest("too many header lines", status=431)
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise BadRequest("malformed header line")
        headers.setdefault(name.lower(), []).append(value.strip())
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    return Request(method, url.path, query, headers)


REASONS = {101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


def response(status, headers=(), body=b""):
    """The bytes of a response; a non-101 one has a body length and closes."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if status != 101:
        lines += ["Content-Type: text/plain; charset=utf-8",
                  f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if status != 101 else b"")
