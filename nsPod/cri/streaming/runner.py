"""The short-lived process behind each streaming session, started by path
(`python -P -m nsPod.cri.streaming.runner SPEC`): a fresh single-threaded process may
setns, become a subreaper and install signal handlers, which the server's threads must not.

SPEC (JSON) names the mode, the state root, the pod and the rest; the result goes to the
file descriptor `status_fd` as one JSON object, never to stdout/stderr (they are the
client's): {"exit": N[, "message": M]} or {"error": M}. Modes (attach needs no runner:
attach.py):
  exec    the command in the container (nsPod.api.enter.exec_in), on this process's stdio
          (a pipe each, or a terminal: then it is made this session's controlling one).
  dial    a TCP socket made in the pod's network namespace and connected to 127.0.0.1:port,
          sent back over the unix socket `status_fd` (SCM_RIGHTS).
"""
import json
import os
import signal
import socket
import sys


def main(argv):
    spec = json.loads(argv[1])
    status_fd = spec["status_fd"]
    os.set_inheritable(status_fd, False)   # ours: a command left running must not hold it
    try:
        result = MODES[spec["mode"]](spec)
    except Exception as e:  # the client gets one line; nothing reaches the client's stderr
        from nsPod.errors import NspodError
        result = {"error": str(e) if isinstance(e, NspodError) else
                  f"{type(e).__name__}: {e}"}
    if result is not None:
        _report(status_fd, result)


def _report(fd, result, fds=()):
    data = json.dumps(result).encode()
    if fds:
        socket.send_fds(socket.socket(fileno=fd), [data], list(fds))
    else:
        os.write(fd, data)


def _config(spec):
    from nsPod.api.session import open_config
    return open_config({"root": spec["root"]})


def _exec(spec):
    from nsPod.api import enter
    config = _config(spec)
    if spec["tty"]:
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # started in a new session: the pty is ours
    # The server's word to end the session (its client went): the command, not just us.
    signal.signal(signal.SIGUSR1, lambda *_: _kill_children())
    try:
        return {"exit": enter.exec_in(config, spec["pod"], spec["container"],
                                      list(spec["cmd"]), spec["stdin"] or spec["tty"])}
    except enter.ExecFailed as e:
        return {"exit": int(e.exit_code), "message": str(e)}


def _kill_children():
    """SIGKILL each child (the exec'd command was reparented to us, a subreaper)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _dial(spec):
    from nsPod.api import query
    from nsPod.api.pods import _is_pause
    from nsPod.kernel import namespaces
    config = _config(spec)
    query._enter(config, [spec["pod"]])
    _, _, pod_state = query.load(config, spec["pod"])
    pause = pod_state.pause.ref() if pod_state.pause else None
    # The pod's own pause (its start time and binary checked), or no namespace is joined.
    if pause is None or not pause.alive() or not _is_pause(pause.pid):
        return {"error": f"pod {spec['pod']} is not running"}
    namespaces.join(pause.pid, ["net"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", spec["port"]))
    except OSError as e:
        return {"error": f"connect 127.0.0.1:{spec['port']} in pod {spec['pod']}: "
                         f"{e.strerror or e}"}
    sock.settimeout(None)
    _report(spec["status_fd"], {"ok": True}, [sock.fileno()])
    return None


MODES = {"exec": _exec, "dial": _dial}

if __name__ == "__main__":
    main(sys.argv)
    os._exit(0)
