"""What the container lifecycle asks of networking (implemented by berth.network.service).

The lifecycle calls these at create (plan), start (attach), exit (detach) and removal (forget), and
reads inspect/list/stats figures through them; it never sees bridges, addresses or rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Sandbox:
    """Where a starting container's network namespace comes from."""

    path: str | None = ""  # a namespace file to join; "" for a new empty one; None for the host's
    addresses: list[str] = field(default_factory=list)  # for /etc/hosts
    embedded_dns: bool = False  # on a user-defined network: resolv.conf names 127.0.0.11


class ContainerNetworking(Protocol):
    def plan(self, cid: str, host_config: dict[str, Any], networking_config: Any,
             exposed: dict[str, Any] | None) -> None: ...
    def forget(self, cid: str) -> None: ...
    async def attach(self, cid: str, name: str, host_config: dict[str, Any],
                     exposed: dict[str, Any] | None) -> Sandbox: ...
    async def detach(self, cid: str) -> None: ...
    def settings(self, cid: str, host_config: dict[str, Any], exposed: dict[str, Any] | None,
                 running: bool) -> dict[str, Any]: ...
    def summary(self, cid: str, host_config: dict[str, Any], exposed: dict[str, Any] | None,
                running: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...
    def network_ids(self, cid: str, host_config: dict[str, Any]) -> set[str]: ...
    def counters(self, cid: str) -> dict[str, Any] | None: ...
    async def restore(self, running: set[str]) -> None: ...
    def host_gateway(self) -> str: ...  # what "host-gateway" in --add-host stands for ("" if unknown)


class NoNetworking:
    """Only none and host, as before networking existed (a ContainerService built without one)."""

    def plan(self, cid: str, host_config: dict[str, Any], networking_config: Any,
             exposed: dict[str, Any] | None) -> None:
        pass

    def forget(self, cid: str) -> None:
        pass

    async def attach(self, cid: str, name: str, host_config: dict[str, Any],
                     exposed: dict[str, Any] | None) -> Sandbox:
        return Sandbox(path=None if host_config.get("NetworkMode") == "host" else "")

    async def detach(self, cid: str) -> None:
        pass

    def settings(self, cid: str, host_config: dict[str, Any], exposed: dict[str, Any] | None,
                 running: bool) -> dict[str, Any]:
        return {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}}

    def summary(self, cid: str, host_config: dict[str, Any], exposed: dict[str, Any] | None,
                running: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return [], {}

    def network_ids(self, cid: str, host_config: dict[str, Any]) -> set[str]:
        return set()

    def counters(self, cid: str) -> dict[str, Any] | None:
        return None

    async def restore(self, running: set[str]) -> None:
        pass

    def host_gateway(self) -> str:
        return ""
