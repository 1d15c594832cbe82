"""Lab 3: shared network: two containers, one port space, localhost between them."""
import os

from nsPod.labs.model import Lab

TEXT = """\
The containers of a pod are in one network namespace: the one pause's process made with
CLONE_NEWNET, which each container joins with setns(2). A network namespace holds the
interfaces, the addresses, the routes and the sockets' port space. So, in one pod:

  - there is one loopback: a server listening on 127.0.0.1:8080 in one container is
    reached at localhost:8080 from another, as processes on one machine reach each
    other (the seed's "localhost between containers");
  - there is one port space: a second bind(2) of 127.0.0.1:8080 in the other container
    fails with EADDRINUSE ("Address in use"), as on one machine;
  - there is one eth0 and one pod IP, seen alike from every container.

From the host, the pod's namespace is named in /run/netns (ip-netns(8)), so any tool
runs inside it with `ip netns exec NETNS ...`: here ss(8) -ltn lists the server's
listening socket, which `ss -ltn` on the host does not show (another namespace, other
sockets; /proc/net/tcp differs the same way).

Why it matters: sidecars (lab 6) talk to the app over localhost, and two containers of a
pod must not both want one port.

(`nspod explain POD` shows the veth from the pod's eth0 to the host bridge.)
"""

OBSERVATIONS = {
    "localhost": "the client container reaches the server at 127.0.0.1:8080",
    "one-port-space": "a second bind of 127.0.0.1:8080 in the other container fails",
    "one-ip": "both containers see the same eth0 address: the pod IP",
    "host-view": "`ip netns exec NETNS ss -ltn` on the host lists 127.0.0.1:8080",
}

SERVER = ("mkdir -p /tmp/www && echo hello-from-server > /tmp/www/index.html && "
          "exec busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www")
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
    - {{name: server, command: [sh, -c, "{server}"]}}
    - {{name: client, command: [sleep, "1000"]}}
"""


def steps(s):
    pod = s.pod()
    s.say("A pod of two containers: a web server on 127.0.0.1:8080 and a client")
    s.nspod("run", "--wait", s.file("pod.yaml", MANIFEST.format(pod=pod, server=SERVER)))
    netns = os.path.basename(s.inspect(pod)["runtime"]["network"]["netns"])

    def fetch():
        got = s.nspod("exec", pod, "-c", "client", "--", "busybox", "wget", "-qO-",
                      "http://127.0.0.1:8080/", ok=False)
        return got if got.returncode == 0 else None
    s.say("From the client container: localhost is the server's localhost")
    got = s.wait(fetch, "the server to answer", timeout=30)
    s.check("localhost", got.stdout.strip() == "hello-from-server", got.stdout)

    s.say("One port space: the client cannot listen on the server's port")
    again = s.nspod("exec", pod, "-c", "client", "--", "timeout", "3", "busybox", "httpd",
                    "-f", "-p", "127.0.0.1:8080", "-h", "/", ok=False)
    s.check("one-port-space", again.returncode == 1 and "in use" in again.stderr,
            f"exit {again.returncode}: {again.stderr.strip()}")

    s.say("One interface, one address")
    addrs = [s.nspod("exec", pod, "-c", c, "--", "ip", "-4", "-o", "addr", "show", "eth0",
                     ok=False).stdout.split() for c in ("server", "client")]
    ip = s.inspect(pod)["status"].get("podIP", "")
    s.check("one-ip", ip and all(f"{ip}/" in " ".join(a) for a in addrs), f"{ip} vs {addrs}")

    s.say("From the host: the pod's network namespace by its /run/netns name")
    inside = s.host("ip", "netns", "exec", netns, "ss", "-ltn")
    s.check("host-view", "127.0.0.1:8080" in inside.stdout, inside.stdout)
    s.host("ss", "-ltn", "sport", "=", ":8080", ok=False)
    s.show("   (the host's own namespace: the pod's listener is not among these)")
    s.note(f"`nspod explain {pod}` shows eth0, the veth and the bridge")


LAB = Lab(number=3, name="shared-network", title="Shared network: one port space",
          text=TEXT, interfaces=("CLONE_NEWNET", "setns(2)", "bind(2)", "EADDRINUSE", "/run/netns",
                                 "ip-netns(8)", "ss(8)", "/proc/net/tcp"),
          observations=OBSERVATIONS, steps=steps, needs=("ip", "ss", "busybox"))
