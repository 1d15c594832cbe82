"""The host kernel, safely: syscalls, namespaces, mounts, cgroups, security, child-side steps."""
