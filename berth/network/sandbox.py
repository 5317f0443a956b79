"""A container's network namespace: made at start with every endpoint plugged in, torn down at exit.

The order makes a failure leave nothing: addresses and host ports are taken first (records and
sockets, undone on error), then the namespace and its veths are made in one thread (a namespace that
goes away takes its veths with it), then the host ends join their bridges.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from berth.network import links, netns
from berth.network.ports import Binding, Holds
from berth.network.store import Endpoint, Network, NetworkStore

log = logging.getLogger("berth.network")


@dataclass
class Plugged:
    endpoint: Endpoint
    network: Network
    plug: links.Plug


class Sandboxes:
    def __init__(self, store: NetworkStore, netlink: links.Netlink, holds: Holds, netns_dir: str) -> None:
        self.store = store
        self.netlink = netlink
        self.holds = holds
        self.dir = netns_dir

    def path(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def _plug(self, n: Network, ep: Endpoint, address: str, ifname: str, primary: bool) -> links.Plug:
        mac = str(ep.config.get("MacAddress") or "") or links.mac_of(address)
        return links.Plug(ifname=ifname, host_ifname="veth" + secrets.token_hex(4)[:7], address=address,
                          prefixlen=n.net.prefixlen, gateway=n.gateway, mac=mac, mtu=n.mtu,
                          default_route=primary, bridge=n.bridge)

    async def make(self, cid: str, eps: list[tuple[Endpoint, Network]], bindings: list[Binding]) -> list[Plugged]:
        """Everything for a start; all or nothing. ``eps[0]`` is the primary endpoint (default route,
        published ports)."""
        path = self.path(cid)
        if os.path.lexists(path):  # a leftover of a crash before this start
            await asyncio.to_thread(netns.remove, path)
        plugged: list[Plugged] = []
        t0 = time.perf_counter()
        try:
            chosen = self.holds.acquire(cid, bindings) if bindings and eps else []
            for i, (ep, n) in enumerate(eps):
                address = self.store.allocate(n, cid, (ep.config.get("IPAMConfig") or {}).get("IPv4Address"))
                plugged.append(Plugged(ep, n, self._plug(n, ep, address, f"eth{i}", i == 0)))
            t1 = time.perf_counter()
            await asyncio.to_thread(self.netlink.make_sandbox, path, [p.plug for p in plugged])
            t2 = time.perf_counter()
            for p in plugged:
                await self.netlink.run(self.netlink.attach_host_end, p.plug.host_ifname, p.plug.bridge)
            t3 = time.perf_counter()
            for i, p in enumerate(plugged):
                live: dict[str, Any] = {"EndpointID": secrets.token_hex(32), "MacAddress": p.plug.mac,
                                        "host_ifname": p.plug.host_ifname, "ifname": p.plug.ifname}
                if i == 0 and chosen:
                    live["Ports"] = [[b.proto, b.container_port, b.host_ip, b.host_port] for b in chosen]
                self.store.set_live(cid, p.network.id, live)
            log.debug("sandbox %s: addresses+ports %.1f ms, namespace+veths %.1f ms, bridge %.1f ms, record %.1f ms",
                      cid[:12], (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (time.perf_counter() - t3) * 1e3)
        except BaseException:
            self.holds.release(cid)
            self.store.release(cid)
            await asyncio.to_thread(netns.remove, path)
            raise
        return plugged

    async def remove(self, cid: str) -> None:
        """At exit: the namespace file goes (the kernel then frees the namespace and its veths), the
        host ports and addresses are released."""
        self.holds.release(cid)
        await asyncio.to_thread(netns.remove, self.path(cid))
        self.store.release(cid)

    async def plug_one(self, cid: str, ep: Endpoint, n: Network, index: int) -> None:
        """Hot-plug: one more interface into a running container's namespace."""
        address = self.store.allocate(n, cid, (ep.config.get("IPAMConfig") or {}).get("IPv4Address"))
        plug = self._plug(n, ep, address, f"eth{index}", False)
        try:
            await asyncio.to_thread(self.netlink.plug_into, self.path(cid), [plug])
            await self.netlink.run(self.netlink.attach_host_end, plug.host_ifname, plug.bridge)
        except BaseException:
            await self.netlink.run(self.netlink.delete_link, plug.host_ifname)
            self.store.release(cid, n.id)
            raise
        self.store.set_live(cid, n.id, {"EndpointID": secrets.token_hex(32), "MacAddress": plug.mac,
                                        "host_ifname": plug.host_ifname, "ifname": plug.ifname})

    async def unplug_one(self, cid: str, ep: Endpoint) -> None:
        if ep.live:
            try:
                await asyncio.to_thread(self.netlink.unplug_from, self.path(cid), str(ep.live["ifname"]))
            except OSError as e:
                log.warning("unplugging %s from %s: %s", ep.live.get("ifname"), cid[:12], e)
            await self.netlink.run(self.netlink.delete_link, str(ep.live["host_ifname"]))
        self.store.release(cid, ep.network_id)

    def reacquire(self, cid: str, ports: list[list[Any]]) -> None:
        """After a berthd restart: hold the running container's host ports again."""
        try:
            self.holds.acquire(cid, [Binding(str(p[0]), int(p[1]), str(p[2]), int(p[3])) for p in ports])
        except Exception as e:  # the rule still forwards; only the hold is lost
            log.warning("cannot hold the published ports of %s again: %s", cid[:12], e)
