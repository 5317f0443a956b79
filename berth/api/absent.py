"""Endpoints for features Berth does not have: answered as a Docker engine lacking them would."""

from __future__ import annotations

from aiohttp import web

from berth.api.common import json_response

routes = web.RouteTableDef()

NOT_SWARM = ("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect "
             "this node to swarm and try again.")


async def not_swarm(request: web.Request) -> web.Response:
    return json_response({"message": NOT_SWARM}, status=503)


for prefix in ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"):
    routes.route("*", prefix)(not_swarm)
    routes.route("*", prefix + "/{tail:.*}")(not_swarm)


@routes.get("/plugins")
async def plugins(request: web.Request) -> web.Response:
    return json_response([])


@routes.get("/plugins/{name:.+}/json")
async def plugin_inspect(request: web.Request) -> web.Response:
    return json_response({"message": f"plugin \"{request.match_info['name']}\" not found"}, status=404)
