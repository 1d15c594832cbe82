#!/bin/sh
# A minimal modprobe for the UML guest, which has no kmod. The kernel runs it as
# "modprobe -q -- NAME_OR_ALIAS" to autoload a module; guest-init.sh runs it with several
# names. One awk pass resolves aliases (modules.alias) and dependencies (modules.dep) in
# the kernel's module tree (named by guest-init.sh in /run/nspod-vm-moddir); busybox insmod loads what is not loaded yet. Forks and small
# reads are slow under UML, hence a single awk and no per-module lookups.
read -r KVER < /proc/sys/kernel/osrelease
D=/usr/lib/uml/modules/$KVER
[ -r /run/nspod-vm-moddir ] && read -r D < /run/nspod-vm-moddir
rc=0
for f in $(busybox awk -v names="$*" '
    function norm(s) { gsub("-", "_", s); return s }
    function base(p,   n) { n = p; sub(".*/", "", n); sub("\\.ko$", "", n); return norm(n) }
    FILENAME == "/proc/modules" { loaded[$1] = 1; next }
    FILENAME ~ /modules\.dep$/ {
        p = $1; sub(":$", "", p); b = base(p); path[b] = p
        d = ""; for (i = NF; i >= 2; i--) d = d " " $i; deps[b] = d; next }
    FILENAME ~ /modules\.alias$/ { na++; apat[na] = $2; atgt[na] = norm($3); next }
    END {
        n = split(names, want, " ")
        for (k = 1; k <= n; k++) {
            w = want[k]; if (w ~ /^-/) continue
            m = norm(w)
            if (!(m in path)) {
                m = ""
                for (j = 1; j <= na; j++) {
                    re = apat[j]; gsub("\\.", "\\.", re); gsub("\\*", ".*", re); gsub("\\?", ".", re)
                    if (w ~ ("^" re "$")) { m = atgt[j]; break }
                }
                if (m == "" || !(m in path)) { print "MISSING:" w; continue }
            }
            c = split(deps[m], dl, " ")
            for (i = 1; i <= c; i++) { b = base(dl[i]); if (!(b in loaded)) { print dl[i]; loaded[b] = 1 } }
            if (!(m in loaded)) { print path[m]; loaded[m] = 1 }
        }
    }' /proc/modules "$D/modules.dep" "$D/modules.alias"); do
    case "$f" in
        MISSING:*) rc=1 ;;
        *) busybox insmod "$D/$f" || rc=1 ;;
    esac
done
exit $rc
