"""Container logs in the CRI format the kubelet writes: `<RFC3339Nano> <stream> <P|F> <text>`.

Writing is the monitor's (it holds the read ends of every container's stdout and stderr);
reading is the CLI's. Kept free of anything the monitor does not need.
"""
import os
import time

MAX_LINE = 16 * 1024   # a longer line is split into P(artial) records, as containerd does
# The kubelet's containerLogMaxSize and containerLogMaxFiles; NSPOD_LOG_MAX_SIZE (bytes) and
# NSPOD_LOG_MAX_FILES change them.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5


def limits_from_env(environ=os.environ):
    try:
        size = int(environ.get("NSPOD_LOG_MAX_SIZE") or DEFAULT_MAX_SIZE)
        files = int(environ.get("NSPOD_LOG_MAX_FILES") or DEFAULT_MAX_FILES)
    except ValueError:
        return DEFAULT_MAX_SIZE, DEFAULT_MAX_FILES
    return max(size, 1024), max(files, 1)


class LogFile:
    """One run's log, `<n>.log`, rotated by size: `<n>.log.1` is the newest older part, and at
    most max_files files exist (the oldest part is dropped), as the kubelet rotates."""

    def __init__(self, path, max_size=DEFAULT_MAX_SIZE, max_files=DEFAULT_MAX_FILES):
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.users = 0   # streams still writing here; the last one to end closes it

    def write(self, lines):
        """Append whole CRI lines, rotating between lines so no part outgrows max_size."""
        batch, batch_size = [], 0
        for line in lines:
            if self.size + batch_size + len(line) > self.max_size and (self.size or batch):
                self._flush(batch)
                batch, batch_size = [], 0
                self.rotate()
            batch.append(line)
            batch_size += len(line)
        self._flush(batch)

    def _flush(self, batch):
        if batch:
            data = b"".join(batch)
            os.write(self.fd, data)
            self.size += len(data)

    def rotate(self):
        os.close(self.fd)
        parts = self.max_files - 1
        if parts < 1:
            os.unlink(self.path)
        else:
            for i in range(parts, 0, -1):
                older = f"{self.path}.{i}"
                if os.path.exists(older):
                    if i == parts:
                        os.unlink(older)
                    else:
                        os.replace(older, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = 0

    def release(self):
        self.users -= 1
        if self.users <= 0 and self.fd is not None:
            os.close(self.fd)
            self.fd = None


def parts(path):
    """A run's log files, oldest first: the rotated parts, then the current file."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return list(reversed(rotated)) + [path]


def timestamp(ns=None):
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class StreamWriter:
    """Turns the bytes of one stream into CRI records appended to the run's LogFile."""

    def __init__(self, log_file, stream):
        self.log_file = log_file
        self.stream = stream.encode()
        self.pending = b""
        log_file.users += 1

    def feed(self, data):
        self.pending += data
        records = []
        while True:
            newline = self.pending.find(b"\n")
            if newline == -1 or newline > MAX_LINE:
                break
            records.append((self.pending[:newline], b"F"))
            self.pending = self.pending[newline + 1:]
        while len(self.pending) > MAX_LINE:
            records.append((self.pending[:MAX_LINE], b"P"))
            self.pending = self.pending[MAX_LINE:]
        self._write(records)

    def close(self):
        """At end of stream, an unterminated last line is still a whole record."""
        if self.pending:
            self._write([(self.pending, b"F")])
            self.pending = b""
        self.log_file.release()

    def _write(self, records):
        if not records:
            return
        stamp = timestamp().encode()
        self.log_file.write([b"%s %s %s %s\n" % (stamp, self.stream, tag, text)
                             for text, tag in records])


def parse_line(line):
    """(timestamp, stream, tag, text) of one CRI record, or None for a malformed line."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else ""
    return parts[0], parts[1], parts[2], text


def read_records(path):
    """Whole log entries of a run (all its rotated parts, P records joined with their F),
    as (timestamp, stream, text)."""
    entries = []
    partial = {}
    for part in parts(path):
        try:
            f = open(part, errors="replace")
        except FileNotFoundError:
            continue
        with f:
            _read_into(f, entries, partial)
    return entries


def tail_text(path, max_bytes=4096):
    """The last bytes of a run's log as plain text (for FallbackToLogsOnError)."""
    return "\n".join(text for _, _, text in read_records(path))[-max_bytes:]


def _read_into(f, entries, partial):
    for line in f:
        rec = parse_line(line)
        if rec is None:
            continue
        stamp, stream, tag, text = rec
        if tag == "P":
            partial.setdefault(stream, [stamp, ""])[1] += text
            continue
        first = partial.pop(stream, None)
        if first:
            entries.append((first[0], stream, first[1] + text))
        else:
            entries.append((stamp, stream, text))
