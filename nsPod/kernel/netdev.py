"""Bringing `lo` up in the current network namespace with one ioctl.

pyroute2 (the network module) costs 200-380 ms to import; a fresh namespace only needs
IFF_UP on its loopback, which SIOCSIFFLAGS does on any socket.
"""
import fcntl
import socket
import struct

from nsPod.errors import os_error
from nsPod.kernel.tracing import traced

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH14x"


def link_up(name="lo"):
    with traced("ioctl", ["SIOCSIFFLAGS", name, "IFF_UP"]), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack(_IFREQ, name.encode(), 0)
            flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ, name.encode(), flags | IFF_UP))
        except OSError as e:
            raise os_error(e.errno, "ioctl", detail=f"SIOCSIFFLAGS, {name}, IFF_UP") from e
