"""podd: the warm process of one state root (and caller context), the top of the stack.

    python -P -m nsPod.podd ROOT --lock-fd N --key KEY

Started on demand by the thin `nspod` (nsPod/warm/client.py says where its files are and how
it is found); it imports the CLI, the library and the monitor once, gc.freeze()s them, and
for each request forks a fresh process that runs one command (command.py) with the caller's
argv, environment, umask, working directory and stdio; a `run` in that process forks each
pod's monitor from it (nsPod/warm/forking.py). podd is in no pod's path: every process it
forks is on its own (setsid), so SIGKILL of podd harms no command and no pod. It exits after
NSPOD_WARM_IDLE seconds (default 30) with no request pending; the next command starts it.
"""
