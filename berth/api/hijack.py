"""Hijacked connections (attach, exec start): after the response head the socket is a raw
byte stream in both directions, as Docker does it (101 UPGRADED, ``Upgrade: tcp``).

aiohttp hands the bytes after an upgrade request to a "payload parser"; ours queues them
as stdin. A client that half-closes (CloseWrite after stdin EOF) must still get the
output, so the protocol's ``eof_received`` keeps the transport open.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web


class _StdinParser:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        if not self.eof:
            self.eof = True
            self.queue.put_nowait(None)


class Hijacked:
    def __init__(self, request: web.Request, resp: web.StreamResponse, parser: _StdinParser | None) -> None:
        self.request = request
        self.resp = resp
        self.parser = parser
        self.closed = asyncio.Event()  # the client's connection is gone

    async def until_closed(self, aw: Any) -> Any:
        """Await ``aw``, or raise ConnectionResetError as soon as the client hangs up."""
        task = asyncio.ensure_future(aw)
        gone = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ConnectionResetError("client went away")

    async def write(self, data: bytes) -> None:
        await self.resp.write(data)

    async def read(self) -> bytes | None:
        """Next chunk of stdin, or None at EOF."""
        if self.parser is None:
            return None
        return await self.parser.queue.get()

    def close(self) -> None:
        self.resp.force_close()
        transport = self.request.transport
        if transport is not None:
            transport.close()


async def hijack(request: web.Request, content_type: str) -> Hijacked:
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp" or \
        "upgrade" in request.headers.get("Connection", "").lower()
    if upgrade:
        resp = web.StreamResponse(status=101, reason="UPGRADED",
                                  headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
    else:
        resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    resp._length_check = False  # a raw stream: no chunked framing, the connection ends the body
    resp.force_close()
    await resp.prepare(request)
    parser = None
    protocol = request.protocol
    if upgrade and protocol is not None:
        parser = _StdinParser()
        protocol.set_parser(parser)  # type: ignore[arg-type]

    h = Hijacked(request, resp, parser)
    if parser is not None:
        transport = request.transport
        if transport is not None:
            transport.set_protocol(_HalfCloseProtocol(protocol, parser, h.closed))
    return h


class _HalfCloseProtocol(asyncio.Protocol):
    """Forwards to aiohttp's protocol, except that EOF from the client ends stdin only."""

    def __init__(self, inner: asyncio.Protocol, parser: _StdinParser, closed: asyncio.Event) -> None:
        self.inner = inner
        self.parser = parser
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool:
        self.parser.feed_eof()
        return True  # keep our write half open

    def connection_lost(self, exc: Exception | None) -> None:
        self.parser.feed_eof()
        self.closed.set()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
