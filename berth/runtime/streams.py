"""A bounded hand-over of output chunks from readers to one consumer.

Readers ``await put``: when ``limit`` chunks wait unread, they pause, and so does whatever
writes into the pipes they read. A consumer that goes away calls ``discard``: what waits is
dropped and later chunks are not kept, so the writers never block on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

CHUNK = 65536  # what a reader takes from a pipe at once
LIMIT = 16  # chunks held for a slow consumer (1 MiB of 64 KiB reads)


class OutputQueue:
    def __init__(self, limit: int = LIMIT) -> None:
        self._q: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(limit)
        self._closed = False
        self._discard = False

    async def put(self, stream: int, data: bytes) -> None:
        if not self._discard and not self._closed:
            await self._q.put((stream, data))

    def discard(self) -> None:
        self._discard = True
        while not self._q.empty():
            self._q.get_nowait()
        if self._closed:
            self._q.put_nowait(None)

    def close(self) -> None:
        """No more output: the consumer's iteration ends once it has read what waits."""
        if self._closed:
            return
        self._closed = True
        if not self._q.full():
            self._q.put_nowait(None)

    def buffered(self) -> int:
        return self._q.qsize()

    async def items(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            if self._closed and self._q.empty():
                return
            item = await self._q.get()
            if item is None:
                return
            if not self._discard:
                yield item
