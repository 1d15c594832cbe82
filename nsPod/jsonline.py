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


def send(sock, obj):
    sock.sendall(json.dumps(obj).encode() + b"\n")
