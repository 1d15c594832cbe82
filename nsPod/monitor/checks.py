"""Probes and lifecycle hooks, each run as a short-lived child of the monitor.

A child per check keeps the monitor's loop free of blocking connects, HTTP parsing and
timeouts: the child's exit status is the result (0 success), the monitor kills it when
timeoutSeconds pass, and SIGCHLD tells the monitor it is done, like any other child.
exec handlers join the container's namespaces and cgroup, as `nspod exec` does; httpGet
and tcpSocket join only the pod's network namespace and connect to the pod's IP (or
127.0.0.1 on a pod without one), as the kubelet connects to the pod's IP.
"""
import os
import signal
import socket

from nsPod.kernel import namespaces


def spawn(handler, pause_pid, pod_ip, target, plan, attach):
    """Start a check; returns its pid. An exec check runs as the container's processes do
    (container.spawn_joined); `attach(pid)` puts it in the container's cgroup first."""
    if handler["kind"] == "exec":
        from nsPod.kernel import container
        return container.spawn_joined(target, plan, handler["command"], attach, quiet=True)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _quiet()
            namespaces.join(pause_pid, ["net"])
            host = handler.get("host") or pod_ip or "127.0.0.1"
            if handler["kind"] == "tcpSocket":
                socket.create_connection((host, handler["port"]), timeout=30).close()
                code = 0
            else:
                code = 0 if _http_ok(handler, host) else 1
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _quiet():
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _http_ok(handler, host):
    """A GET whose status is 200-399 succeeds, as the kubelet's prober decides."""
    import http.client
    kind = http.client.HTTPSConnection if handler.get("scheme") == "HTTPS" else http.client.HTTPConnection
    kwargs = {}
    if kind is http.client.HTTPSConnection:
        import ssl
        kwargs["context"] = ssl._create_unverified_context()  # the kubelet skips verification too
    conn = kind(host, handler["port"], timeout=30, **kwargs)
    headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*"}
    headers.update(dict(handler.get("headers") or ()))
    conn.request("GET", handler.get("path") or "/", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return 200 <= status < 400
