"""berthd's memory between bursts of work.

glibc keeps what Python frees in its heaps for reuse, so berthd's resident size after a burst of
requests stays at the burst's peak for as long as it idles. Once no request has begun or ended for
a moment, ``malloc_trim`` hands the free pages back (a few ms, off every request's path), as Go's
scavenger does for dockerd. Long-lived streams (``docker events``, ``logs -f``, attach) do not hold
it off: they are open for hours in a compose setup. Worker threads each get a malloc arena of their
own by default; two are plenty for threads that mostly wait on the GIL or the kernel.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from berth.distribution.pipeline import limit_malloc_arenas

IDLE_DELAY = 1.0  # seconds without a request beginning or ending before trimming


def _libc_trim() -> Callable[[], None] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0) and None


class IdleTrim:
    def __init__(self, delay: float = IDLE_DELAY) -> None:
        self.delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._trim = _libc_trim()
        if "MALLOC_ARENA_MAX" not in os.environ:
            limit_malloc_arenas()

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        self._rearm()
        try:
            return await handler(request)
        finally:
            self._rearm()

    def _rearm(self) -> None:
        if self._trim is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.delay, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self._trim is not None:
            self._trim()
