#!/usr/bin/env python3
"""Pull timings and layer sharing, against the tests' local docker-registry (root; needs
docker-registry, skopeo, apache2-utils and busybox-static, as tests/run.sh installs them).

    python3 bench/pull.py [--runs N]

Prints: the wall time of `nspod image pull` of a 3-layer busybox image (cold: an empty
store; warm: the same image again, the manifest only), medians of N runs; and the disk used
(du) by the store with one image, and with a second image that shares its first layer.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from test_registry import World  # noqa: E402

NSPOD = [sys.executable, "-P", "-m", "nsPod"]


def pull(root, ref, env):
    start = time.monotonic()
    subprocess.run(NSPOD + ["--root", root, "image", "pull", "-q", ref], check=True, env=env,
                   capture_output=True)
    return time.monotonic() - start


def du_kib(path):
    return int(subprocess.run(["du", "-sk", path], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    base = tempfile.mkdtemp(prefix="nspod-bench-pull-")
    world = World(base)
    try:
        world.build()
        conf = os.path.join(base, "registries.conf")
        with open(conf, "w") as f:
            f.write(f'[[registry]]\nlocation = "{world.plain.host}"\ninsecure = true\n')
        env = dict(os.environ, NSPOD_REGISTRIES_CONF=conf)
        cold, warm = [], []
        for i in range(runs):
            root = os.path.join(base, f"root{i}")
            cold.append(pull(root, world.three, env))
            warm.append(pull(root, world.three, env))
            shutil.rmtree(root)
        print(f"3-layer image ({world.three}): cold pull {statistics.median(cold) * 1000:.0f} ms,"
              f" warm pull {statistics.median(warm) * 1000:.0f} ms (median of {runs})")
        root = os.path.join(base, "share")
        pull(root, world.busybox, env)
        one = du_kib(os.path.join(root, "images"))
        pull(root, world.shared, env)
        two = du_kib(os.path.join(root, "images"))
        alone = os.path.join(base, "alone")
        pull(alone, world.shared, env)
        shared_alone = du_kib(os.path.join(alone, "images"))
        print(f"disk (du): busybox:1 alone {one} KiB, shared:1 alone {shared_alone} KiB, "
              f"both together {two} KiB (the second image adds {two - one} KiB)")
    finally:
        world.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
