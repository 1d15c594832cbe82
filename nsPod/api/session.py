"""The global options of one nspod command, turned into the Config every call takes."""
from nsPod import config
from nsPod.kernel import paths


def open_config(options):
    """config.load(**options), its state root checked, and --trace turned on if asked."""
    cfg = config.load(**options)
    # A state root that is a symlink, another user's, or writable by others is refused
    # before any command reads or writes in it.
    paths.check_root(cfg.root)
    if cfg.trace:
        from nsPod.kernel import syscalls
        syscalls.set_trace(True)
    return cfg
