"""The monitor process's entry: api.pods starts this file by path (`python -P <it>`; the
file, not -m: runpy costs ~8 ms), and `python -P -m nsPod.monitor` works the same."""
import os
import sys

from nsPod.monitor.supervisor import main

code = main(sys.argv[1:])
sys.stderr.flush()
# Everything is written and answered: skip the interpreter's teardown (~25 ms that the
# waiting `nspod rm` would pay).
os._exit(code)
