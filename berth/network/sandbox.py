"""A container's network namespace: made at start with every endpoint plugged in, torn down at exit.

Making a namespace and a veth pair, and putting its host end on a bridge, costs milliseconds of kernel
work (more while other namespaces are being torn down, which holds the same lock), so a few are made
ahead of time: a pooled sandbox is a namespace with lo up and a down ``eth0`` whose host end (named
``vpl…``) is already up on the default bridge; with its peer down, the bridge sends it nothing. A start
takes one, moves its namespace file to the container's sandbox key and sets eth0's MAC, address and
route (a few ioctls): about a millisecond. The pool is refilled in the background.

The order makes a failure leave nothing: addresses and host ports are taken first (records and
sockets, undone on error), then the namespace is set up (a namespace that goes away takes its veths
with it).
"""

from __future__ import annotations

import asyncio
import contextlib
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
POOL_PREFIX = "vpl"  # host ends of sandboxes made ahead


@dataclass
class Plugged:
    endpoint: Endpoint
    network: Network
    plug: links.Plug


@dataclass
class Prepared:
    path: str  # the pool's namespace file
    host_ifname: str
    bridge: str | None  # the bridge its host end is on already


class Sandboxes:
    def __init__(self, store: NetworkStore, netlink: links.Netlink, holds: Holds, netns_dir: str,
                 pool_size: int, mtu: int) -> None:
        self.store = store
        self.netlink = netlink
        self.holds = holds
        self.dir = netns_dir
        self.pool_dir = os.path.join(netns_dir, "pool")
        self.pool_size = pool_size
        self.mtu = mtu
        self._pool: list[Prepared] = []
        self._filling: asyncio.Task[None] | None = None
        self.pool_bridge: str | None = None  # the default bridge, once it is up

    def key(self, cid: str) -> str:
        return os.path.join(self.dir, cid[:12])

    def path(self, cid: str) -> str | None:
        """The container's namespace file (its SandboxKey) while it runs (also when a disconnect took
        its last endpoint: the namespace stays until it stops)."""
        key = self.key(cid)
        return key if netns.is_bound(key) else None

    # -- the pool ----------------------------------------------------------------------------------------
    def _prepare(self) -> Prepared:
        """Blocking: a namespace with lo up and a down eth0 whose host end is up on the default bridge."""
        path = os.path.join(self.pool_dir, secrets.token_hex(6))
        host = POOL_PREFIX + secrets.token_hex(6)
        bridge = self.pool_bridge
        self.netlink.make_namespace(path)
        try:
            self.netlink.run_sync(self.netlink.add_veth_into, host, path, "eth0", self.mtu)
            if bridge is not None:
                self.netlink.run_sync(self.netlink.bridge_host_end, host, bridge)
        except BaseException:
            netns.remove(path)  # the veth pair goes with its namespace
            raise
        return Prepared(path, host, bridge)

    def refill(self) -> None:
        if self._filling is None or self._filling.done():
            self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while len(self._pool) < self.pool_size:
            try:
                self._pool.append(await asyncio.to_thread(self._prepare))
            except OSError as e:
                log.warning("preparing a network sandbox: %s", e)
                return

    async def drain(self) -> None:
        """Take the pool away (shutdown, clean-up): the namespaces go, and their veths with them."""
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._filling
        self._pool.clear()
        await asyncio.to_thread(self.clear_pool_dir)

    def clear_pool_dir(self) -> None:
        os.makedirs(self.pool_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.pool_dir):
            netns.remove(os.path.join(self.pool_dir, name))

    def _take(self, cid: str, pooled: Prepared | None) -> Prepared:
        """Blocking: a prepared sandbox (pooled, or made now), its namespace file moved to a sandbox key."""
        prepared = pooled or self._prepare()
        key = self.key(cid)
        try:
            netns.move(prepared.path, key)
        except BaseException:
            netns.remove(prepared.path)
            raise
        return Prepared(key, prepared.host_ifname, prepared.bridge)

    # -- a start, an exit ------------------------------------------------------------------------------
    def _plug(self, n: Network, ep: Endpoint, address: str, ifname: str, primary: bool) -> links.Plug:
        mac = str(ep.config.get("MacAddress") or "") or links.mac_of(address)
        return links.Plug(ifname=ifname, host_ifname=POOL_PREFIX + secrets.token_hex(6), address=address,
                          prefixlen=n.net.prefixlen, gateway=n.gateway, mac=mac, mtu=n.mtu,
                          default_route=primary, bridge=n.bridge)

    async def make(self, cid: str, eps: list[tuple[Endpoint, Network]], bindings: list[Binding]) -> list[Plugged]:
        """Everything for a start; all or nothing. ``eps[0]`` is the primary endpoint (default route,
        published ports)."""
        plugged: list[Plugged] = []
        key = self.key(cid)
        if os.path.lexists(key):  # a leftover of a crash before this start
            await asyncio.to_thread(netns.remove, key)
        t0 = time.perf_counter()
        try:
            chosen = self.holds.acquire(cid, bindings) if bindings and eps else []
            for i, (ep, n) in enumerate(eps):
                address = self.store.allocate(n, cid, (ep.config.get("IPAMConfig") or {}).get("IPv4Address"))
                plugged.append(Plugged(ep, n, self._plug(n, ep, address, f"eth{i}", i == 0)))
            t1 = time.perf_counter()
            pooled = eps[0][1].mtu == self.mtu
            prepared = await asyncio.to_thread(self._take, cid, self._pool.pop() if self._pool else None) \
                if pooled else None
            if prepared is None:
                await asyncio.to_thread(self.netlink.make_namespace, key)
            t2 = time.perf_counter()
            for i, p in enumerate(plugged):
                if i == 0 and prepared is not None:
                    p.plug.host_ifname = prepared.host_ifname
                    if prepared.bridge != p.plug.bridge:
                        await self.netlink.run(self.netlink.bridge_host_end, p.plug.host_ifname, p.plug.bridge)
                else:
                    await self._new_veth(key, p.plug)
                await asyncio.to_thread(self.netlink.configure_inside, key, p.plug)
            t3 = time.perf_counter()
            for i, p in enumerate(plugged):
                live: dict[str, Any] = {"EndpointID": secrets.token_hex(32), "MacAddress": p.plug.mac,
                                        "host_ifname": p.plug.host_ifname, "ifname": p.plug.ifname,
                                        "SandboxKey": key}
                if i == 0 and chosen:
                    live["Ports"] = [[b.proto, b.container_port, b.host_ip, b.host_port] for b in chosen]
                self.store.set_live(cid, p.network.id, live)
            log.debug("sandbox %s: addresses+ports %.1f ms, namespace %.1f ms (%s), veths+settings %.1f ms, "
                      "record %.1f ms", cid[:12], (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                      "pooled" if prepared is not None else "made", (t3 - t2) * 1e3, (time.perf_counter() - t3) * 1e3)
        except BaseException:
            self.holds.release(cid)
            self.store.release(cid)
            await asyncio.to_thread(netns.remove, key)
            raise
        finally:
            if self.pool_size:
                self.refill()
        return plugged

    async def _new_veth(self, key: str, plug: links.Plug) -> None:
        await self.netlink.run(self.netlink.add_veth_into, plug.host_ifname, key, plug.ifname, plug.mtu)
        try:
            await self.netlink.run(self.netlink.bridge_host_end, plug.host_ifname, plug.bridge)
        except BaseException:
            await self.netlink.run(self.netlink.delete_link, plug.host_ifname)
            raise

    async def remove(self, cid: str) -> None:
        """At exit: the namespace file goes (the kernel then frees the namespace and its veths), the
        host ports and addresses are released."""
        self.holds.release(cid)
        key = self.key(cid)
        if os.path.lexists(key):  # none, host, container:<id>: no namespace file of ours, no thread hop
            await asyncio.to_thread(netns.remove, key)
        self.store.release(cid)

    async def plug_one(self, cid: str, ep: Endpoint, n: Network, index: int) -> None:
        """Hot-plug: one more interface into a running container's namespace."""
        key = self.path(cid)
        if key is None:
            raise OSError(f"container {cid[:12]} has no network namespace of its own")
        address = self.store.allocate(n, cid, (ep.config.get("IPAMConfig") or {}).get("IPv4Address"))
        plug = self._plug(n, ep, address, f"eth{index}", False)
        try:
            await self._new_veth(key, plug)
            await asyncio.to_thread(self.netlink.configure_inside, key, plug)
        except BaseException:
            await self.netlink.run(self.netlink.delete_link, plug.host_ifname)
            self.store.release(cid, n.id)
            raise
        self.store.set_live(cid, n.id, {"EndpointID": secrets.token_hex(32), "MacAddress": plug.mac,
                                        "host_ifname": plug.host_ifname, "ifname": plug.ifname, "SandboxKey": key})

    async def unplug_one(self, cid: str, ep: Endpoint) -> None:
        """Disconnect: deleting the host end takes the pair, the container's end included."""
        if ep.live:
            await self.netlink.run(self.netlink.delete_link, str(ep.live["host_ifname"]))
        self.store.release(cid, ep.network_id)

    def reacquire(self, cid: str, ports: list[list[Any]]) -> None:
        """After a berthd restart: hold the running container's host ports again."""
        try:
            self.holds.acquire(cid, [Binding(str(p[0]), int(p[1]), str(p[2]), int(p[3])) for p in ports])
        except Exception as e:  # the rule still forwards; only the hold is lost
            log.warning("cannot hold the published ports of %s again: %s", cid[:12], e)
