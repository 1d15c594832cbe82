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
        syscalls.set_trace(cfg.trace)
    return cfg


def trace_format_option(args, takes_value):
    """The global `--trace=FORMAT` as the hidden `--trace-format FORMAT`, before click parses:
    a flag that also took a value would swallow the command in `nspod --trace add ...`.
    Only the global options are looked at (up to the command's name)."""
    args = list(args)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i].startswith("--trace="):
            args[i:i + 1] = ["--trace-format", args[i].split("=", 1)[1]]
            i += 2
        else:
            i += 2 if args[i] in takes_value else 1
    return args
