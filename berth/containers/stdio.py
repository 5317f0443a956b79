"""A container's stdio as the API reaches it: attach (waiting for a created container to start),
resize of its terminal, and the settle after a stream ends."""

from __future__ import annotations

from collections.abc import Callable

from berth.containers.store import Container
from berth.containers.waiters import Waiters
from berth.errors import Conflict, NotFound
from berth.runtime.interface import Attachment, Bundle, Runtime


class Stdio:
    def __init__(self, get: Callable[[str], Container], runtime: Runtime, bundle: Callable[[Container], Bundle],
                 waiters: Waiters) -> None:
        self.get = get
        self.runtime = runtime
        self.bundle = bundle
        self.waiters = waiters

    async def attach(self, name: str) -> Attachment | None:
        """The container's stdio; waits for ``start`` if the container is only created."""
        c = self.get(name)
        if c.state.running:
            return self.runtime.attach(self.bundle(c))
        if c.state.Status != "created" and c.state.Status != "exited":
            raise Conflict("You cannot attach to a stopped container, start it first")
        return await self.waiters.start(c.id)

    def resize(self, name: str, h: int, w: int) -> None:
        c = self.get(name)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        self.runtime.resize(self.bundle(c), h, w)

    async def settle(self, name: str, timeout: float = 5.0) -> None:
        """After a container's stdio closed: give its exit a moment to be recorded, so a client
        that saw the stream end and acts next (inspect, rm) sees the container stopped."""
        try:
            c = self.get(name)
        except NotFound:
            return
        await self.waiters.exit(c, timeout)
