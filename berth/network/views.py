"""How networks and a container's network settings look through the API (Docker's shapes)."""

from __future__ import annotations

from typing import Any

from berth.network.store import Endpoint, Network

NONE_ID = "0" * 63 + "1"
HOST_ID = "0" * 63 + "2"
PREDEFINED = {"none": ("null", NONE_ID), "host": ("host", HOST_ID)}


def predefined(name: str) -> dict[str, Any]:
    driver, nid = PREDEFINED[name]
    return {"Name": name, "Id": nid, "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": driver,
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
            "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": {}, "Options": {}, "Labels": {}}


def network(n: Network, containers: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {"Subnet": n.subnet, "Gateway": n.gateway}
    if n.ip_range:
        cfg["IPRange"] = n.ip_range
    options = dict(n.options)
    if n.predefined:
        options.setdefault("com.docker.network.bridge.default_bridge", "true")
        options.setdefault("com.docker.network.bridge.name", n.bridge)
    return {"Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None if n.predefined else {},
                                          "Config": [cfg]},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": options, "Labels": dict(n.labels)}


def container_entry(name: str, ep: Endpoint, n: Network) -> dict[str, Any]:
    live = ep.live or {}
    return {"Name": name, "EndpointID": live.get("EndpointID", ""), "MacAddress": live.get("MacAddress", ""),
            "IPv4Address": f"{ep.address}/{n.net.prefixlen}" if ep.address else "", "IPv6Address": ""}


def endpoint_settings(ep: Endpoint | None, n: Network | None, nid: str, aliases: list[str] | None) -> dict[str, Any]:
    live = (ep.live if ep else None) or {}
    up = bool(ep and ep.address and live and n)
    ipam = (ep.config.get("IPAMConfig") if ep else None) or None
    return {"IPAMConfig": ipam, "Links": None, "Aliases": aliases or None,
            "MacAddress": live.get("MacAddress", "") if up else "", "DriverOpts": None, "NetworkID": nid,
            "EndpointID": live.get("EndpointID", "") if up else "",
            "Gateway": n.gateway if up and n else "", "IPAddress": (ep.address or "") if up and ep else "",
            "IPPrefixLen": n.net.prefixlen if up and n else 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def port_map(exposed: dict[str, Any] | None, ports: list[list[Any]], running: bool) -> dict[str, Any]:
    """NetworkSettings.Ports: each exposed or published port, with its host bindings (null if none)."""
    if not running:
        return {}
    out: dict[str, Any] = {}
    for key in exposed or {}:
        port, _, proto = str(key).partition("/")
        out[f"{port}/{proto or 'tcp'}"] = None
    for proto, cport, host_ip, host_port in ports:
        key = f"{cport}/{proto}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": host_ip or "0.0.0.0", "HostPort": str(host_port)})
    return out


def port_list(exposed: dict[str, Any] | None, ports: list[list[Any]], running: bool) -> list[dict[str, Any]]:
    """The ``Ports`` of ``GET /containers/json``."""
    out: list[dict[str, Any]] = []
    published = set()
    if running:
        for proto, cport, host_ip, host_port in ports:
            published.add(f"{cport}/{proto}")
            out.append({"IP": host_ip or "0.0.0.0", "PrivatePort": int(cport), "PublicPort": int(host_port),
                        "Type": proto})
    for key in exposed or {}:
        port, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if f"{port}/{proto}" not in published and port.isdigit():
            out.append({"PrivatePort": int(port), "Type": proto})
    return out
