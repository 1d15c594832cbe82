"""--trace: every kernel-level step narrated as it is taken, as text or as JSON records.

A step is a record with stable keys (docs/interface.md, "--trace"):
    {"pid": host pid, "syscall": name of the call or step, "args": [str, ...],
     "result": int | null, "errno": "EPERM" | null, "duration_ms": float | null}
plus "text", its plain line, which travels between nspod's processes but is not printed
with --trace=json.

Where the records go is this process's choice (`_mode`):
  "text"   the plain line `nspod[PID]: TEXT` on stderr, before the step is taken (a step
           that hangs or kills the process is still narrated)
  "json"   one JSON object a line on stderr, once the step has ended (result, duration)
  "wire"   like json, with "text", to a pipe the monitor reads (see `redirect`): the monitor
           relays them to the caller of the command they were taken for
  capture  records kept in a list (`captured`): netd sends them back in its reply
A process forked while a mode is set inherits it (the container's setup in the child is
narrated like the monitor's own steps). Writes never block: a full pipe drops the step and
the next one that gets through is preceded by a "dropped" record.
"""
import contextlib
import errno as errno_codes
import json
import os
import time

PIPE_BUF = 4096              # a write this long or shorter is atomic on a pipe
ARG_MAX_CHARS = 512          # per argument, so a record fits in PIPE_BUF
TEXT_MAX_CHARS = 1536
KEYS = ("pid", "syscall", "args", "result", "errno", "duration_ms")


def _mode_from_env(environ=os.environ):
    value = environ.get("NSPOD_TRACE", "")
    if value == "json" or (value == "1" and environ.get("NSPOD_TRACE_FORMAT") == "json"):
        return "json"
    return "text" if value == "1" or value == "text" else ""


_mode = _mode_from_env()       # "", "text" (True means it too), "json" or "wire"
_fd = 2
_records = None                # a list while `captured`
_dropped = 0
_host_pid = None


def reload_from_environment():
    """The mode NSPOD_TRACE (and NSPOD_TRACE_FORMAT) say now: for a process that was forked
    from a long-lived one (whose import read the environment) and then given its own."""
    global _mode
    _mode = _mode_from_env()


def parse_mode(value):
    """--trace / NSPOD_TRACE values: "", "text" or "json"; None for anything else."""
    if value in (None, False, "", "0"):
        return ""
    if value in (True, "1", "text"):
        return "text"
    if value == "json":
        return "json"
    return None


def set_trace(mode):
    """Turn narration on ("text"/True, "json") or off for this process and the processes it
    starts (NSPOD_TRACE; NSPOD_TRACE_FORMAT keeps "json" across a starter that passes
    NSPOD_TRACE=1 on)."""
    global _mode
    _mode = parse_mode(mode) or ""
    os.environ["NSPOD_TRACE"] = "1" if _mode else "0"
    if _mode == "json":
        os.environ["NSPOD_TRACE_FORMAT"] = "json"
    else:
        os.environ.pop("NSPOD_TRACE_FORMAT", None)


def enabled():
    return bool(_mode) or _records is not None


def mode():
    """"text", "json" or "" (off): how this process narrates on its own stderr."""
    return "text" if _mode is True else _mode if _mode in ("text", "json") else ""


def host_pid():
    """This process's pid as the host sees it: a process in a pod's pid namespace has
    another pid of its own (os.getpid). /proc is still the host's during the setup."""
    global _host_pid
    if _host_pid is None:
        try:
            _host_pid = int(os.readlink("/proc/self"))
        except (OSError, ValueError):
            _host_pid = os.getpid()
    return _host_pid


def _forget_pid():
    global _host_pid
    _host_pid = None


os.register_at_fork(after_in_child=_forget_pid)


def text_of(syscall, args):
    return f"{syscall}({', '.join(args)})"


def make_record(syscall, args=(), result=None, err=None, duration_ms=None, text=None,
                pid=None):
    args = [_clip(str(a), ARG_MAX_CHARS) for a in args]
    return {"pid": host_pid() if pid is None else pid, "syscall": str(syscall), "args": args,
            "result": result, "errno": err,
            "duration_ms": None if duration_ms is None else round(duration_ms, 3),
            "text": _clip(text_of(syscall, args) if text is None else text, TEXT_MAX_CHARS)}


class Step:
    """One step being taken: `result` may be set inside the `traced` block (an fd, a pid)."""

    def __init__(self, syscall, args, text):
        self.syscall, self.args, self.text = syscall, [str(a) for a in args], text
        self.result = 0
        self.start = time.monotonic()


def begin(syscall, args=(), text=None):
    """A step about to be taken (plain: narrated now); None when nothing is narrated.
    `end` narrates its outcome."""
    if not enabled():
        return None
    step = Step(syscall, args, text)
    if mode() == "text" and _records is None:
        _write_text(host_pid(), text_of(syscall, step.args) if text is None else text)
    return step


def end(step, err=None):
    """The step's outcome: step.result, or `err` (an errno number or name) when it failed."""
    if step is None or (mode() == "text" and _records is None):
        return
    if isinstance(err, int):
        err = _errno_name(err)
    emit(make_record(step.syscall, step.args, None if err else step.result, err,
                     (time.monotonic() - step.start) * 1000, step.text))


@contextlib.contextmanager
def traced(syscall, args=(), text=None):
    """Narrate the call made inside the block: its name and arguments (plain: before it is
    made; `text` instead of name(args), "" for none), its result or errno and its duration
    (json)."""
    step = begin(syscall, args, text)
    if step is None:
        yield Step(syscall, (), text)
        return
    try:
        yield step
    except OSError as e:
        end(step, e.errno or "error")
        raise
    except BaseException:
        end(step, "error")
        raise
    end(step)


def note(syscall, args=(), text=None, result=None):
    """A step that is not one timed call (a summary such as "join namespaces", or a call
    narrated after it was made): duration_ms is null."""
    if enabled():
        emit(make_record(syscall, args, result, None, None, text))


def emit(record):
    """Narrate a record, made here or received from another nspod process (netd, the monitor),
    the way this process narrates."""
    if _records is not None:
        _records.append(record)
    elif mode() == "text":
        _write_text(record["pid"], record["text"])
    elif _mode == "json":
        _write(json_line(record))
    elif _mode == "wire":
        _write(wire_line(record))


def dropped_record(count):
    return make_record("dropped", [str(count)], text=f"... {count} steps dropped")


def json_line(record):
    """--trace=json: the record's stable keys, in order, one line."""
    return (json.dumps({k: record.get(k) for k in KEYS}) + "\n").encode()


def wire_line(record):
    """The record with its text, as one line that fits an atomic pipe write."""
    line = (json.dumps(record) + "\n").encode()
    if len(line) > PIPE_BUF:
        record = dict(record, args=[_clip(a, 64) for a in record["args"]],
                      text=_clip(record["text"], 1024))
        line = (json.dumps(record) + "\n").encode()
    return line


def text_line(pid, text):
    """The plain line: non-printable characters escaped (a path a container named may hold
    a terminal's escape sequences)."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return f"nspod[{pid}]: {shown}\n".encode()


def record_from_wire(obj):
    """A record sent by another process, its fields checked; None when it is not one."""
    if not isinstance(obj, dict):
        return None
    pid, args, result, err, duration = (obj.get("pid"), obj.get("args"), obj.get("result"),
                                        obj.get("errno"), obj.get("duration_ms"))
    if type(pid) is not int or not isinstance(obj.get("syscall"), str) \
            or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return None
    if result is not None and type(result) is not int:
        result = None
    if not isinstance(err, str):
        err = None
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        duration = None
    text = obj.get("text")
    return make_record(obj["syscall"], args, result, err, duration,
                       text if isinstance(text, str) else None, pid)


def legacy_record(text):
    """A plain line from an older netd (its reply's trace was a list of strings)."""
    return make_record(str(text), (), text=str(text))


def _write_text(pid, text):
    if text:   # "": a step narrated in json only (a part of one plain line)
        _write(text_line(pid, text))


def _write(data):
    """One non-blocking write; a step that does not fit is counted and reported later."""
    global _dropped
    try:
        if _dropped:
            os.write(_fd, wire_line(dropped_record(_dropped)) if _mode == "wire"
                     else json_line(dropped_record(_dropped)) if _mode == "json"
                     else text_line(host_pid(), f"... {_dropped} steps dropped"))
            _dropped = 0
        os.write(_fd, data)
    except BlockingIOError:
        _dropped += 1
    except OSError:
        pass


def take_dropped():
    """Steps this process could not write (the monitor reports its own on the relay)."""
    global _dropped
    count, _dropped = _dropped, 0
    return count


@contextlib.contextmanager
def redirect(fd):
    """Records (with their text) to `fd` instead of stderr while the block runs, whatever
    the mode was; children forked meanwhile inherit it (the monitor's relay)."""
    global _mode, _fd
    saved = _mode, _fd
    _mode, _fd = "wire", fd
    try:
        yield
    finally:
        _mode, _fd = saved


@contextlib.contextmanager
def using(state):
    """(mode, fd) as `start_redirect` returned them, for the block: the monitor writes its
    own narration to monitor.log while a relay takes the records."""
    global _mode, _fd
    saved = _mode, _fd
    _mode, _fd = state
    try:
        yield
    finally:
        _mode, _fd = saved


def start_redirect(fd):
    """`redirect` for a span the caller ends with `end_redirect` (the monitor's relay is
    on for as long as some command waits for narration, across its event loop's turns)."""
    global _mode, _fd
    saved = _mode, _fd
    _mode, _fd = "wire", fd
    return saved


def end_redirect(saved):
    global _mode, _fd
    _mode, _fd = saved


@contextlib.contextmanager
def captured():
    """The records of the steps taken in the block, in a list instead of on stderr (netd)."""
    global _records
    saved, _records = _records, []
    try:
        yield _records
    finally:
        _records = saved


def _clip(text, limit):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _errno_name(code):
    return errno_codes.errorcode.get(code, str(code)) if code else "error"
