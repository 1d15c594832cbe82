"""critest (cri-tools' conformance suite) against `nspod cri`, in a world of its own: a
state root, a cgroup parent nested under this process's cgroup, its own bridge and subnet,
and a local docker-registry serving the test images (cri_images.py). Prints critest's
output, then one line: `critest: P passed, F failed, S skipped of T specs`; the pods it
left are removed and the registry stopped. Exit status: critest's.

    python tests/cri/run_critest.py CRITEST [critest args...]
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cri_images  # noqa: E402

NSPOD = [sys.executable, "-P", "-m", "nsPod"]


def own_cgroup():
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(",") or controllers == "":
                return path
    return "/"


def print_specs(report):
    """Every spec that did not pass, with critest's reason (skips say why they skip)."""
    import json
    try:
        with open(report) as f:
            suites = json.load(f)
    except (OSError, ValueError):
        return
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It" or spec.get("State") == "passed":
                continue
            name = " ".join(spec.get("ContainerHierarchyTexts") or []) + " " + \
                spec.get("LeafNodeText", "")
            why = ((spec.get("Failure") or {}).get("Message") or "").strip().splitlines()
            print(f"{spec['State']}: {name}: {why[0][:160] if why else ''}")


def main(argv):
    critest, extra = argv[0], argv[1:]
    work = tempfile.mkdtemp(prefix="nspod-critest-")
    root = os.path.join(work, "root")
    world = ["--root", root,
             "--cgroup-parent", f"{own_cgroup().rstrip('/')}/nspod-critest-{uuid.uuid4().hex[:8]}",
             "--bridge", f"nspc{uuid.uuid4().hex[:6]}",
             "--subnet", f"10.89.{random.randrange(256)}.0/24"]
    sock = f"unix://{work}/cri.sock"
    registry = cri_images.Registry(work, "registry")
    server = None
    try:
        cri_images.push_all(registry, work)
        conf = os.path.join(work, "registries.conf")
        with open(conf, "w") as f:
            f.write(cri_images.registries_conf(registry))
        env = dict(os.environ, NSPOD_REGISTRIES_CONF=conf)
        log = open(os.path.join(work, "server.log"), "wb")
        server = subprocess.Popen(NSPOD + world + ["cri", "--listen", sock], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock[len("unix://"):]):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nspod cri did not start: {open(log.name).read()}")
            time.sleep(0.1)
        report = os.path.join(work, "report.json")
        result = subprocess.run([critest, f"--runtime-endpoint={sock}",
                                 f"--image-endpoint={sock}", f"--ginkgo.json-report={report}",
                                 "--ginkgo.no-color", *extra],
                                capture_output=True, text=True)
        sys.stdout.write(result.stdout + result.stderr)
        print_specs(report)
        counts = re.search(r"Ran (\d+) of (\d+) Specs.*?\n.*?(\d+) Passed \| (\d+) Failed "
                           r"\| \d+ Pending \| (\d+) Skipped", result.stdout, re.S)
        if counts:
            ran, total, passed, failed, skipped = map(int, counts.groups())
            print(f"critest: {passed} passed, {failed} failed, {skipped} skipped of "
                  f"{total} specs ({passed * 100 // max(ran, 1)} % of those run)")
        else:
            print("critest: no summary in its output")
        errors = [line for line in open(log.name, errors="replace")
                  if "Traceback" in line or "internal error" in line]
        print(f"nspod cri: {len(errors)} internal errors in its log ({log.name})")
        return result.returncode
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(30)
        if os.path.isdir(os.path.join(root, "pods")) and os.listdir(os.path.join(root, "pods")):
            subprocess.run(NSPOD + world + ["rm", "-f", "--timeout", "0",
                                            *os.listdir(os.path.join(root, "pods"))])
        subprocess.run(NSPOD + world + ["gc"], capture_output=True)
        registry.stop()
        if os.environ.get("NSPOD_CRITEST_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
