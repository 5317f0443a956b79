"""Published ports: HostConfig.PortBindings / PublishAllPorts checked at create, host ports held while
a container runs.

berthd holds each published host port with a bound, non-listening socket (as docker-proxy would hold
it, without proxying): a port another program has is a clear error before anything is configured,
and nobody can take a port while it is published. Traffic itself goes through DNAT rules
(berth.network.firewall), which keep working while berthd is down. A random host port is the one the
kernel picks from its ephemeral range when binding port 0.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from berth.errors import Conflict, InvalidParameter

PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Binding:
    proto: str
    container_port: int
    host_ip: str  # "" for every address
    host_port: int  # 0 until chosen
    host_port_end: int = 0  # a "8000-8010" host range asks for one free port of it

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def _port(raw: str, what: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) <= 65535:
        raise InvalidParameter(f"invalid {what}: {raw!r}: must be a port number between 1 and 65535")
    return int(raw)


def parse_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidParameter(f"HostConfig.PortBindings: invalid proto '{proto}' in '{key}'")
    return _port(port, "containerPort"), proto


def bindings_of(host_config: dict[str, Any], exposed: dict[str, Any] | None) -> list[Binding]:
    """The bindings a start asks for (PortBindings, plus every exposed port with -P). 400 on bad input."""
    pb = host_config.get("PortBindings") or {}
    if not isinstance(pb, dict):
        raise InvalidParameter("HostConfig.PortBindings: must be an object")
    out: list[Binding] = []
    for key, entries in pb.items():
        cport, proto = parse_key(key)
        if entries is None:
            entries = [{}]
        if not isinstance(entries, list):
            raise InvalidParameter(f"HostConfig.PortBindings: {key}: must be a list")
        for e in entries or [{}]:
            if not isinstance(e, dict):
                raise InvalidParameter(f"HostConfig.PortBindings: {key}: each binding must be an object")
            host_ip = str(e.get("HostIp") or "")
            if host_ip:
                try:
                    socket.inet_pton(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, host_ip)
                except OSError as err:
                    raise InvalidParameter(f"HostConfig.PortBindings: invalid HostIp {host_ip!r}") from err
            raw = str(e.get("HostPort") or "")
            lo, _, hi = raw.partition("-")
            start = _port(lo, "hostPort") if lo else 0
            end = _port(hi, "hostPort") if hi else 0
            if end and end < start:
                raise InvalidParameter(f"invalid hostPort range: {raw}")
            out.append(Binding(proto, cport, "" if host_ip in ("0.0.0.0", "::") else host_ip, start, end))
    if host_config.get("PublishAllPorts"):
        taken = {b.key for b in out}
        for key in exposed or {}:
            cport, proto = parse_key(key)
            if f"{cport}/{proto}" not in taken:
                out.append(Binding(proto, cport, "", 0))
    return out


def validate_exposed(exposed: Any) -> None:
    if exposed is None:
        return
    if not isinstance(exposed, dict):
        raise InvalidParameter("Config.ExposedPorts: must be an object")
    for key in exposed:
        parse_key(key)


class Holds:
    """The host ports berthd holds, per container."""

    def __init__(self) -> None:
        self._held: dict[str, list[socket.socket]] = {}

    def acquire(self, container_id: str, wanted: list[Binding]) -> list[Binding]:
        """Bind every host port (choosing the random ones); all or none. Conflict when taken."""
        socks: list[socket.socket] = []
        chosen: list[Binding] = []
        try:
            for b in wanted:
                if b.host_ip and ":" in b.host_ip:
                    continue  # IPv6 host addresses: no IPv6 networking in this engine
                s, port = self._bind(b)
                if s is not None:
                    socks.append(s)
                chosen.append(Binding(b.proto, b.container_port, b.host_ip, port))
        except BaseException:
            for s in socks:
                s.close()
            raise
        self._held.setdefault(container_id, []).extend(socks)
        return chosen

    @staticmethod
    def _bind(b: Binding) -> tuple[socket.socket | None, int]:
        if b.proto == "sctp":
            if not b.host_port:
                raise InvalidParameter("a random host port cannot be chosen for sctp: give one")
            return None, b.host_port
        kind = socket.SOCK_STREAM if b.proto == "tcp" else socket.SOCK_DGRAM
        candidates = range(b.host_port, (b.host_port_end or b.host_port) + 1) if b.host_port else [0]
        last: OSError | None = None
        for port in candidates:
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((b.host_ip or "0.0.0.0", port))
                return s, s.getsockname()[1]
            except OSError as e:
                s.close()
                last = e
        addr = f"{b.host_ip or '0.0.0.0'}:{b.host_port}"
        if last is not None and last.errno == errno.EADDRINUSE:
            raise Conflict(f"driver failed programming external connectivity: Bind for {addr} failed: "
                           "port is already allocated")
        if last is not None and last.errno == errno.EADDRNOTAVAIL:
            raise InvalidParameter(f"driver failed programming external connectivity: listen {b.proto} {addr}: "
                                   "bind: cannot assign requested address")
        raise InvalidParameter(f"driver failed programming external connectivity: {addr}: {last}")

    def release(self, container_id: str) -> None:
        for s in self._held.pop(container_id, []):
            s.close()

    def close(self) -> None:
        for cid in list(self._held):
            self.release(cid)
