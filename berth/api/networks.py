"""Network endpoints: ``/networks``, create, inspect, connect, disconnect, remove, prune."""

from __future__ import annotations

from aiohttp import web

from berth.api.backends import NETWORKS, NetworkBackend
from berth.api.common import filters, json_body, json_response
from berth.errors import InvalidParameter

routes = web.RouteTableDef()


def svc(request: web.Request) -> NetworkBackend:
    return request.app[NETWORKS]


@routes.get("/networks")
async def list_(request: web.Request) -> web.Response:
    return json_response(svc(request).list(filters(request)))


@routes.post("/networks/create")
async def create(request: web.Request) -> web.Response:
    return json_response(await svc(request).create(await json_body(request)), status=201)


@routes.post("/networks/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(await svc(request).prune(filters(request)))


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "")
    if scope not in ("", "local", "swarm", "global"):
        raise InvalidParameter(f"invalid scope {scope!r}")
    n = svc(request).inspect(request.match_info["id"])
    if scope in ("swarm", "global"):  # every network of this engine is local
        return json_response({"message": f"network {request.match_info['id']} not found"}, status=404)
    return json_response(n)  # ``verbose`` adds swarm service details: there are none


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.Response:
    await svc(request).remove(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/networks/{id}/connect")
async def connect(request: web.Request) -> web.Response:
    await svc(request).connect(request.match_info["id"], await json_body(request))
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    await svc(request).disconnect(request.match_info["id"], await json_body(request))
    return web.Response(status=200)
