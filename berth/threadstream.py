"""Stream what a blocking producer writes (tar assembly, archive writing) to an async consumer."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any


def stream_from_thread(produce: Callable[[Any], None]) -> AsyncIterator[bytes]:
    """Run ``produce(writer)`` in a thread; yield what it writes, with back-pressure."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
    stop = threading.Event()

    class _Writer:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, data: bytes) -> int:
            if stop.is_set():
                raise BrokenPipeError("client went away")
            self.buf += data
            if len(self.buf) >= 1 << 20:
                self.flush()
            return len(data)

        def flush(self) -> None:
            if self.buf:
                q.put(bytes(self.buf))
                self.buf = bytearray()

    def run() -> None:
        w = _Writer()
        try:
            produce(w)
            w.flush()
            q.put(None)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    async def gen() -> AsyncIterator[bytes]:
        t = threading.Thread(target=run, daemon=True)
        t.start()
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await loop.run_in_executor(None, q.get)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():  # drain so the producer can see ``stop`` and end
                try:
                    q.get_nowait()
                except queue.Empty:
                    await asyncio.sleep(0.01)

    return gen()
