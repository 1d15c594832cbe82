"""exec linux.uml (argv[1:]) so that it keeps guest FP state with the legacy FXSAVE regset.

UML 6.1 sizes its XSAVE buffer for CPUs without AMX. On a host whose CPU has AMX the host
kernel refuses PTRACE_SETREGSET(NT_X86_XSTATE) of that size (EFAULT) and the guest panics at
boot ("userspace - ptrace set fp regs failed, errno = 14"). UML uses the XSAVE regset only
when PTRACE_GETREGSET(NT_X86_XSTATE) works at boot, else PTRACE_GETFPREGS/SETFPREGS: this
seccomp filter makes that probe fail (EIO). The legacy regset carries no AVX state, so guest
programs must not use AVX: run.sh turns glibc's (GLIBC_TUNABLES) and OpenSSL's
(OPENSSL_ia32cap) AVX code off in the guest; a container started with an environment of
its own must be given both.
"""
import errno
import os
import sys

import pyseccomp

PTRACE_GETREGSET = 0x4204
NT_X86_XSTATE = 0x202

f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
f.add_rule(pyseccomp.ERRNO(errno.EIO), "ptrace",
           pyseccomp.Arg(0, pyseccomp.EQ, PTRACE_GETREGSET),
           pyseccomp.Arg(2, pyseccomp.EQ, NT_X86_XSTATE))
f.load()
os.execvp(sys.argv[1], sys.argv[1:])
