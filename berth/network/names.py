"""Names on user-defined networks, as the embedded DNS server (berth/network/dns.py) answers them:
containers' names, network aliases and short IDs, also as ``name.network``; only containers that
are running (holding an address) on a user-defined network the asking container is on."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from berth.network.store import Endpoint, Network, NetworkStore


class Names:
    def __init__(self, store: NetworkStore, networks: Mapping[str, Network],
                 name_of: Callable[[str], str | None]) -> None:
        self.store = store
        self.networks = networks
        self.name_of = name_of

    def _names(self, cid: str, ep: Endpoint) -> set[str]:
        name = self.name_of(cid)
        names = {cid[:12], *(a.lower() for a in ep.config.get("Aliases") or [])}
        if name:
            names.add(name.lower())
        return names

    def _peers(self, cid: str) -> list[tuple[Network, Endpoint]]:
        """Endpoints with an address on the user-defined networks ``cid`` is on."""
        out = []
        for mine in self.store.endpoints(cid):
            n = self.networks.get(mine.network_id)
            if n is None or n.predefined:
                continue
            out += [(n, ep) for ep in self.store.endpoints(network_id=n.id) if ep.address]
        return out

    def resolve(self, cid: str, name: str) -> list[str]:
        """The addresses ``name`` has for container ``cid``."""
        name = name.rstrip(".").lower()
        out: list[str] = []
        for n, ep in self._peers(cid):
            names = self._names(ep.container_id, ep)
            qualified = name.endswith("." + n.name.lower()) and name[:-len(n.name) - 1] in names
            if (name in names or qualified) and ep.address not in out:
                out.append(str(ep.address))
        return out

    def reverse(self, cid: str, ip: str) -> str | None:
        """``name.network`` of the container holding ``ip`` on one of ``cid``'s user-defined networks."""
        for n, ep in self._peers(cid):
            if ep.address == ip:
                return f"{self.name_of(ep.container_id) or ep.container_id[:12]}.{n.name}"
        return None


def host_resolvers() -> list[str]:
    """The host's nameservers, which the embedded DNS server forwards other names to (from berthd's
    namespace, so a loopback resolver of the host works too)."""
    try:
        with open("/etc/resolv.conf") as f:
            return [ln.split()[1] for ln in f if ln.startswith("nameserver") and len(ln.split()) > 1]
    except OSError:
        return []
