"""Bridges, veth pairs, addresses and routes over netlink (pyroute2), without spawning anything.

The host's side is worked through one IPRoute socket kept open in one worker thread (pyroute2 binds
a socket to the thread that first uses it); a container's side is worked from a dedicated thread
inside its namespace (berth.network.netns), through a netlink socket made there.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.network import ifconf, netns

T = TypeVar("T")


@dataclass
class Plug:
    """One container interface: what goes inside the namespace and which bridge the host end joins."""

    ifname: str  # inside: eth0, eth1, ...
    host_ifname: str  # the host end: veth + 7 hex
    address: str
    prefixlen: int
    gateway: str
    mac: str
    mtu: int
    default_route: bool
    bridge: str


def mac_of(address: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the address's four bytes."""
    b = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


class Netlink:
    """The host's netlink socket and the namespace operations, for the network service."""


    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-netlink")
        self._ipr: IPRoute | None = None

    async def run(self, fn: Any, *args: Any) -> Any:
        """Host-side work, in the netlink thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def run_sync(self, fn: Any, *args: Any) -> Any:
        """Host-side work from a thread that is not the event loop's."""
        return self._pool.submit(fn, *args).result()

    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        def shut() -> None:
            if self._ipr is not None:
                self._ipr.close()
        self._pool.submit(shut).result()
        self._pool.shutdown()

    # -- host side (call through ``run``) ----------------------------------------------------------
    def index(self, name: str) -> int | None:
        found = self.ipr().link_lookup(ifname=name)
        return int(found[0]) if found else None

    def ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int) -> None:
        """The bridge up with its gateway address; made if missing. ``route_localnet`` lets a DNAT of
        127.0.0.1 (a published port reached from loopback) leave through the bridge."""
        ipr = self.ipr()
        idx = self.index(name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = self.index(name)
            assert idx is not None
        try:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        ipr.link("set", index=idx, state="up")
        _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")

    def delete_link(self, name: str) -> bool:
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self.ipr().link("del", index=idx)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
            return False
        return True

    def link_names(self) -> list[str]:
        return [str(link.get("ifname")) for link in self.ipr().get_links()]

    def add_veth_into(self, host_ifname: str, path: str, ifname: str, mtu: int) -> None:
        """A veth pair: ``host_ifname`` here (down, on no bridge), ``ifname`` (down) in the namespace at ``path``."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.ipr().link("add", ifname=host_ifname, kind="veth", mtu=mtu,
                            peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu})
        finally:
            os.close(fd)

    def bridge_host_end(self, host_ifname: str, bridge: str) -> None:
        """Put a host end on ``bridge`` and bring it up, in one netlink request."""
        br = self.index(bridge)
        idx = self.index(host_ifname)
        if br is None or idx is None:
            raise OSError(errno.ENODEV, f"bridge {bridge} or interface {host_ifname} is missing")
        self.ipr().link("set", index=idx, master=br, state="up")
        # hairpin: a container reaching its own published port through the host comes back to it
        _sysctl_path(f"/sys/class/net/{host_ifname}/brport/hairpin_mode", "1")

    # -- a namespace's side (blocking; call in a thread) --------------------------------------------
    @staticmethod
    def make_namespace(path: str) -> None:
        """A new namespace bound at ``path``, with lo up."""
        netns.create(path, lambda: ifconf.set_up("lo"))

    @staticmethod
    def configure_inside(path: str, plug: Plug) -> None:
        netns.run_in(path, lambda: ifconf.configure(plug.ifname, plug.address, plug.prefixlen, plug.mac,
                                                     plug.gateway if plug.default_route else None))

def _sysctl(key: str, value: str) -> None:
    _sysctl_path(os.path.join("/proc/sys", key), value)


def _sysctl_path(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def ip_forward() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def enable_ip_forward() -> None:
    if not ip_forward():
        _sysctl("net/ipv4/ip_forward", "1")


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (not the default): a new subnet must overlap none of them."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                parts = line.split()
                dst, mask = int(parts[1], 16), int(parts[7], 16)
                if mask == 0:
                    continue
                net = ipaddress.IPv4Address(socket.ntohl(dst))
                plen = bin(mask).count("1")
                out.append(ipaddress.IPv4Network(f"{net}/{plen}", strict=False))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return out
