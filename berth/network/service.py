"""Networking for containers: the default bridge, user-defined bridges, endpoints, published ports.

Two faces: the container lifecycle's (plan at create, attach at start, detach at exit, forget at
removal, figures for inspect/ps/stats; berth.containers.networking) and the Networks API's (list,
inspect, create, connect, disconnect, remove, prune; berth.network.manage).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol

from berth.containers.networking import Sandbox
from berth.errors import InvalidParameter, NotFound
from berth.images.service import rfc3339
from berth.network import firewall, links, netns, views
from berth.network.config import NetConfig, check_in, host_lock, parse_bip, pick_subnet
from berth.network.dns import EmbeddedDNS
from berth.network.etcfiles import user_sets_ndots
from berth.network.names import Names, host_resolvers
from berth.network.ports import Holds, bindings_of, validate_exposed
from berth.network.sandbox import Sandboxes
from berth.network.store import Endpoint, Network, NetworkStore

log = logging.getLogger("berth.network")
logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug log is one line per netlink message
JSON = dict[str, Any]


class Directory(Protocol):
    """The containers, as networking needs to know them."""

    def find(self, ref: str) -> tuple[str, str, int]: ...  # (id, name, pid or 0); NotFound otherwise
    def name_of(self, cid: str) -> str | None: ...
    def state(self, cid: str) -> tuple[str, bool]: ...  # (NetworkMode, running)
    def host_config(self, cid: str) -> JSON: ...  # {} for a container that is gone


class NetworkNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"network {ref} not found")


def _mode(host_config: JSON) -> str:
    return str(host_config.get("NetworkMode") or "default")


class NetworkService:
    def __init__(self, conn: sqlite3.Connection, exec_root: str, cfg: NetConfig) -> None:
        self.cfg = cfg
        self.store = NetworkStore(conn)
        self.netlink = links.Netlink()
        self.holds = Holds()
        self.chains = firewall.Chains(cfg.tag)
        self.sandboxes = Sandboxes(self.store, self.netlink, self.holds, os.path.join(exec_root, "netns"),
                                   cfg.pool, cfg.mtu)
        self.directory: Directory | None = None
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None
        self._fw_lock = asyncio.Lock()
        self._jumps_missing = True
        self.by_id: dict[str, Network] = {}
        self.dns = EmbeddedDNS(host_resolvers)
        self.names = Names(self.store, self.by_id, lambda cid: self.directory.name_of(cid) if self.directory else None)

    # -- set-up ----------------------------------------------------------------------------------------
    def _load(self) -> None:
        self.by_id.clear()  # the same dict: Names reads it
        self.by_id.update({n.id: n for n in self.store.networks()})

    def default(self) -> Network | None:
        return next((n for n in self.by_id.values() if n.predefined), None)

    def host_gateway(self) -> str:
        """The address "host-gateway" in --add-host stands for: the default bridge's gateway, as Docker."""
        n = self.default()
        return str(n.gateway) if n is not None and n.gateway else ""

    async def setup(self) -> None:
        """At berthd start: the netns directory, forwarding, the default bridge, every bridge up, and
        the rules rewritten from the records."""
        os.makedirs(self.sandboxes.dir, mode=0o700, exist_ok=True)
        await asyncio.to_thread(self.sandboxes.clear_pool_dir)  # a previous berthd's pool
        if self.cfg.ip_forward:
            links.enable_ip_forward()
        self._load()
        if self.cfg.bridge != "none":
            await asyncio.to_thread(self._ensure_default)
            default = self.default()
            self.sandboxes.pool_bridge = default.bridge if default is not None else None
        for n in list(self.by_id.values()):
            if not n.predefined:
                await self.netlink.run(self.netlink.ensure_bridge, n.bridge, n.gateway, n.net.prefixlen, n.mtu)
        if self.cfg.iptables:
            self._jumps_missing = await asyncio.to_thread(
                lambda: firewall.jumps_missing(self.chains, firewall.saved()))
        await self.refresh_firewall()

    def _ensure_default(self) -> None:
        cur = self.default()
        want_gw, want_net = parse_bip(self.cfg.bip) if self.cfg.bip else (None, None)
        if cur is not None and (cur.bridge != self.cfg.bridge or (want_net is not None and
                                (str(want_net) != cur.subnet or want_gw != cur.gateway))):
            if self.store.endpoints(network_id=cur.id):
                log.warning("the default bridge's settings changed but containers use it: keeping %s on %s",
                            cur.subnet, cur.bridge)
            else:
                self.netlink.run_sync(self.netlink.delete_link, cur.bridge)
                self.store.delete(cur.id)
                cur = None
        with host_lock():
            if cur is None:
                if want_net is None:
                    net = pick_subnet(self.cfg.pools, [*links.host_routes(), *(n.net for n in self.by_id.values())])
                    gw = str(next(net.hosts()))
                else:
                    net, gw = want_net, str(want_gw)
                if self.cfg.fixed_cidr:
                    fixed = ipaddress.IPv4Network(self.cfg.fixed_cidr, strict=False)
                    if not fixed.subnet_of(net):
                        raise ValueError(f"--fixed-cidr {self.cfg.fixed_cidr} is not within {net}")
                cur = Network(id=secrets.token_hex(32), name="bridge", created=rfc3339(time.time()),
                              subnet=str(net), gateway=gw, bridge=self.cfg.bridge, mtu=self.cfg.mtu, predefined=True,
                              ip_range=str(ipaddress.IPv4Network(self.cfg.fixed_cidr, strict=False))
                              if self.cfg.fixed_cidr else "")
                self.store.add(cur)
                self.by_id[cur.id] = cur
            self.netlink.run_sync(self.netlink.ensure_bridge, cur.bridge, cur.gateway, cur.net.prefixlen, cur.mtu)

    async def refresh_firewall(self) -> None:
        """Rewrite Berth's chains from the records (one iptables-restore)."""
        if not self.cfg.iptables:
            return
        async with self._fw_lock:
            bridges = [firewall.Bridge(n.bridge, n.subnet, n.internal) for n in self.by_id.values()]
            forwards = []
            for ep in self.store.endpoints():
                n = self.by_id.get(ep.network_id)
                if n is None or not ep.live or not ep.address:
                    continue
                for proto, cport, host_ip, host_port in ep.live.get("Ports") or []:
                    forwards.append(firewall.Forward(n.bridge, proto, host_ip, host_port, ep.address, cport))
            missing = self._jumps_missing
            await asyncio.to_thread(firewall.apply, self.chains, bridges, forwards, missing)
            self._jumps_missing = False

    async def close(self) -> None:
        await self.dns.close()
        await self.sandboxes.drain()
        self.holds.close()
        await asyncio.to_thread(self.netlink.close)

    # -- lookups ---------------------------------------------------------------------------------------
    def find(self, ref: str) -> Network:
        """By name, full ID, or unique ID prefix (Docker's order). 404 otherwise."""
        for n in self.by_id.values():
            if n.name == ref:
                return n
        if ref in self.by_id:
            return self.by_id[ref]
        matches = [n for n in self.by_id.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NetworkNotFound(ref)

    def _primary(self, host_config: JSON) -> Network | None:
        mode = _mode(host_config)
        if mode in ("none", "host") or mode.startswith("container:"):
            return None
        if mode in ("default", "bridge"):
            return self.default()
        return self.find(mode)

    # -- the container lifecycle (berth.containers.networking.ContainerNetworking) ---------------------
    def plan(self, cid: str, host_config: JSON, networking_config: Any, exposed: JSON | None) -> None:
        """At create: check the modes, networks, static addresses and ports; record the endpoints."""
        mode = _mode(host_config)
        validate_exposed(exposed)
        bindings_of(host_config, exposed)  # a bad port spec is a 400 now, not at start
        if mode.startswith("container:"):
            if self.directory is None:
                raise InvalidParameter("container network mode is not available")
            try:
                self.directory.find(mode.split(":", 1)[1])
            except NotFound as e:  # a 404 here would make the docker CLI try to pull the image
                raise InvalidParameter(f"HostConfig.NetworkMode: {e}") from e
            return
        if mode in ("none", "host"):
            return
        ec = (networking_config or {}).get("EndpointsConfig") if isinstance(networking_config, dict) else None
        if ec is not None and not isinstance(ec, dict):
            raise InvalidParameter("NetworkingConfig.EndpointsConfig: must be an object")
        ec = dict(ec or {})
        if "default" in ec and mode == "default":  # the docker CLI names the default network so
            ec.setdefault("bridge", ec.pop("default"))
        try:
            primary = self._primary(host_config)
            for ref in ec:
                self.find(ref)
        except NetworkNotFound as e:  # 400, not 404: a 404 makes the docker CLI try to pull the image
            raise InvalidParameter(str(e)) from e
        wanted: list[tuple[Network, JSON]] = []
        if primary is not None:
            key = mode if mode in ec else primary.name if primary.name in ec else ""
            wanted.append((primary, ec.pop(key, None) or {}))
        for ref, cfg in ec.items():
            n = self.find(ref)
            if primary is not None and n.id == primary.id:
                continue
            wanted.append((n, cfg or {}))
        checked = [(n, self._endpoint_config(n, c)) for n, c in wanted]
        for n, c in checked:
            self.store.join(cid, n.id, c)

    def _endpoint_config(self, n: Network, cfg: Any) -> JSON:
        if not isinstance(cfg, dict):
            raise InvalidParameter(f"EndpointsConfig.{n.name}: must be an object")
        aliases = cfg.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidParameter(f"EndpointsConfig.{n.name}.Aliases: must be a list of strings")
        ipam = cfg.get("IPAMConfig") or {}
        if not isinstance(ipam, dict):
            raise InvalidParameter(f"EndpointsConfig.{n.name}.IPAMConfig: must be an object")
        out: JSON = {"Aliases": aliases}
        v4 = ipam.get("IPv4Address") or ""
        if v4:
            if not n.user_ipam:
                raise InvalidParameter("user specified IP address is supported only when connecting to networks "
                                       "with user configured subnets")
            out["IPAMConfig"] = {"IPv4Address": check_in(str(v4), n.net, f"EndpointsConfig.{n.name}.IPAMConfig"
                                                                         ".IPv4Address")}
        if ipam.get("IPv6Address"):
            raise InvalidParameter(f"EndpointsConfig.{n.name}.IPAMConfig.IPv6Address: IPv6 is not supported")
        mac = str(cfg.get("MacAddress") or "")
        if mac:
            parts = mac.split(":")
            if len(parts) != 6 or not all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p)
                                          for p in parts) or int(parts[0], 16) & 1:
                raise InvalidParameter(f"EndpointsConfig.{n.name}.MacAddress: invalid MAC address {mac}")
            out["MacAddress"] = mac.lower()
        return out

    def forget(self, cid: str) -> None:
        self.store.leave(cid)

    async def attach(self, cid: str, name: str, host_config: JSON, exposed: JSON | None) -> Sandbox:
        mode = _mode(host_config)
        if mode == "host":
            return Sandbox(path=None)
        if mode == "none":
            return Sandbox(path="")
        if mode.startswith("container:"):
            assert self.directory is not None
            oid, oname, pid = self.directory.find(mode.split(":", 1)[1])
            if pid <= 0:
                raise InvalidParameter(f"cannot join network of a non running container: {oname}")
            return Sandbox(path=f"/proc/{pid}/ns/net")
        eps = self._endpoints_of(cid, host_config)
        if not eps:
            return Sandbox(path="")
        bindings = bindings_of(host_config, exposed)
        plugged = await self.sandboxes.make(cid, eps, bindings)
        if bindings:
            try:
                await self.refresh_firewall()
            except BaseException:
                await self.detach(cid)
                raise
        embedded = any(not p.network.predefined for p in plugged)
        if embedded:
            try:
                await self.serve_dns(cid, host_config)
            except BaseException:
                await self.detach(cid)
                raise
        for p in plugged:
            self.publish("network", "connect", p.network.id,
                         {"container": cid, "name": p.network.name, "type": p.network.driver})
        return Sandbox(path=self.sandboxes.path(cid), addresses=[p.plug.address for p in plugged],
                       embedded_dns=embedded)

    # -- names (the embedded DNS server of user-defined networks) --------------------------------------
    async def serve_dns(self, cid: str, host_config: JSON | None = None) -> None:
        """Serve the container's names; its --dns servers and ndots option come from its host config (looked
        up when not given: after a connect or a berthd restart)."""
        path = self.sandboxes.path(cid)
        if path is None:
            return
        hc = host_config if host_config is not None else \
            (self.directory.host_config(cid) if self.directory is not None else {})
        await self.dns.attach(cid, path, lambda name: self.names.resolve(cid, name),
                              reverse=lambda ip: self.names.reverse(cid, ip),
                              ndots_set=user_sets_ndots([str(o) for o in hc.get("DnsOptions") or []]),
                              dns_servers=[str(d) for d in hc.get("Dns") or []])

    def _endpoints_of(self, cid: str, host_config: JSON) -> list[tuple[Endpoint, Network]]:
        """The container's endpoints, the primary (NetworkMode's) first."""
        primary = None
        try:
            primary = self._primary(host_config)
        except NotFound:
            pass
        out = [(ep, self.by_id[ep.network_id]) for ep in self.store.endpoints(cid) if ep.network_id in self.by_id]
        out.sort(key=lambda e: 0 if primary is not None and e[1].id == primary.id else 1)
        return out

    async def detach(self, cid: str) -> None:
        eps = self.store.endpoints(cid)
        had_ports = any((ep.live or {}).get("Ports") for ep in eps)
        live = [ep for ep in eps if ep.live]
        await self.dns.detach(cid)
        await self.sandboxes.remove(cid)
        if had_ports:
            await self.refresh_firewall()
        for ep in live:
            n = self.by_id.get(ep.network_id)
            if n is not None:
                self.publish("network", "disconnect", n.id, {"container": cid, "name": n.name, "type": n.driver})

    def network_ids(self, cid: str, host_config: JSON) -> set[str]:
        mode = _mode(host_config)
        if mode in ("none", "host"):
            return {views.PREDEFINED[mode][1], mode}
        out = set()
        for ep in self.store.endpoints(cid):
            n = self.by_id.get(ep.network_id)
            if n is not None:
                out |= {n.id, n.name}
        return out

    def _ports(self, cid: str) -> list[list[Any]]:
        for ep in self.store.endpoints(cid):
            if ep.live and ep.live.get("Ports"):
                return list(ep.live["Ports"])
        return []

    def settings(self, cid: str, host_config: JSON, exposed: JSON | None, running: bool) -> JSON:
        """NetworkSettings of container inspect."""
        mode = _mode(host_config)
        networks: JSON = {}
        if mode in ("none", "host"):
            networks[mode] = views.endpoint_settings(None, None, views.PREDEFINED[mode][1], None)
        for ep in self.store.endpoints(cid):
            n = self.by_id.get(ep.network_id)
            if n is None:
                continue
            aliases = list(ep.config.get("Aliases") or [])
            if not n.predefined:
                aliases.append(cid[:12])
            networks[n.name] = views.endpoint_settings(ep if running else None, n, n.id, aliases if not n.predefined
                                                       else None)
        sandboxed = running and not mode.startswith("container:") and mode != "host"
        key = self.sandboxes.path(cid) if sandboxed else None
        out: JSON = {"Bridge": "", "SandboxID": cid if sandboxed else "", "SandboxKey": key or "",
                     "Ports": views.port_map(exposed, self._ports(cid), running) if mode != "host" else {},
                     "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                     "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None}
        default = self.default()
        top = networks.get("bridge") if default is not None else None
        for key in ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                    "IPv6Gateway", "MacAddress"):
            out[key] = top[key] if top else ("" if key not in ("GlobalIPv6PrefixLen", "IPPrefixLen") else 0)
        out["Networks"] = networks
        return out

    def summary(self, cid: str, host_config: JSON, exposed: JSON | None,
                running: bool) -> tuple[list[JSON], JSON]:
        s = self.settings(cid, host_config, exposed, running)
        return views.port_list(exposed, self._ports(cid), running), s["Networks"]

    def counters(self, cid: str) -> JSON | None:
        out: JSON = {}
        for ep in self.store.endpoints(cid):
            if not ep.live:
                continue
            host = str(ep.live["host_ifname"])
            stats = {}
            for ours, theirs in (("rx", "tx"), ("tx", "rx")):
                for what in ("bytes", "packets", "errors", "dropped"):
                    try:
                        with open(f"/sys/class/net/{host}/statistics/{theirs}_{what}") as f:
                            stats[f"{ours}_{what}"] = int(f.read())
                    except (OSError, ValueError):
                        stats[f"{ours}_{what}"] = 0
            out[str(ep.live["ifname"])] = stats
        return out or None

    async def restore(self, running: set[str]) -> None:
        """After a berthd restart: running containers keep their endpoints (and get their host ports
        held again); everything of a container that is gone or stopped is released."""
        kept = {os.path.basename(self.sandboxes.key(cid)) for cid in running if self.sandboxes.path(cid)}
        for cid in {ep.container_id for ep in self.store.endpoints() if ep.live or ep.address}:
            if cid in running and self.sandboxes.path(cid) is not None:
                ports = self._ports(cid)
                if ports:
                    self.sandboxes.reacquire(cid, ports)
                if any(not self.by_id[ep.network_id].predefined for ep in self.store.endpoints(cid)
                       if ep.live and ep.network_id in self.by_id):
                    try:
                        await self.serve_dns(cid)
                    except OSError as e:
                        log.warning("embedded DNS for %s: %s", cid[:12], e)
            else:
                await self.sandboxes.remove(cid)
        for name in sorted(os.listdir(self.sandboxes.dir)):
            if name not in kept and name != "pool":
                await asyncio.to_thread(netns.remove, os.path.join(self.sandboxes.dir, name))
        await self.refresh_firewall()
        if self.cfg.pool:
            self.sandboxes.refill()

