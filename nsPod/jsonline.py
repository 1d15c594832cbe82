"""One JSON object per line over a unix stream socket: the control protocol of the monitor
and of netd, and their clients'."""
import json

MAX_LINE = 1 << 20


def read_line(sock, limit=MAX_LINE):
    """Bytes up to and including the first newline (or what came before EOF)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise OSError("message too long")
    return data


class LineReader:
    """Line after line from one socket (a reply preceded by --trace records): what came
    after a line's newline is kept for the next."""

    def __init__(self, sock, limit=MAX_LINE):
        self.sock, self.limit, self.data = sock, limit, b""

    def line(self):
        """The next line with its newline, or what came before EOF (b"" at the end)."""
        while b"\n" not in self.data:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.data = self.data, b""
                return line
            self.data += chunk
            if len(self.data) > self.limit:
                raise OSError("message too long")
        line, self.data = self.data.split(b"\n", 1)
        return line + b"\n"


def send(sock, obj):
    sock.sendall(json.dumps(obj).encode() + b"\n")
