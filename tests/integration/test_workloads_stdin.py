"""`stdin`, `stdinOnce` and `tty` true, as real manifests write them (`kubectl run -it`'s pods,
busybox "toolbox" Deployments): accepted silently (`nspod attach` uses them:
tests/integration/test_attach.py), and `stdin: true` keeps the container's stdin open, a
pipe the monitor holds the write end of: a shell or `cat` reading it waits, as in
Kubernetes before anyone attaches, instead of reading end of file at once as with stdin
false."""
from helpers import container_status, wait_for

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: NAME, annotations: {nspod.io/network: none}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: held
    command: [sh, -c, 'cat; echo held-saw-eof']
    stdin: true
    stdinOnce: true
  - name: closed
    command: [sh, -c, 'cat; echo closed-saw-eof; sleep 1000']
"""


def test_stdin_true_is_open_until_attached(nspod):
    result = nspod("run", nspod.manifest(POD.replace("NAME", "si")))
    assert "warning: " not in result.stderr, result.stderr
    wait_for(lambda: "closed-saw-eof" in nspod("logs", "si", "closed").stdout,
             what="stdin false: /dev/null, end of file at once")
    assert "held-saw-eof" not in nspod("logs", "si", "held").stdout
    assert "running" in container_status(nspod.inspect("si"), "held")["state"], \
        "cat still waits on its stdin"
    fd0 = nspod("exec", "si", "-c", "held", "--", "sh", "-c",
                "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = cat ] && "
                "readlink $p/fd/0; done; true").stdout
    assert fd0.startswith("pipe:["), fd0


def test_validate_accepts_them_silently(nspod):
    result = nspod("validate", nspod.manifest(POD.replace("NAME", "sv").replace(
        "    stdinOnce: true\n", "    stdinOnce: true\n    tty: true\n")))
    assert result.returncode == 0 and "ok: 1 pod" in result.stdout
    assert "warning: " not in result.stderr, result.stderr
    bad = nspod("validate", nspod.manifest(POD.replace("NAME", "sv").replace(
        "stdin: true", "stdin: yes-please")), check=False)
    assert bad.returncode == 2 and 'containers[0].stdin: must be a boolean' in bad.stderr
