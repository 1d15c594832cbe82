"""Rules for probes and lifecycle hooks: one handler each (exec, httpGet, tcpSocket, sleep)."""
from nsPod.manifest.model import Handler, Probe
from nsPod.manifest.schema import (
    EXEC, HEADER, HTTP_GET, INT32_MAX, LIFECYCLE, LIFECYCLE_HANDLER, PROBE, SLEEP, TCP_SOCKET)
from nsPod.manifest.syntax import HTTP_TOKEN, port_name_problem, q


def validate_probe(value, path, kind, port_names, ctx):
    note = ctx.report
    if value is None:
        return None
    p = note.fields(value, path, PROBE, "handler")
    if p is None:
        return None
    handler = validate_handler(p, path, ("exec", "httpGet", "tcpSocket"), port_names, ctx)
    numbers = {key: note.integer(p.get(key), f"{path}.{key}", 0, INT32_MAX)
               for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                           "successThreshold", "failureThreshold")}
    if kind != "readinessProbe" and numbers["successThreshold"] not in (None, 0, 1):
        note.error(f"{path}.successThreshold", f"must be 1 for a {kind}")
    grace = p.get("terminationGracePeriodSeconds")
    if grace is not None and kind == "readinessProbe":
        note.error(f"{path}.terminationGracePeriodSeconds",
                   "is not allowed in a readinessProbe")
    grace = note.integer(grace, f"{path}.terminationGracePeriodSeconds", minimum=1)
    if handler is None:
        return None
    # 0 is Kubernetes' "unset": the API server writes the defaults in its place.
    return Probe(handler,
                 initial_delay_seconds=numbers["initialDelaySeconds"] or 0,
                 timeout_seconds=numbers["timeoutSeconds"] or 1,
                 period_seconds=numbers["periodSeconds"] or 10,
                 success_threshold=numbers["successThreshold"] or 1,
                 failure_threshold=numbers["failureThreshold"] or 3,
                 termination_grace_period_seconds=grace)


def validate_lifecycle(value, path, port_names, ctx):
    note = ctx.report
    hooks = note.fields(value, path, LIFECYCLE) or {}
    found = []
    for key in ("postStart", "preStop"):
        handler = None
        if hooks.get(key) is not None:
            h = note.fields(hooks[key], f"{path}.{key}", LIFECYCLE_HANDLER, "handler")
            if h is not None:
                handler = validate_handler(h, f"{path}.{key}", ("exec", "httpGet", "sleep"),
                                       port_names, ctx)
        found.append(handler)
    return tuple(found)


def validate_handler(h, path, kinds, port_names, ctx):
    note = ctx.report
    given = [k for k in kinds if h.get(k) is not None]
    if len(given) != 1:
        if not given and any(h.get(k) is not None for k in h if k not in kinds):
            return None   # an unsupported handler (grpc): its own line said so, once
        got = f", got {', '.join(given)}" if given else ""
        note.error(path, f"exactly one handler is needed ({', '.join(kinds)}){got}")
        return None
    kind = given[0]
    where = f"{path}.{kind}"
    action = note.fields(h[kind], where, {"exec": EXEC, "sleep": SLEEP, "httpGet": HTTP_GET,
                                          "tcpSocket": TCP_SOCKET}[kind])
    if action is None:
        return None
    if kind == "exec":
        command = note.strings(action.get("command"), f"{where}.command")
        if command == ():
            note.error(f"{where}.command", "required")
        return Handler("exec", command=command) if command else None
    if kind == "sleep":
        seconds = note.integer(action.get("seconds"), f"{where}.seconds", 0, required=True)
        if seconds is not None and seconds > ctx.grace:
            note.error(f"{where}.seconds",
                       f"{seconds} must be at most terminationGracePeriodSeconds "
                       f"({ctx.grace})")
            return None
        return None if seconds is None else Handler("sleep", seconds=seconds)
    port = validate_handler_port(action.get("port"), f"{where}.port", port_names, ctx)
    host = note.string(action.get("host"), f"{where}.host") or ""
    if kind == "tcpSocket":
        return None if port is None else Handler("tcpSocket", port=port, host=host)
    url_path = note.string(action.get("path"), f"{where}.path") or ""
    scheme = note.choice(action.get("scheme"), f"{where}.scheme", ("HTTP", "HTTPS")) or "HTTP"
    headers = []
    for i, raw in enumerate(note.items(action.get("httpHeaders"), f"{where}.httpHeaders")):
        at = f"{where}.httpHeaders[{i}]"
        header = note.fields(raw, at, HEADER)
        if header is None:
            continue
        name = note.string(header.get("name"), f"{at}.name", required=True)
        if name is not None and not HTTP_TOKEN.fullmatch(name):
            note.error(f"{at}.name", f"{q(name)} is not a valid HTTP header name")
            name = None
        text = note.string(header.get("value"), f"{at}.value") or ""
        if name is not None:
            headers.append((name, text))
    if port is None:
        return None
    return Handler("httpGet", port=port, host=host, path=url_path, scheme=scheme,
                   headers=tuple(headers))


def validate_handler_port(value, path, port_names, ctx):
    note = ctx.report
    if isinstance(value, str):
        problem = port_name_problem(value)
        if problem:
            note.error(path, f"{q(value)}: {problem}")
            return None
        if value not in port_names:
            note.error(path, f"{q(value)} is not the name of one of this container's ports")
            return None
        return value
    return note.integer(value, path, 1, 65535, required=True)
