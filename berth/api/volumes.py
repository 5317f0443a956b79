"""Volume endpoints, plus Berth's export/import of a volume's content as a tar."""

from __future__ import annotations

from aiohttp import web

from berth.api import bodies
from berth.api.backends import VOLUMES, VolumeBackend
from berth.api.common import filters, json_body, json_response, qbool, spooled_body
from berth.errors import InvalidParameter

routes = web.RouteTableDef()


def svc(request: web.Request) -> VolumeBackend:
    return request.app[VOLUMES]


@routes.post("/volumes/create")
async def create(request: web.Request) -> web.Response:
    return json_response(svc(request).create(await json_body(request, schema=bodies.VOLUME_CREATE)), status=201)


@routes.get("/volumes")
async def list_(request: web.Request) -> web.Response:
    return json_response(svc(request).list(filters(request)))


@routes.post("/volumes/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(svc(request).prune(filters(request)))


@routes.get("/volumes/{name}")
async def inspect(request: web.Request) -> web.Response:
    return json_response(svc(request).inspect(request.match_info["name"]))


@routes.delete("/volumes/{name}")
async def remove(request: web.Request) -> web.Response:
    svc(request).remove(request.match_info["name"], qbool(request, "force"))
    return web.Response(status=204)


@routes.get("/volumes/{name}/export")
async def export(request: web.Request) -> web.StreamResponse:
    s = svc(request)
    s.inspect(request.match_info["name"])  # 404 before the stream starts
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    async for chunk in s.export(request.match_info["name"]):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@routes.put("/volumes/{name}/import")
async def import_(request: web.Request) -> web.Response:
    async with spooled_body(request, ".tar") as (tmp, size):
        if size == 0:
            raise InvalidParameter("import: request body is empty; send a tar archive")
        return json_response(await svc(request).import_(request.match_info["name"], tmp))
