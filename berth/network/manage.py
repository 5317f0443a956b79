"""The Networks API's engine side: list, inspect, create, connect, disconnect, remove, prune.

Bad input is refused before anything is made; a create makes its bridge, then its record, and
takes the bridge away again if the record cannot be written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import time
from typing import Any

from berth.errors import Conflict, Forbidden, InvalidParameter, NotFound
from berth.filters import Filters
from berth.images.service import rfc3339
from berth.network import links, views
from berth.network.config import check_in, check_subnet, host_lock, pick_subnet
from berth.network.service import NetworkService
from berth.network.store import Network

JSON = dict[str, Any]
Strings = list[str]  # aliases: ``list`` is a method name below
FilterMap = dict[str, list[str]]
JSONList = list[JSON]
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
MTU_OPT = "com.docker.network.driver.mtu"
BRIDGE_OPT = "com.docker.network.bridge.name"


class Networks:
    def __init__(self, svc: NetworkService) -> None:
        self.svc = svc

    # -- reading ---------------------------------------------------------------------------------------
    def _containers(self, n: Network) -> JSON:
        out: JSON = {}
        d = self.svc.directory
        for ep in self.svc.store.endpoints(network_id=n.id):
            if not ep.live:
                continue
            name = (d.name_of(ep.container_id) if d else None) or ""
            out[ep.container_id] = views.container_entry(name, ep, n)
        return out

    def _all(self) -> list[JSON]:
        out = [views.network(n, self._containers(n)) for n in self.svc.by_id.values()]
        return out + [views.predefined(name) for name in views.PREDEFINED]

    def list(self, filters: FilterMap) -> JSONList:
        f = Filters.of(filters).validate(LIST_FILTERS, patterns=("name", "id"))
        for t in f.vals("type"):
            if t not in ("custom", "builtin"):
                raise InvalidParameter(f"invalid filter: 'type'='{t}'")
        dangling = f.vals("dangling")
        if len(dangling) > 1:
            raise InvalidParameter('got more than one value for filter key "dangling"')
        if dangling and dangling[0] not in ("0", "false", "1", "true"):
            raise InvalidParameter('invalid value for filter \'dangling\', must be "true" (or "1"), or "false" '
                                   '(or "0")')
        want_dangling = dangling[0] in ("1", "true") if dangling else None
        out = []
        for n in self._all():
            builtin = n["Name"] in ("bridge", "none", "host") and (n["Name"] != "bridge" or
                                                                 n["Options"].get("com.docker.network.bridge"
                                                                                  ".default_bridge") == "true")
            if not (f.exact("driver", n["Driver"]) and f.match("name", n["Name"]) and f.match("id", n["Id"])
                    and f.match_kv("label", n["Labels"]) and f.exact("scope", n["Scope"])
                    and f.exact("type", "builtin" if builtin else "custom")):
                continue
            if want_dangling is not None:
                is_dangling = not builtin and not self.svc.store.endpoints(network_id=n["Id"])
                if is_dangling != want_dangling:
                    continue
            n = dict(n)
            n["Containers"] = {}  # as Docker: the list leaves them out
            out.append(n)
        return out

    def inspect(self, ref: str) -> JSON:
        for n in self._all():
            if n["Name"] == ref or n["Id"] == ref:
                return n
        matches = [n for n in self._all() if ref and n["Id"].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    # -- create ----------------------------------------------------------------------------------------
    async def create(self, body: JSON) -> JSON:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: network config must be an object")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("Name: network name is required")
        if not NAME.match(name):
            raise InvalidParameter(f"Name: invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                   "are allowed")
        if name in views.PREDEFINED or any(n.name == name for n in self.svc.by_id.values()):
            raise Conflict(f"network with name {name} already exists")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise NotFound(f'Driver: plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise InvalidParameter("EnableIPv6: IPv6 networking is not supported by this engine")
        for key in ("Internal", "Attachable", "CheckDuplicate"):
            if key in body and body[key] is not None and not isinstance(body[key], bool):
                raise InvalidParameter(f"{key}: must be a boolean")
        labels = body.get("Labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise InvalidParameter("Labels: must be an object of strings")
        options = body.get("Options") or {}
        if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
            raise InvalidParameter("Options: must be an object of strings")
        mtu = self.svc.cfg.mtu
        if options.get(MTU_OPT):
            raw = options[MTU_OPT]
            if not raw.isdigit() or not 68 <= int(raw) <= 65535:
                raise InvalidParameter(f"Options: {MTU_OPT}: invalid MTU {raw!r} (68 to 65535)")
            mtu = int(raw)
        nid = secrets.token_hex(32)
        bridge = options.get(BRIDGE_OPT) or f"br-{nid[:12]}"
        if len(bridge) > 15 or not re.match(r"^[a-zA-Z0-9_.-]+$", bridge):
            raise InvalidParameter(f"Options: {BRIDGE_OPT}: invalid interface name {bridge!r} (at most 15 of "
                                   "[a-zA-Z0-9_.-])")
        if any(n.bridge == bridge for n in self.svc.by_id.values()):
            raise Conflict(f"Options: {BRIDGE_OPT}: bridge {bridge} is already used by another network")
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise InvalidParameter("IPAM: must be an object")
        if ipam.get("Driver") not in (None, "", "default"):
            raise NotFound(f'IPAM.Driver: plugin "{ipam["Driver"]}" not found')
        configs = ipam.get("Config") or []
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise InvalidParameter("IPAM.Config: must be a list of objects")
        if len(configs) > 1:
            raise InvalidParameter("IPAM.Config: only one IPv4 configuration is supported")
        cfg = configs[0] if configs else {}
        n = await asyncio.to_thread(self._make, name, nid, bridge, mtu, cfg, body, labels, options)
        self.svc.by_id[n.id] = n
        try:
            await self.svc.refresh_firewall()
        except BaseException:
            await self._unmake(n)
            raise
        self.svc.publish("network", "create", n.id, {"name": n.name, "type": n.driver})
        return {"Id": n.id, "Warning": ""}

    def _make(self, name: str, nid: str, bridge: str, mtu: int, cfg: JSON, body: JSON, labels: JSON,
              options: JSON) -> Network:
        """Blocking: subnet choice and bridge under the host-wide lock, then the record."""
        with host_lock():
            if bridge in self.svc.netlink.run_sync(self.svc.netlink.link_names):
                raise Conflict(f"Options: {BRIDGE_OPT}: an interface named {bridge} already exists on the host")
            others = [(n.name, n.net) for n in self.svc.by_id.values()]
            routes = [("a host route", r) for r in links.host_routes()]
            for key in cfg:
                if key not in ("Subnet", "Gateway", "IPRange", "AuxiliaryAddresses"):
                    raise InvalidParameter(f"IPAM.Config: unknown field {key}")
            if cfg.get("Subnet"):
                net = check_subnet(str(cfg["Subnet"]), [*others, *routes])
                user = True
            else:
                if cfg.get("Gateway") or cfg.get("IPRange"):
                    raise InvalidParameter("IPAM.Config: Gateway and IPRange need a Subnet")
                net = pick_subnet(self.svc.cfg.pools, [o[1] for o in others + routes])
                user = False
            gw = check_in(str(cfg["Gateway"]), net, "IPAM.Config.Gateway") if cfg.get("Gateway") else str(
                next(net.hosts()))
            ip_range = ""
            if cfg.get("IPRange"):
                try:
                    rng = ipaddress.ip_network(str(cfg["IPRange"]), strict=False)
                except ValueError as e:
                    raise InvalidParameter(f"IPAM.Config.IPRange: invalid range {cfg['IPRange']!r}") from e
                if rng.version != 4 or not ipaddress.IPv4Network(rng).subnet_of(net):
                    raise InvalidParameter(f"IPAM.Config.IPRange: {cfg['IPRange']} is not within subnet {net}")
                ip_range = str(rng)
            n = Network(id=nid, name=name, created=rfc3339(time.time()), subnet=str(net), gateway=gw, bridge=bridge,
                        ip_range=ip_range, internal=bool(body.get("Internal")),
                        attachable=bool(body.get("Attachable")), labels=dict(labels), options=dict(options),
                        mtu=mtu, user_ipam=user)
            self.svc.netlink.run_sync(self.svc.netlink.ensure_bridge, bridge, gw, net.prefixlen, mtu)
            try:
                self.svc.store.add(n)
            except BaseException:
                self.svc.netlink.run_sync(self.svc.netlink.delete_link, bridge)
                raise
        return n

    async def _unmake(self, n: Network) -> None:
        self.svc.by_id.pop(n.id, None)
        self.svc.store.delete(n.id)
        await self.svc.netlink.run(self.svc.netlink.delete_link, n.bridge)

    # -- remove / prune --------------------------------------------------------------------------------
    async def remove(self, ref: str) -> None:
        if ref in views.PREDEFINED or any(v[1] == ref for v in views.PREDEFINED.values()):
            raise Forbidden(f"{ref} is a pre-defined network and cannot be removed")
        n = self.svc.find(ref)
        if n.predefined:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        if self.svc.store.endpoints(network_id=n.id):
            raise Conflict(f"error while removing network: network {n.name} id {n.id} has active endpoints")
        await self._unmake(n)
        await self.svc.refresh_firewall()
        self.svc.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def prune(self, filters: FilterMap) -> JSON:
        f = Filters.of(filters).validate(("label", "label!", "until"))
        until = f.until()
        deleted: Strings = []
        for n in list(self.svc.by_id.values()):
            if n.predefined or self.svc.store.endpoints(network_id=n.id):
                continue
            if until is not None and _created_ts(n) > until:
                continue
            if not f.match_labels(n.labels):
                continue
            await self.remove(n.id)
            deleted.append(n.name)
        return {"NetworksDeleted": deleted}  # [] when none, as dockerd answers (not null)

    # -- connect / disconnect --------------------------------------------------------------------------
    async def connect(self, ref: str, body: JSON) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
            raise InvalidParameter("Container: a container is required")
        n = self.svc.find(ref)
        d = self.svc.directory
        assert d is not None
        cid, name, pid = d.find(body["Container"])
        mode, running = self._container_mode(cid)
        if mode in ("host", "none") or mode.startswith("container:"):
            raise InvalidParameter("container sharing network namespace with another container or host cannot be "
                                   "connected to any other network")
        if any(ep.network_id == n.id for ep in self.svc.store.endpoints(cid)):
            raise Forbidden(f"endpoint with name {name} already exists in network {n.name}")
        cfg = self.svc._endpoint_config(n, body.get("EndpointConfig") or {})
        self.svc.store.join(cid, n.id, cfg)
        if running:
            index = len([ep for ep in self.svc.store.endpoints(cid) if ep.live])
            ep = next(ep for ep in self.svc.store.endpoints(cid) if ep.network_id == n.id)
            try:
                await self.svc.sandboxes.plug_one(cid, ep, n, _free_index(self.svc, cid, index))
            except BaseException:
                self.svc.store.leave(cid, n.id)
                raise
            if not n.predefined and cid not in self.svc.dns.attached():
                # resolv.conf was written at start; names resolve for the ones that ask 127.0.0.11
                await self.svc.serve_dns(cid)
            self.svc.publish("network", "connect", n.id, {"container": cid, "name": n.name, "type": n.driver})

    async def disconnect(self, ref: str, body: JSON) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
            raise InvalidParameter("Container: a container is required")
        n = self.svc.find(ref)
        d = self.svc.directory
        assert d is not None
        try:
            cid, name, _pid = d.find(body["Container"])
        except NotFound:
            if body.get("Force"):  # a container gone: drop what is left of its endpoint
                for ep in self.svc.store.endpoints(network_id=n.id):
                    if ep.container_id.startswith(body["Container"]):
                        self.svc.store.leave(ep.container_id, n.id)
                return
            raise
        found = next((e for e in self.svc.store.endpoints(cid) if e.network_id == n.id), None)
        if found is None:
            raise Forbidden(f"container {cid} is not connected to network {n.name}")
        had_ports = bool((found.live or {}).get("Ports"))
        await self.svc.sandboxes.unplug_one(cid, found)
        self.svc.store.leave(cid, n.id)
        if had_ports:
            await self.svc.refresh_firewall()
        if found.live:
            self.svc.publish("network", "disconnect", n.id, {"container": cid, "name": n.name, "type": n.driver})

    def _container_mode(self, cid: str) -> tuple[str, bool]:
        assert self.svc.directory is not None
        return self.svc.directory.state(cid)


def _free_index(svc: NetworkService, cid: str, start: int) -> int:
    used = {str((ep.live or {}).get("ifname")) for ep in svc.store.endpoints(cid)}
    i = start
    while f"eth{i}" in used:
        i += 1
    return i


def _created_ts(n: Network) -> float:
    from berth.images.service import parse_created

    return float(parse_created(n.created))
