import os
import sys

from nsPod.podd.server import main

code = main(sys.argv[1:])
sys.stderr.flush()
# Everything is closed and removed: skip tearing down an interpreter full of frozen objects.
os._exit(code)
