"""Pod networking: the client (CLI, monitor), the netd daemon, its netlink links, IPAM."""
