"""The daemon's network settings (dockerd's flags) and the choice of subnets.

A subnet Berth picks never overlaps a route the host already has, nor another Berth network. Two
berthds on one host (tests run several) pick under a host-wide lock held until the chosen bridge has
its address, so the second sees the first's route.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from berth.errors import InvalidParameter

LOCK_PATH = "/run/berth-subnets.lock"


@dataclass
class Pool:
    base: ipaddress.IPv4Network
    size: int

    def subnets(self) -> Iterator[ipaddress.IPv4Network]:
        return self.base.subnets(new_prefix=self.size) if self.size >= self.base.prefixlen else iter(())


DEFAULT_POOLS = [Pool(ipaddress.IPv4Network("172.17.0.0/16"), 16), Pool(ipaddress.IPv4Network("172.18.0.0/15"), 16),
                 Pool(ipaddress.IPv4Network("172.20.0.0/14"), 16), Pool(ipaddress.IPv4Network("172.24.0.0/13"), 16),
                 Pool(ipaddress.IPv4Network("192.168.0.0/16"), 20)]


@dataclass
class NetConfig:
    bridge: str = "berth0"  # the default bridge's interface; "none": no default bridge
    bip: str = ""  # the default bridge's gateway/prefix, e.g. 172.17.0.1/16
    fixed_cidr: str = ""  # the default bridge's address range
    pools: list[Pool] = field(default_factory=lambda: list(DEFAULT_POOLS))
    mtu: int = 1500
    tag: str = ""  # keeps the iptables chains of several berthds on one host apart
    iptables: bool = True
    ip_forward: bool = True
    pool: int = 2  # sandboxes (namespace + veth pair) made ahead of starts

    @property
    def chain_tag(self) -> str:
        return self.tag


def parse_pool(raw: str) -> Pool:
    """``base=10.10.0.0/16,size=24`` (dockerd's --default-address-pool)."""
    kv = dict(part.split("=", 1) for part in raw.split(",") if "=" in part)
    try:
        base = ipaddress.IPv4Network(kv["base"])
        size = int(kv.get("size", "24"))
    except (KeyError, ValueError) as e:
        raise ValueError(f"invalid --default-address-pool {raw!r}: want base=CIDR,size=N") from e
    if not base.prefixlen <= size <= 30:
        raise ValueError(f"invalid --default-address-pool {raw!r}: size must be within the base and at most 30")
    return Pool(base, size)


def parse_bip(raw: str) -> tuple[str, ipaddress.IPv4Network]:
    """--bip: the gateway address with its prefix: ("172.17.0.1", 172.17.0.0/16)."""
    try:
        iface = ipaddress.IPv4Interface(raw)
    except ValueError as e:
        raise ValueError(f"invalid --bip {raw!r}: want an address with a prefix, e.g. 172.17.0.1/16") from e
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValueError(f"invalid --bip {raw!r}: the gateway cannot be the network or broadcast address")
    return str(iface.ip), iface.network


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pick_subnet(pools: Iterable[Pool], taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    taken = list(taken)
    for pool in pools:
        for net in pool.subnets():
            if not any(net.overlaps(t) for t in taken):
                return net
    raise InvalidParameter("could not find an available, non-overlapping IPv4 address pool among the defaults "
                           "to assign to the network")


def check_subnet(raw: str, taken: Iterable[tuple[str, ipaddress.IPv4Network]]) -> ipaddress.IPv4Network:
    """A user-given IPAM Subnet: well formed, IPv4, overlapping no other network."""
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"IPAM.Config.Subnet: invalid subnet {raw!r}: {e}") from e
    if net.version != 4:
        raise InvalidParameter(f"IPAM.Config.Subnet: {raw}: IPv6 networking is not supported by this engine")
    if str(net) != raw and ipaddress.ip_interface(raw).ip != net.network_address:
        raise InvalidParameter(f"IPAM.Config.Subnet: invalid subnet {raw}: it has host bits set (did you mean {net}?)")
    if net.prefixlen > 30:
        raise InvalidParameter(f"IPAM.Config.Subnet: {raw}: too small for a network (at most /30)")
    for name, other in taken:
        if net.overlaps(other):
            raise InvalidParameter(f"Pool overlaps with other one on this address space: IPAM.Config.Subnet {raw} "
                                   f"overlaps {other} ({name})")
    return ipaddress.IPv4Network(net)


def check_in(raw: str, net: ipaddress.IPv4Network, what: str) -> str:
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError as e:
        raise InvalidParameter(f"{what}: invalid address {raw!r}") from e
    if addr.version != 4 or addr not in net:
        raise InvalidParameter(f"{what}: {raw} is not within subnet {net}")
    if addr in (net.network_address, net.broadcast_address):
        raise InvalidParameter(f"{what}: {raw} is the network or broadcast address of {net}")
    return str(addr)
