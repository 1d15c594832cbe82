"""The CLI's side of a monitor's control socket (<pod dir>/control.sock): one JSON line
asked, one answered. The monitor's side is in monitor/.
"""
import json
import socket

from nsPod import jsonline
from nsPod.store import state
from nsPod.errors import NspodError, StateError, describe


def request(pod_dir, request, timeout=30.0):
    """One request to the pod's monitor over its control socket; its reply, or StateError
    (no monitor, no answer) / NspodError (the monitor's refusal, its one line).

    Under --trace the monitor first sends the steps it takes for the request, one
    {"trace": record} line each: narrated here as they arrive, as this process's own are."""
    from nsPod.kernel import tracing
    if not pod_dir.monitor_alive():
        raise StateError(f"pod {pod_dir.name} is not running")
    traced = tracing.enabled()
    if traced:
        request = dict(request, trace=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        # Through /proc/self/fd: <root>/pods/<253-character name>/control.sock is longer
        # than the 108 bytes of sun_path.
        with pod_dir.socket_address(state.CONTROL_SOCKET, existing=True) as address:
            sock.connect(address)
        jsonline.send(sock, request)
        reader = jsonline.LineReader(sock)
        while True:
            data = reader.line()
            reply = _decode(pod_dir, data)
            if not (traced and isinstance(reply, dict) and list(reply) == ["trace"]):
                break
            record = tracing.record_from_wire(reply["trace"])
            if record is not None:
                tracing.emit(record)
    except OSError as e:
        raise StateError(f"pod {pod_dir.name}: no answer from its monitor: {describe(e)}") from e
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise StateError(f"pod {pod_dir.name}: its monitor answered {reply!r}")
    if "error" in reply:
        raise NspodError(f"pod {pod_dir.name}: {reply['error']}")
    return reply


def _decode(pod_dir, data):
    if not data:
        raise StateError(f"pod {pod_dir.name}: its monitor closed the connection")
    try:
        return json.loads(data)
    except ValueError as e:
        raise StateError(f"pod {pod_dir.name}: its monitor's answer is not JSON: {e}") from e
