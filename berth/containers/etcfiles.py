"""The per-container /etc files berthd writes and binds in: hostname, hosts, resolv.conf.

What goes in them is Docker's behaviour, computed by berth.network.etcfiles (pure functions); this module
reads the host's files and writes the container's. At create the files suit a container without addresses
(none, host, or a bridge one not yet started); at a start on a network the hosts file gets the container's
addresses and, on a user-defined network, resolv.conf names the embedded DNS server.
"""

from __future__ import annotations

from typing import Any

from berth.containers.store import Container
from berth.errors import InvalidParameter
from berth.fsutil import write_file
from berth.network import etcfiles as docker_files

HOST_HOSTS = "/etc/hosts"
HOST_RESOLV_CONF = "/etc/resolv.conf"
_MAX_HOST_FILE = 1 << 20


def _read_host(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(_MAX_HOST_FILE)
    except OSError:
        return None


def _mode(c: Container) -> str:
    return str(c.host_config.get("NetworkMode") or "default")


def validate(host_config: dict[str, Any]) -> None:
    """A 400 in Docker's words for a bad --add-host or --dns, before anything is made."""
    for spec in host_config.get("ExtraHosts") or []:
        try:
            docker_files.parse_extra_host(str(spec))
        except docker_files.ExtraHostError as e:
            raise InvalidParameter(str(e)) from None
    for server in host_config.get("Dns") or []:
        if not docker_files.embedded_upstreams(host_text="", dns=[str(server)]):
            raise InvalidParameter(f"IP address is not correctly formatted: {server}")


def _hosts(c: Container, addresses: list[str], host_gateway: str) -> str:
    mode = _mode(c)
    try:
        return docker_files.hosts_file(
            hostname=str(c.config["Hostname"]), domainname=str(c.config.get("Domainname") or ""),
            addresses=addresses, aliases=[], extra_hosts=[str(e) for e in c.host_config.get("ExtraHosts") or []],
            host_gateway=host_gateway, network_mode=mode if mode in ("host", "none") else "bridge",
            host_hosts_text=_read_host(HOST_HOSTS) if mode == "host" else None)
    except docker_files.ExtraHostError as e:
        raise InvalidParameter(str(e)) from None


def _resolv(c: Container, embedded: bool) -> str:
    hc = c.host_config
    return docker_files.resolv_conf(
        host_text=_read_host(HOST_RESOLV_CONF) or "", dns=[str(d) for d in hc.get("Dns") or []],
        dns_search=[str(s) for s in hc.get("DnsSearch") or []],
        dns_options=[str(o) for o in hc.get("DnsOptions") or []], embedded=embedded,
        host_network=_mode(c) == "host")


def write(c: Container, host_gateway: str = "") -> None:
    """Write the container's hostname, hosts and resolv.conf (at create). ``host_gateway``: the address
    "host-gateway" in --add-host stands for (the default bridge's gateway, as Docker)."""
    write_file(c.hostname_path, (str(c.config["Hostname"]) + "\n").encode())
    write_file(c.hosts_path, _hosts(c, [], host_gateway).encode())
    write_file(c.resolv_conf_path, _resolv(c, embedded=False).encode())


def write_hosts(c: Container, addresses: list[str], host_gateway: str = "") -> None:
    """At a start on a network: the container's own name at its addresses, as Docker writes it."""
    write_file(c.hosts_path, _hosts(c, addresses, host_gateway).encode())


def write_resolv(c: Container, embedded_dns: bool) -> None:
    """At a start: the embedded DNS server (user-defined networks) or the host's resolvers."""
    if not embedded_dns:
        return  # written at create
    write_file(c.resolv_conf_path, _resolv(c, embedded=True).encode())


def binds(c: Container) -> dict[str, str]:
    """Path in the container -> file on the host, for the runtime spec."""
    return {"/etc/hostname": c.hostname_path, "/etc/hosts": c.hosts_path, "/etc/resolv.conf": c.resolv_conf_path}
