"""The API's exec backend over today's ContainerService: exec requests by exec ID, as the API asks.

Interim: once exec is a service of its own with this interface (``create``, ``get``, ``start``,
``resize`` by ID), that service is the backend and this module goes.
"""

from __future__ import annotations

from typing import Any, Protocol

from berth.containers.execs import ExecSession
from berth.runtime.interface import ExecProcess


class _Sessions(Protocol):
    def get(self, eid: str) -> ExecSession: ...
    def resize(self, s: ExecSession, h: int, w: int) -> None: ...


class _Containers(Protocol):
    @property
    def execs(self) -> _Sessions: ...
    def exec_create(self, name: str, body: dict[str, Any]) -> ExecSession: ...
    async def exec_start(self, eid: str, detach: bool) -> ExecProcess: ...


class ExecByID:
    def __init__(self, containers: _Containers) -> None:
        self.containers = containers

    def create(self, name: str, body: dict[str, Any]) -> ExecSession:
        return self.containers.exec_create(name, body)

    def get(self, eid: str) -> ExecSession:
        return self.containers.execs.get(eid)

    async def start(self, eid: str, detach: bool) -> ExecProcess:
        return await self.containers.exec_start(eid, detach)

    def resize(self, eid: str, h: int, w: int) -> None:
        sessions = self.containers.execs
        sessions.resize(sessions.get(eid), h, w)
