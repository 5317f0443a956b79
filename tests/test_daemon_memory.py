"""berthd hands freed heap back to the system once requests stop coming (berth/daemon/memory.py):
not while they keep coming, once per quiet spell, and a long-lived stream does not hold it off."""

from __future__ import annotations

import asyncio
import os
import tempfile

from aiohttp import ClientSession, UnixConnector, web

from berth.daemon.memory import IdleTrim


async def _serve_and_count() -> list[str]:
    trims: list[str] = []
    idle = IdleTrim(delay=0.2)
    assert idle._trim is not None, "glibc's malloc_trim is expected on this machine"
    real = idle._trim

    def counted() -> None:
        trims.append("trim")
        real()  # the real call: it must not fail or block

    idle._trim = counted
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="slow")

    async def quick(_request: web.Request) -> web.Response:
        return web.Response(text="quick")

    app = web.Application(middlewares=[idle.middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/quick", quick)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = os.path.join(tempfile.mkdtemp(prefix="berth-trim-", dir="/var/tmp"), "s.sock")
    site = web.UnixSite(runner, sock)
    await site.start()
    try:
        async with ClientSession(connector=UnixConnector(path=sock)) as s:
            held = asyncio.ensure_future(s.get("http://x/slow"))  # a stream that stays open
            for _ in range(8):  # requests keep coming, each within the delay of the last
                async with s.get("http://x/quick") as r:
                    assert await r.text() == "quick"
                await asyncio.sleep(0.05)
            trims.append(f"while busy: {trims.count('trim')}")
            await asyncio.sleep(0.5)  # quiet, with the stream still open
            trims.append(f"quiet: {trims.count('trim')}")
            release.set()
            async with await held as r:
                assert await r.text() == "slow"
            await asyncio.sleep(0.5)
    finally:
        await runner.cleanup()
        os.unlink(sock)
        os.rmdir(os.path.dirname(sock))
    return trims


def test_trims_once_per_quiet_spell_even_with_a_stream_open() -> None:
    assert asyncio.run(_serve_and_count()) == ["while busy: 0", "trim", "quiet: 1", "trim"]
