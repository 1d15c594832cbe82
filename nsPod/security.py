"""Process attributes set through prctl(2): the only importer of python-prctl."""
import prctl

from nsPod.syscalls import trace


def become_subreaper():
    """Orphans of our children (a pid namespace's second fork) are re-parented to us."""
    trace("prctl(PR_SET_CHILD_SUBREAPER, 1)")
    prctl.set_child_subreaper(1)


def set_parent_death_signal(sig):
    """Die with the parent; survives execve, which makes it a chain pause -> monitor."""
    trace(f"prctl(PR_SET_PDEATHSIG, {int(sig)})")
    prctl.set_pdeathsig(int(sig))


def clear_parent_death_signal():
    trace("prctl(PR_SET_PDEATHSIG, 0)")
    prctl.set_pdeathsig(0)
