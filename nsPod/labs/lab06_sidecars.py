"""Lab 6: the seed's patterns: a native sidecar first, a proxy in front, an adapter."""
import json

from nsPod.labs.model import Lab

TEXT = """\
Three patterns of the seed, in one pod, built from what labs 3 and 4 showed: one
network namespace (localhost) and shared volumes.

  - Native sidecar: an init container with restartPolicy: Always. It starts before the
    app containers and keeps running beside them; with a startupProbe, the app starts
    only once the probe passed (here: a tcpSocket probe, a connect(2) to its port).
  - Proxy (ambassador): the sidecar listens on the pod IP, port 9090, and forwards to
    the app, which listens on 127.0.0.1:8080 only. From the host the app is reached
    through the proxy, and port 8080 refuses the connection (ECONNREFUSED): only the
    pod's own loopback reaches it.
  - Adapter: the app writes "level=info msg=..." lines into a shared emptyDir; the
    adapter rewrites them as JSON lines on its stdout, the format a collector wants.

What the kernel shows: the app, when it starts, reads /proc/net/tcp and /proc/net/tcp6
(the sockets of its network namespace; port 9090 is 2382 in hex, state 0A is LISTEN) and
finds the proxy already listening: it started first. The proxy and the app are two
processes in two mount and pid namespaces sharing one port space.

Why it matters: a sidecar that must be up first (a proxy, a secrets agent) no longer
races the app; the app stays unchanged while the pod's interface changes.

(`nspod explain POD` shows the sidecar among the init containers, still running.)
"""

OBSERVATIONS = {
    "sidecar-first": "the app found the proxy's socket listening in /proc/net/tcp at start",
    "sidecar-runs": "the native sidecar keeps running beside the app (it is not waited for)",
    "proxy": "from the host, POD_IP:9090 answers with the app's page, through the proxy",
    "app-private": "from the host, POD_IP:8080 is refused: the app listens on loopback only",
    "adapter": "the adapter printed the app's lines rewritten as JSON",
}

APP = ("if cat /proc/net/tcp /proc/net/tcp6 | grep -q ':2382 [0-9A-F]*:0000 0A'; then echo proxy-was-listening;"
       " else echo proxy-was-not-listening; fi;"
       " mkdir -p /tmp/www && echo hello-from-app > /tmp/www/index.html;"
       " (while :; do echo level=info msg=request-served >> /logs/app.log; sleep 0.5; done) &"
       " exec busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www")
ADAPTER = ("while [ ! -e /logs/app.log ]; do sleep 0.1; done;"
           " tail -n +1 -f /logs/app.log |"
           r""" sed -u 's/^level=\([a-z]*\) msg=\(.*\)$/{"level":"\1","msg":"\2"}/'""")


def manifest(pod):
    """The pod as JSON (which is YAML): no quoting of the shell scripts to get wrong."""
    logs = {"name": "logs", "mountPath": "/logs"}
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "volumes": [{"name": "logs", "emptyDir": {}}],
            "initContainers": [{
                "name": "proxy", "restartPolicy": "Always",
                "command": ["busybox", "nc", "-ll", "-p", "9090", "-e",
                            "busybox", "nc", "127.0.0.1", "8080"],
                "startupProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 1}}],
            "containers": [
                {"name": "app", "command": ["sh", "-c", APP], "volumeMounts": [logs]},
                {"name": "adapter", "command": ["sh", "-c", ADAPTER],
                 "volumeMounts": [dict(logs, readOnly=True)]}]}}, indent=1)


def steps(s):
    pod = s.pod()
    s.say("A proxy sidecar (native: an init container that keeps running), an app, an adapter")
    s.nspod("run", "--wait", s.file("pod.yaml", manifest(pod)))
    first = s.wait(lambda: logs(s, pod, "app"), "the app's first line", timeout=30)
    s.nspod("logs", pod, "app")
    s.check("sidecar-first", first.split()[:1] == ["proxy-was-listening"], first)
    obj = s.inspect(pod)
    proxy = obj["status"]["initContainerStatuses"][0]
    s.show(f"   proxy: {proxy['state']}, started {proxy['started']}")
    s.check("sidecar-runs", "running" in proxy["state"] and proxy["started"], str(proxy))

    ip = obj["status"].get("podIP")
    s.say(f"From the host: the pod IP {ip}, port 9090 (the proxy) and 8080 (the app)")
    s.wait(lambda: s.fetch(f"http://{ip}:9090/", quiet=True)[0], "the proxy to answer",
           timeout=30)
    body, error = s.fetch(f"http://{ip}:9090/")
    s.check("proxy", body is not None and body.strip() == "hello-from-app", error)
    body, error = s.fetch(f"http://{ip}:8080/")
    s.check("app-private", body is None and "refused" in error, error)

    s.say("The adapter: the app's log lines, as JSON")
    want = '{"level":"info","msg":"request-served"}'
    out = s.wait(lambda: want in logs(s, pod, "adapter") and logs(s, pod, "adapter"),
                 "the adapter's output", timeout=30)
    s.nspod("logs", pod, "adapter", "--tail", "3")
    s.check("adapter", want in out.splitlines(), out)
    s.note(f"`nspod explain {pod}` shows the sidecar and both containers")


def logs(s, pod, container):
    return s.quiet("logs", pod, container).stdout


LAB = Lab(number=6, name="sidecars", title="Sidecar, proxy and adapter",
          text=TEXT, interfaces=("connect(2)", "ECONNREFUSED", "/proc/net/tcp"),
          observations=OBSERVATIONS, steps=steps, needs=("busybox",))
