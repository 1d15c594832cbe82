"""The `nspod` command, thin: `python -P -m nsPod` and the installed `nspod` script.

It imports only nsPod.warm.client (the standard library: no click, yaml or nsPod.api) and
hands the command to podd, the warm process of the state root, which runs it in a process of
its own forked from an interpreter that has nsPod imported already (nsPod/podd/). When the
warm path is off (NSPOD_WARM=0), not for this caller (not root) or not there yet (the first
command starts podd in the background), the command runs here, in-process, as it always did.
"""
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    from nsPod.warm import client
    code = client.run(argv)
    if code is None:
        from nsPod import cli
        cli.main(argv)        # ends the process with the command's exit code
    os._exit(code)


if __name__ == "__main__":
    main()
