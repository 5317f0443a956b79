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

from berth.network import netns

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


def _inner_ipr() -> IPRoute:
    # made here, in the thread that is inside the namespace: the socket belongs to that namespace
    return IPRoute(use_socket=socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))


def _plug_inside(plugs: list[Plug], host_ns_fd: int, lo_up: bool) -> None:
    with _inner_ipr() as ipr:
        if lo_up:
            ipr.link("set", index=1, state="up")  # lo is always index 1 in a new namespace
        for p in plugs:
            ipr.link("add", ifname=p.ifname, kind="veth", address=p.mac, mtu=p.mtu,
                     peer={"ifname": p.host_ifname, "net_ns_fd": host_ns_fd, "mtu": p.mtu})
            idx = ipr.link_lookup(ifname=p.ifname)[0]
            ipr.addr("add", index=idx, address=p.address, prefixlen=p.prefixlen)
            ipr.link("set", index=idx, state="up")
            if p.default_route:
                ipr.route("add", dst="0.0.0.0/0", gateway=p.gateway)


def _unplug_inside(ifname: str) -> None:
    with _inner_ipr() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if idx:
            ipr.link("del", index=idx[0])


def _inside_ifnames() -> list[str]:
    with _inner_ipr() as ipr:
        return [str(link.get("ifname")) for link in ipr.get_links()]


class Netlink:
    """The host's netlink socket and the namespace operations, for the network service."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="berth-netlink")
        self._ipr: IPRoute | None = None
        self._host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

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
        os.close(self._host_ns)

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

    def attach_host_end(self, host_ifname: str, bridge: str) -> None:
        br = self.index(bridge)
        idx = self.index(host_ifname)
        if br is None or idx is None:
            raise OSError(errno.ENODEV, f"bridge {bridge} or interface {host_ifname} is missing")
        self.ipr().link("set", index=idx, master=br, state="up")

    def link_names(self) -> list[str]:
        return [str(link.get("ifname")) for link in self.ipr().get_links()]

    def counters(self, host_ifname: str) -> dict[str, int] | None:
        """The host end's counters, turned round to read as the container's interface sees them."""
        idx = self.index(host_ifname)
        if idx is None:
            return None
        link = self.ipr().get_links(idx)[0]
        s = link.get("IFLA_STATS64") or {}
        return {"rx_bytes": s.get("tx_bytes", 0), "rx_packets": s.get("tx_packets", 0),
                "rx_errors": s.get("tx_errors", 0), "rx_dropped": s.get("tx_dropped", 0),
                "tx_bytes": s.get("rx_bytes", 0), "tx_packets": s.get("rx_packets", 0),
                "tx_errors": s.get("rx_errors", 0), "tx_dropped": s.get("rx_dropped", 0)}

    # -- namespaces (blocking; call in a thread) -----------------------------------------------------
    def make_sandbox(self, path: str, plugs: list[Plug]) -> None:
        """A new namespace at ``path`` with lo up and ``plugs`` made inside (their host ends appear in
        berthd's namespace, not yet on a bridge)."""
        netns.create(path, lambda: _plug_inside(plugs, self._host_ns, True))

    def plug_into(self, path: str, plugs: list[Plug]) -> None:
        netns.run_in(path, lambda: _plug_inside(plugs, self._host_ns, False))

    def unplug_from(self, path: str, ifname: str) -> None:
        netns.run_in(path, lambda: _unplug_inside(ifname))

    def sandbox_ifnames(self, path: str) -> list[str]:
        return netns.run_in(path, _inside_ifnames)


def _sysctl(key: str, value: str) -> None:
    with open(os.path.join("/proc/sys", key), "w") as f:
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
