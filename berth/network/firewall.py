"""iptables rules in Berth's own chains, rewritten whole with one ``iptables-restore --noflush``.

Each chain is declared in the batch (which empties it) and refilled from the networks and published
ports berthd knows, so the rules always say exactly what the records say, and a restart (kill -9
included) rewrites them to match. The built-in chains only get one jump each into Berth's chains.
Rules live in the kernel: published ports and masquerade keep working while berthd is down.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

IPTABLES = "/usr/sbin/iptables"
IPTABLES_RESTORE = "/usr/sbin/iptables-restore"
IPTABLES_SAVE = "/usr/sbin/iptables-save"


@dataclass(frozen=True)
class Bridge:
    name: str  # interface
    subnet: str
    internal: bool


@dataclass(frozen=True)
class Forward:
    """A published port: host [ip:]port -> container ip:port."""

    bridge: str
    proto: str
    host_ip: str
    host_port: int
    address: str
    container_port: int


class FirewallError(RuntimeError):
    pass


class Chains:
    """The chain names of one berthd (a tag keeps test daemons' chains apart)."""

    def __init__(self, tag: str = "") -> None:
        base = "BERTH" + (f"-{tag}" if tag else "")
        self.forward = base
        self.iso1 = base + "-ISO1"
        self.iso2 = base + "-ISO2"
        self.post = base + "-POSTROUTING"
        self.dnat = base + "-DNAT"
        self.raw = base + "-LOCALNET"

    def jumps(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule spec) of each jump into Berth's chains."""
        return [
            ("filter", "FORWARD", ["-j", self.forward]),
            ("nat", "POSTROUTING", ["-j", self.post]),
            ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", self.dnat]),
            ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", self.dnat]),
            ("raw", "PREROUTING", ["-j", self.raw]),
        ]


def render(ch: Chains, bridges: Iterable[Bridge], forwards: Iterable[Forward], missing_jumps: bool) -> str:
    bridges = list(bridges)
    forwards = list(forwards)
    f = ["*filter", f":{ch.forward} - [0:0]", f":{ch.iso1} - [0:0]", f":{ch.iso2} - [0:0]"]
    n = ["*nat", f":{ch.post} - [0:0]", f":{ch.dnat} - [0:0]"]
    r = ["*raw", f":{ch.raw} - [0:0]"]
    if missing_jumps:
        tables = {"filter": f, "nat": n, "raw": r}
        for table, chain, spec in ch.jumps():
            tables[table].append(" ".join(["-I", chain, "1", *spec]))
    # route_localnet on the bridges (a port published on 127.0.0.1 must answer the host) would let
    # a container, or a neighbour through a DNAT that runs before routing, use 127.0.0.0/8: such
    # packets come only from lo, so anything else is dropped before conntrack or NAT see it
    r.append(f"-A {ch.raw} -d 127.0.0.0/8 ! -i lo -j DROP")
    f.append(f"-A {ch.forward} -j {ch.iso1}")
    for b in bridges:
        if b.internal:  # no way out, no way in: only container to container on this bridge
            f.append(f"-A {ch.forward} -i {b.name} ! -o {b.name} -j DROP")
            f.append(f"-A {ch.forward} -o {b.name} ! -i {b.name} -j DROP")
        f.append(f"-A {ch.forward} -o {b.name} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        for p in forwards:
            if p.bridge == b.name:
                f.append(f"-A {ch.forward} -d {p.address}/32 ! -i {b.name} -o {b.name} -p {p.proto} "
                         f"-m {p.proto} --dport {p.container_port} -j ACCEPT")
        if not b.internal:
            f.append(f"-A {ch.forward} -i {b.name} ! -o {b.name} -j ACCEPT")
        f.append(f"-A {ch.forward} -i {b.name} -o {b.name} -j ACCEPT")
        f.append(f"-A {ch.iso1} -i {b.name} ! -o {b.name} -j {ch.iso2}")
        f.append(f"-A {ch.iso2} -o {b.name} -j DROP")
        if not b.internal:
            n.append(f"-A {ch.post} -s {b.subnet} ! -o {b.name} -j MASQUERADE")
        # a published port reached from the host itself (127.0.0.1 included) or from a container on
        # the same bridge: the answer must come back the way the request went
        n.append(f"-A {ch.post} -o {b.name} -m addrtype --src-type LOCAL -j MASQUERADE")
        n.append(f"-A {ch.post} -s {b.subnet} -o {b.name} -m conntrack --ctstate DNAT -j MASQUERADE")
    f.append(f"-A {ch.iso1} -j RETURN")
    f.append(f"-A {ch.iso2} -j RETURN")
    for p in forwards:
        dst = f"-d {p.host_ip}/32 " if p.host_ip else ""
        n.append(f"-A {ch.dnat} {dst}-p {p.proto} -m {p.proto} --dport {p.host_port} "
                 f"-j DNAT --to-destination {p.address}:{p.container_port}")
    return "\n".join([*f, "COMMIT", *n, "COMMIT", *r, "COMMIT", ""])


def _run(argv: list[str], stdin: str | None = None) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise FirewallError(f"{' '.join(argv[:2])} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def saved() -> str:
    return _run([IPTABLES_SAVE])


def jumps_missing(ch: Chains, dump: str) -> bool:
    lines = set(dump.splitlines())
    return any(f"-A {chain} {' '.join(spec)}" not in lines for _t, chain, spec in ch.jumps())


def apply(ch: Chains, bridges: Iterable[Bridge], forwards: Iterable[Forward], missing_jumps: bool) -> None:
    """Rewrite Berth's chains (blocking: one iptables-restore)."""
    _run([IPTABLES_RESTORE, "-w", "--noflush"], render(ch, bridges, forwards, missing_jumps))


def remove_all(ch: Chains) -> None:
    """Take out the jumps and Berth's chains (``berthd --network-cleanup``)."""
    dump = saved()
    for table, chain, spec in ch.jumps():
        while f"-A {chain} {' '.join(spec)}" in dump.splitlines():
            _run([IPTABLES, "-w", "-t", table, "-D", chain, *spec])
            dump = saved()
    for table, names in (("filter", (ch.forward, ch.iso1, ch.iso2)), ("nat", (ch.post, ch.dnat)),
                         ("raw", (ch.raw,))):
        for name in names:
            if any(line.startswith(f":{name} ") for line in dump.splitlines()):
                _run([IPTABLES, "-w", "-t", table, "-F", name])
        for name in names:
            if any(line.startswith(f":{name} ") for line in dump.splitlines()):
                _run([IPTABLES, "-w", "-t", table, "-X", name])
