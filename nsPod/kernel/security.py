"""Process attributes set through prctl(2), and who a container runs as: the only importer of
python-prctl."""
import os

import prctl

from nsPod.kernel.tracing import traced


def become_subreaper():
    """Orphans of our children (a pid namespace's second fork) are re-parented to us."""
    with traced("prctl", ["PR_SET_CHILD_SUBREAPER", "1"]):
        prctl.set_child_subreaper(1)


def set_parent_death_signal(sig):
    """Die with the parent; survives execve, which makes it a chain pause -> monitor."""
    with traced("prctl", ["PR_SET_PDEATHSIG", int(sig)]):
        prctl.set_pdeathsig(int(sig))


def clear_parent_death_signal():
    with traced("prctl", ["PR_SET_PDEATHSIG", "0"]):
        prctl.set_pdeathsig(0)


# --- a container's privileges (container.apply_security decides the order) -------------------

def capability_numbers(names):
    """Kernel numbers for capability names (CHOWN or CAP_CHOWN); unknown names are skipped,
    as a capability this python-prctl build does not know cannot be kept either."""
    numbers = set()
    for name in names:
        name = name.upper()
        number = getattr(prctl, name if name.startswith("CAP_") else f"CAP_{name}", None)
        if isinstance(number, int):
            numbers.add(number)
    return numbers


def last_capability():
    """The highest capability this kernel has (it may know more than python-prctl does)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return max(prctl.ALL_CAPS)


def limit_bounding_set(keep):
    """Drop every capability not in `keep` from the bounding set, for good: no later execve
    (of a setuid-root or file-capability program) can bring them back. Needs CAP_SETPCAP."""
    dropped = [cap for cap in range(last_capability() + 1) if cap not in keep]
    with traced("prctl", ["PR_CAPBSET_DROP", dropped]):
        for cap in dropped:
            prctl.capbset_drop(cap)


def set_keep_capabilities(keep):
    """PR_SET_KEEPCAPS: whether setuid() away from root keeps the permitted set."""
    with traced("prctl", ["PR_SET_KEEPCAPS", int(keep)]):
        prctl.set_keepcaps(bool(keep))


def set_identity(uid, gid, groups):
    """setgroups, then setresgid, then setresuid (each needs a capability the next one takes
    away), keeping the permitted set across the uid change (KEEPCAPS) for the capset after."""
    set_keep_capabilities(True)
    with traced("setgroups", [groups],
                text=f"setgroups({groups}); setresgid({gid}); setresuid({uid})"):
        os.setgroups(groups)
    with traced("setresgid", [gid, gid, gid], text=""):
        os.setresgid(gid, gid, gid)
    with traced("setresuid", [uid, uid, uid], text=""):
        os.setresuid(uid, uid, uid)
    set_keep_capabilities(False)


def set_capabilities(keep):
    """Effective and permitted = keep, inheritable = none, in one capset(2) (E must stay within
    P at every step, so the sets are never changed one by one). An empty inheritable set also
    empties the ambient set, which the kernel keeps within permitted and inheritable."""
    # What this process does not have it cannot keep (root here may lack some, e.g. when it
    # is itself in a container).
    keep = set(keep) & permitted_capabilities()
    known = set(prctl.ALL_CAPS)
    flags = [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED]
    with traced("capset", [f"effective=permitted={sorted(keep)}", "inheritable=[]"]):
        prctl.set_caps((sorted(keep & known), flags, True),
                       (sorted(known - keep), flags, False),
                       (sorted(known), [prctl.CAP_INHERITABLE], False))


def set_no_new_privs():
    """No execve may grant privileges again (setuid bits, file capabilities): inherited by
    every descendant and irreversible."""
    with traced("prctl", ["PR_SET_NO_NEW_PRIVS", "1"]):
        prctl.set_no_new_privs(1)


def permitted_capabilities():
    """This process's permitted set, as numbers (the most it can keep)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                mask = int(line.split()[1], 16)
                return {cap for cap in range(mask.bit_length()) if mask >> cap & 1}
    return set(prctl.ALL_CAPS)
