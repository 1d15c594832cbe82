"""Small helpers shared by the integration tests."""
import json
import os
import time


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def container_status(pod_obj, name):
    for c in pod_obj["status"].get("containerStatuses", []) + \
            pod_obj["status"].get("initContainerStatuses", []):
        if c["name"] == name:
            return c
    raise KeyError(name)


def wait_terminated(nspod, pod, container, timeout=10.0):
    def done():
        state = container_status(nspod.inspect(pod), container)["state"]
        return state.get("terminated")
    return wait_for(done, timeout, what=f"container {container} of {pod} to end")


def wait_phase(nspod, pod, phases, timeout=10.0):
    return wait_for(lambda: nspod.inspect(pod)["status"]["phase"] in phases and nspod.inspect(pod),
                    timeout, what=f"pod {pod} to reach {phases}")


def ns_inode(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def pod_yaml(name, containers, volumes="", extra_spec="", grace=0):
    """A Pod manifest; `containers` and `volumes` are YAML list bodies indented by 4."""
    text = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: {grace}
{extra_spec}"""
    if volumes:
        text += f"  volumes:\n{volumes}"
    text += f"  containers:\n{containers}"
    return text


# In the cgroup v2 guest on a host whose CPU has AMX, glibc's and OpenSSL's AVX code is
# turned off by these variables (set by whoever runs tests/vm/run.sh, which passes the host's
# environment into the guest); a container starts with its manifest's env only, so
# containers there are given them (else python3 hangs in the guest).
GUEST_ENV = {k: os.environ[k] for k in ("GLIBC_TUNABLES", "OPENSSL_ia32cap")
             if os.environ.get("NSPOD_VM") and k in os.environ}


def guest_env():
    """A container's `env:` line carrying GUEST_ENV; empty outside such a guest."""
    env = [{"name": k, "value": v} for k, v in GUEST_ENV.items()]
    return f"      env: {json.dumps(env)}\n" if env else ""


def container(name, command="sleep 1000", mounts="", extra=""):
    """One container entry running `sh -c command`; JSON quoting is valid YAML."""
    text = f"""\
    - name: {name}
      command: ["sh", "-c", {json.dumps(command)}]
"""
    if mounts:
        text += f"      volumeMounts:\n{mounts}"
    if "env:" not in extra:
        text += guest_env()
    return text + extra
