"""Streams between blocking code and the event loop: what a blocking producer (tar assembly, archive
writing) writes, as an async iterator; and an async body (a request's) spooled to a file.

Neither borrows a thread of the loop's default pool for a stream's lifetime: the producer runs in a
thread of its own (named, so a stack dump says whose it is) and hands chunks to the loop through an
asyncio queue; the consumer only awaits. A slow client holds its own producer back, nobody else.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

FLUSH = 1 << 20  # bytes gathered before a chunk is handed over
DEPTH = 16  # chunks in flight per stream
_names = itertools.count(1)


class _Writer:
    """The file-like object a producer writes to; blocks (in the producer's thread) while the
    consumer is ``DEPTH`` chunks behind, and raises BrokenPipeError once the consumer is gone."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[bytes | BaseException | None],
                 stop: threading.Event) -> None:
        self.loop, self.q, self.stop = loop, q, stop
        self.buf = bytearray()

    def put(self, item: bytes | BaseException | None) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.q.put(item), self.loop)
        while True:
            try:
                fut.result(timeout=0.5)
                return
            except FutureTimeout:
                if self.stop.is_set():
                    fut.cancel()
                    raise BrokenPipeError("client went away") from None

    def write(self, data: bytes) -> int:
        if self.stop.is_set():
            raise BrokenPipeError("client went away")
        self.buf += data
        if len(self.buf) >= FLUSH:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            chunk, self.buf = bytes(self.buf), bytearray()
            self.put(chunk)


def stream_from_thread(produce: Callable[[Any], None], name: str = "berth-stream") -> AsyncGenerator[bytes, None]:
    """Run ``produce(writer)`` in a thread of its own; yield what it writes, with back-pressure.
    Closing the generator (``aclose``) stops the producer and waits for its thread to end."""

    async def gen() -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=DEPTH)
        stop = threading.Event()
        w = _Writer(loop, q, stop)

        def run() -> None:
            try:
                produce(w)
                w.flush()
                w.put(None)
            except BaseException as e:  # handed to the consumer
                if not stop.is_set():
                    try:
                        w.put(e)
                    except (BrokenPipeError, RuntimeError):  # consumer or loop gone meanwhile
                        pass

        t = threading.Thread(target=run, name=f"{name}-{next(_names)}", daemon=True)
        t.start()
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():  # empty the queue so a producer blocked on it sees ``stop`` and ends
                while not q.empty():
                    q.get_nowait()
                await asyncio.sleep(0.01)

    return gen()


async def spool(chunks: AsyncIterable[bytes], path: str) -> int:
    """Write ``chunks`` (a request body) to a new file at ``path``; return its size."""
    n = 0
    with open(path, "wb") as f:
        async for chunk in chunks:
            f.write(chunk)
            n += len(chunk)
    return n
