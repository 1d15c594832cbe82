"""Teaching labs: one idea of the Pod each, run with the real nspod CLI and checked against
what the kernel shows (`nspod lab ls`, `nspod lab run NAME [--check]`, `nspod lab explain
NAME`). Each lab is a module here (model.Lab); runner.py runs them."""
import importlib

from nsPod.errors import InputError

MODULES = ("lab01_process_group", "lab02_infra_container", "lab03_shared_network",
           "lab04_shared_volumes", "lab05_init_containers",
           "lab06_sidecars", "lab07_memory",
           "lab08_pid1", "lab09_container_root",
           "lab10_cgroups")

# The caller's global options, passed on to every nspod command a lab runs.
GLOBAL_FLAGS = (("root", "--root"), ("cgroup_parent", "--cgroup-parent"),
                ("bridge", "--bridge"), ("subnet", "--subnet"),
                ("restart_backoff", "--restart-backoff"),
                ("allowed_unsafe_sysctls", "--allowed-unsafe-sysctls"))


def all_labs():
    """Every lab, in order."""
    return [importlib.import_module(f"nsPod.labs.{m}").LAB for m in MODULES]


def find(name):
    """A lab by name or number (`nspod lab run shared-network`, `nspod lab run 3`)."""
    for lab in all_labs():
        if name in (lab.name, str(lab.number)):
            return lab
    known = ", ".join(lab.name for lab in all_labs())
    raise InputError(f"unknown lab {name!r}: one of {known} (or its number; see nspod lab ls)")


def global_args(options):
    """The CLI's global options as arguments for the nspod commands a lab runs."""
    args = []
    for key, flag in GLOBAL_FLAGS:
        if options.get(key):
            args += [flag, str(options[key])]
    trace = options.get("trace")
    if trace:   # a flag today; a form such as --trace=json is passed on as given
        args.append("--trace" if trace is True else f"--trace={trace}")
    return args
