"""Container logs in the CRI format the kubelet writes: `<RFC3339Nano> <stream> <P|F> <text>`.

Writing is the monitor's (it holds the read ends of every container's stdout and stderr);
reading is the CLI's. Kept free of anything the monitor does not need.
"""
import os
import time

MAX_LINE = 16 * 1024   # a longer line is split into P(artial) records, as containerd does


def timestamp(ns=None):
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class StreamWriter:
    """Turns the bytes of one stream into CRI records appended to the container's log file."""

    def __init__(self, log_fd, stream):
        self.log_fd = log_fd
        self.stream = stream.encode()
        self.pending = b""

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

    def _write(self, records):
        if not records:
            return
        stamp = timestamp().encode()
        os.write(self.log_fd, b"".join(b"%s %s %s %s\n" % (stamp, self.stream, tag, text)
                                       for text, tag in records))


def parse_line(line):
    """(timestamp, stream, tag, text) of one CRI record, or None for a malformed line."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else ""
    return parts[0], parts[1], parts[2], text


def read_records(path):
    """Whole log entries (P records joined with their F), as (timestamp, stream, text)."""
    entries = []
    partial = {}
    try:
        f = open(path, errors="replace")
    except FileNotFoundError:
        return entries
    with f:
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
    return entries
