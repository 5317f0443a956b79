"""Interface settings inside a container's namespace by ioctl: address, netmask, MAC, up, default route.

Called from a thread inside the namespace (berth.network.netns). A few ioctls on a datagram socket made
there cost microseconds, where a netlink library session costs milliseconds; the veth itself is made
over netlink from the host's side.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCSIFHWADDR = 0x8924
SIOCADDRT = 0x890B
SIOCDELRT = 0x890C
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
ARPHRD_ETHER = 1
_RTENTRY_SIZE = 120  # struct rtentry on 64-bit Linux


def _name(ifname: str) -> bytes:
    raw = ifname.encode()
    if not raw or len(raw) > 15:
        raise ValueError(f"bad interface name {ifname!r}")
    return raw


def _sockaddr(ip: str) -> bytes:
    return struct.pack("H2s4s8s", socket.AF_INET, b"\0\0", socket.inet_aton(ip), b"\0" * 8)


def _mask(prefixlen: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF))


def _flags(s: socket.socket, ifname: str, up: bool) -> None:
    req = struct.pack("16sH14s", _name(ifname), 0, b"\0" * 14)
    flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", _name(ifname), flags, b"\0" * 14))


def set_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        _flags(s, ifname, True)


def configure(ifname: str, address: str, prefixlen: int, mac: str, gateway: str | None) -> None:
    """MAC (while the interface is still down), address, up, and the default route when ``gateway``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        hw = bytes(int(x, 16) for x in mac.split(":"))
        fcntl.ioctl(s, SIOCSIFHWADDR, struct.pack("16sH6s8s", _name(ifname), ARPHRD_ETHER, hw, b"\0" * 8))
        fcntl.ioctl(s, SIOCSIFADDR, struct.pack("16s16s", _name(ifname), _sockaddr(address)))
        fcntl.ioctl(s, SIOCSIFNETMASK, struct.pack("16s16s", _name(ifname), _sockaddr(_mask(prefixlen))))
        _flags(s, ifname, True)
        if gateway:
            rt = struct.pack("L16s16s16sHhIL", 0, _sockaddr("0.0.0.0"), _sockaddr(gateway), _sockaddr("0.0.0.0"),
                             RTF_UP | RTF_GATEWAY, 0, 0, 0)
            fcntl.ioctl(s, SIOCADDRT, rt + b"\0" * (_RTENTRY_SIZE - len(rt)))
