"""The bytes between a thin `nspod` client and podd, with their bounds (pure: unit-tested).

A request is one frame: b"NSPD", a 4-byte big-endian length, then the body, fields separated
by NUL (no field can hold one: argv and environment strings never do):

    v1 \\0 run \\0 <umask, octal> \\0 <argc> \\0 argv... \\0 <envc> \\0 K=V...

sent with four file descriptors (SCM_RIGHTS, with its first byte): the caller's 0, 1, 2 and
its working directory. `v1 \\0 monitor`, from a command's process, has the same fields
(argv: the pod's directory and "1" or "0" for --trace) and three descriptors: the ready pipe,
monitor.lock and the monitor's stderr. `v1 \\0 ping` and `v1 \\0 exit` carry none. Replies
are lines: b"P<pid>\\n" (the command's or monitor's process runs: from here on it is its own),
then b"X<exit code>\\n" when it ends (for a monitor: if it ends before the requester hangs
up, which it does once the monitor said ready); b"E<one line>\\n" when podd refuses it.
The other way, while the command runs, each byte the client sends is a signal number to
deliver to the command (SIGINT, SIGTERM, SIGHUP, SIGWINCH); EOF means the client died.
"""
import struct

MAGIC = b"NSPD"
HEADER = struct.Struct("!4sI")
VERSION = "v1"
MAX_BODY = 256 * 1024          # argv and environment together; Linux's own ARG_MAX is 2 MiB
MAX_FIELDS = 8192
MAX_FIELD = 128 * 1024         # MAX_ARG_STRLEN
RUN_FDS = 4                    # stdin, stdout, stderr, cwd
FDS = {"run": RUN_FDS, "monitor": 3, "ping": 0, "exit": 0}
MAX_REPLY = 4096
FORWARDED_SIGNALS = (1, 2, 15, 28)   # SIGHUP, SIGINT, SIGTERM, SIGWINCH
OPS = tuple(FDS)


class ProtocolError(Exception):
    """A request or reply that breaks the format or its bounds: the connection is dropped."""


class Request:
    def __init__(self, op, argv=(), env=None, umask=0o022):
        self.op = op
        self.argv = list(argv)
        self.env = dict(env or {})
        self.umask = umask


def encode_request(request):
    fields = [VERSION, request.op]
    if request.op in ("run", "monitor"):
        fields += [format(request.umask, "o"), str(len(request.argv)), *request.argv,
                   str(len(request.env)), *(f"{k}={v}" for k, v in request.env.items())]
    body = b"\0".join(_encode(f) for f in fields)
    if len(body) > MAX_BODY:
        raise ProtocolError(f"request of {len(body)} bytes: more than {MAX_BODY}")
    return HEADER.pack(MAGIC, len(body)) + body


def _encode(field):
    data = field.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ProtocolError("a field holds a NUL byte")
    return data


def decode_body(body):
    """The Request a frame's body holds; ProtocolError for anything else."""
    if len(body) > MAX_BODY:
        raise ProtocolError("request too long")
    fields = body.split(b"\0")
    if len(fields) > MAX_FIELDS:
        raise ProtocolError(f"more than {MAX_FIELDS} fields")
    fields = [f.decode("utf-8", "surrogateescape") for f in fields]
    if len(fields) < 2 or fields[0] != VERSION:
        raise ProtocolError("not a v1 request")
    op = fields[1]
    if op not in OPS:
        raise ProtocolError(f"unknown op {op[:40]!r}")
    if op not in ("run", "monitor"):
        if len(fields) != 2:
            raise ProtocolError(f"{op} takes no fields")
        return Request(op)
    rest = fields[2:]
    umask = _number(rest, "umask", 8, 0o777)
    argv = _counted(rest, "argv")
    env = {}
    for item in _counted(rest, "environment"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ProtocolError("an environment entry is not NAME=VALUE")
        env[key] = value
    if rest:
        raise ProtocolError("fields after the environment")
    if op == "monitor" and (len(argv) != 2 or not argv[0].startswith("/")
                            or argv[1] not in ("0", "1")):
        raise ProtocolError("monitor takes an absolute pod directory and 0 or 1")
    return Request(op, argv, env, umask)


def _number(rest, what, base, most):
    if not rest:
        raise ProtocolError(f"no {what}")
    text = rest.pop(0)
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ProtocolError(f"{what} is not a number")
    try:
        value = int(text, base)
    except ValueError:
        raise ProtocolError(f"{what} is not a number") from None
    if value > most:
        raise ProtocolError(f"{what} {text} out of range")
    return value


def _counted(rest, what):
    count = _number(rest, f"{what} count", 10, MAX_FIELDS)
    if count > len(rest):
        raise ProtocolError(f"{what} count {count}, but {len(rest)} fields left")
    items = rest[:count]
    del rest[:count]
    if any(len(i) > MAX_FIELD for i in items):
        raise ProtocolError(f"an {what} string longer than {MAX_FIELD}")
    return items


class FrameReader:
    """Collects one frame from non-blocking reads; the fds that came with it, at most
    `max_fds` (more, or a truncated control message, is an error: they are closed)."""

    def __init__(self, max_fds=RUN_FDS):
        self.data = b""
        self.fds = []
        self.max_fds = max_fds

    def needed(self):
        """Bytes still to read before the frame is whole (at least the header)."""
        if len(self.data) < HEADER.size:
            return HEADER.size - len(self.data)
        magic, length = HEADER.unpack_from(self.data)
        if magic != MAGIC:
            raise ProtocolError("not an nspod request")
        if length > MAX_BODY:
            raise ProtocolError(f"request of {length} bytes: more than {MAX_BODY}")
        return HEADER.size + length - len(self.data)

    def feed(self, data, fds=()):
        """Add what one read gave; returns the body once the frame is whole, else None."""
        self.fds.extend(fds)
        if len(self.fds) > self.max_fds:
            raise ProtocolError(f"more than {self.max_fds} file descriptors")
        header_part = min(len(data), max(0, HEADER.size - len(self.data)))
        self.data += data[:header_part]
        rest = data[header_part:]
        if rest and len(rest) > self.needed():   # the header is whole when rest is not empty
            raise ProtocolError("bytes after the request")
        self.data += rest
        if len(self.data) >= HEADER.size and self.needed() == 0:
            return self.data[HEADER.size:]
        return None


def encode_reply(kind, value):
    if kind not in "PXE":
        raise ProtocolError(f"no reply kind {kind!r}")
    text = " ".join(str(value).split())   # one line, whatever an error message held
    return f"{kind}{text}"[:MAX_REPLY - 1].encode("utf-8", "replace") + b"\n"


def decode_reply(line):
    """(kind, value) of one reply line: ("P", pid), ("X", code), ("E", message)."""
    if not line.endswith(b"\n") or len(line) > MAX_REPLY:
        raise ProtocolError("a reply line is cut or too long")
    kind, text = line[:1].decode("ascii", "replace"), line[1:-1].decode("utf-8", "replace")
    if kind in "PX" and kind:
        if not text.lstrip("-").isdigit() or len(text) > 12:
            raise ProtocolError(f"reply {kind}: not a number")
        return kind, int(text)
    if kind == "E":
        return kind, text
    raise ProtocolError("unknown reply")
