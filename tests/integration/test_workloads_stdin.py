"""`stdin`, `stdinOnce` and `tty` true, as real manifests write them (`kubectl run -it`'s pods,
busybox "toolbox" Deployments): nspod has no attach, so each is accepted with one warning
saying so and what to use instead, and `stdin: true` keeps the container's stdin open with
no writer: a shell or `cat` reading it waits, as in Kubernetes before anyone attaches,
instead of reading end of file at once as with stdin false."""
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
    tty: true
  - name: closed
    command: [sh, -c, 'cat; echo closed-saw-eof; sleep 1000']
"""


def test_stdin_true_is_open_with_no_writer_and_warned(nspod):
    result = nspod("run", nspod.manifest(POD.replace("NAME", "si")))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, result.stderr
    assert any("containers[0].stdin: nspod has no attach" in w and "nspod exec -it" in w
               for w in warnings), warnings
    assert any("containers[0].tty: no terminal is allocated" in w for w in warnings)
    assert any("containers[0].stdinOnce: ignored" in w for w in warnings)
    wait_for(lambda: "closed-saw-eof" in nspod("logs", "si", "closed").stdout,
             what="stdin false: /dev/null, end of file at once")
    assert "held-saw-eof" not in nspod("logs", "si", "held").stdout
    assert "running" in container_status(nspod.inspect("si"), "held")["state"], \
        "cat still waits on its stdin"
    fd0 = nspod("exec", "si", "-c", "held", "--", "sh", "-c",
                "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = cat ] && "
                "readlink $p/fd/0; done; true").stdout
    assert fd0.startswith("pipe:["), fd0


def test_validate_accepts_them_with_warnings(nspod):
    result = nspod("validate", nspod.manifest(POD.replace("NAME", "sv")))
    assert result.returncode == 0 and "ok: 1 pod" in result.stdout
    assert result.stderr.count("warning: ") == 3
    bad = nspod("validate", nspod.manifest(POD.replace("NAME", "sv").replace(
        "stdin: true", "stdin: yes-please")), check=False)
    assert bad.returncode == 2 and 'containers[0].stdin: must be a boolean' in bad.stderr
