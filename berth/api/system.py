"""System endpoints: ping, version, info; and how a Docker engine without a feature answers."""

from __future__ import annotations

import asyncio

from aiohttp import web

import berth
from berth.api.backends import EVENTS, SYSTEM
from berth.api.common import dumps, filters, json_response, qtime

routes = web.RouteTableDef()


def _ping_headers() -> dict[str, str]:
    return {"API-Version": berth.API_VERSION, "OSType": "linux", "Server": f"Berth/{berth.__version__} (linux)",
            "Docker-Experimental": "false", "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


@routes.get("/_ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_ping_headers(), content_type="text/plain")


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return json_response(request.app[SYSTEM].version())


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    return json_response(request.app[SYSTEM].info())


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.Response:
    return json_response(await request.app[SYSTEM].disk_usage())


@routes.post("/build/prune")
async def build_prune(request: web.Request) -> web.Response:
    f = filters(request).validate(("until", "unused-for", "id", "parent", "type", "description", "inuse", "shared",
                                   "private"))
    f.until()
    return json_response({"CachesDeleted": [], "SpaceReclaimed": 0})  # no builder yet: no cache


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    sub = request.app[EVENTS].subscribe(qtime(request, "since"), qtime(request, "until"), filters(request))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        nxt = asyncio.ensure_future(anext(sub))
        while True:
            # wake up now and then to notice a client that hung up while no event came
            done, _ = await asyncio.wait({nxt}, timeout=1.0)
            transport = request.transport
            if transport is None or transport.is_closing():
                nxt.cancel()
                break
            if not done:
                continue
            try:
                ev = nxt.result()
            except StopAsyncIteration:
                break
            await resp.write((dumps(ev) + "\n").encode())
            nxt = asyncio.ensure_future(anext(sub))
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        await sub.aclose()
    return resp
