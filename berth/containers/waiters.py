"""Who waits on a container's lifecycle: ``docker wait`` and stop (its exit), ``--rm`` clients
(its removal), and attach to a created container (its start, which hands over the stdio)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from berth.containers.store import Container
from berth.errors import InvalidParameter
from berth.runtime.interface import Attachment

CONDITIONS = ("", "not-running", "next-exit", "removed")


def _notify(table: dict[str, list[asyncio.Future[Any]]], cid: str, result: Any = None) -> None:
    for fut in table.pop(cid, []):
        if not fut.done():
            fut.set_result(result)


class Waiters:
    def __init__(self) -> None:
        self._exit: dict[str, list[asyncio.Future[None]]] = {}
        self._remove: dict[str, list[asyncio.Future[None]]] = {}
        self._attach: dict[str, list[asyncio.Future[Attachment | None]]] = {}

    def _future(self, table: dict[str, list[asyncio.Future[Any]]], cid: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        table.setdefault(cid, []).append(fut)
        return fut

    # -- what the lifecycle reports ------------------------------------------------------------
    def exited(self, cid: str) -> None:
        """The container stopped running (or a start failed)."""
        _notify(self._exit, cid)

    def removed(self, cid: str) -> None:
        _notify(self._exit, cid)
        _notify(self._remove, cid)

    def removal_failed(self, cid: str, message: str) -> None:
        """As Docker's removal error: those waiting for the removal get it as the wait's Error."""
        _notify(self._remove, cid, message)

    def started(self, cid: str, attach: Callable[[], Attachment]) -> None:
        """Hand each waiting attach the new container's stdio."""
        for fut in self._attach.pop(cid, []):
            if not fut.done():
                try:
                    fut.set_result(attach())
                except OSError as e:
                    fut.set_exception(e)

    def start_failed(self, cid: str) -> None:
        _notify(self._attach, cid, None)

    # -- what callers wait for -----------------------------------------------------------------
    async def wait(self, c: Container, condition: str) -> dict[str, Any]:
        """``docker wait``: the exit code once ``condition`` holds."""
        if condition not in CONDITIONS:
            raise InvalidParameter(f"invalid condition: {condition!r}")
        if condition == "removed":
            failure = await self._future(self._remove, c.id)
            if failure:
                return {"StatusCode": c.state.ExitCode, "Error": {"Message": failure}}
        elif condition == "next-exit" or c.state.running:
            await self._future(self._exit, c.id)
        return {"StatusCode": c.state.ExitCode, "Error": {"Message": c.state.Error} if c.state.Error else None}

    async def exit(self, c: Container, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for a running container to stop; whether it did."""
        if not c.state.running:
            return True
        fut = self._future(self._exit, c.id)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False

    async def start(self, cid: str) -> Attachment | None:
        """The stdio of a created container, once it starts (None when the start fails)."""
        fut: asyncio.Future[Attachment | None] = self._future(self._attach, cid)
        try:
            return await fut
        finally:
            lst = self._attach.get(cid)
            if lst and fut in lst:
                lst.remove(fut)
