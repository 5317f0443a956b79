"""Endpoints for features Berth does not have: answered as a Docker engine lacking them would."""

from __future__ import annotations

from aiohttp import web

from berth.api.common import filters, json_response
from berth.errors import InvalidParameter
from berth.filters import Filters

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


@routes.post("/networks/prune")
async def networks_prune(request: web.Request) -> web.Response:
    f = filters(request).validate(("label", "label!", "until"))
    f.until()  # a bad value is still a 400
    return json_response({"NetworksDeleted": []})  # only the predefined networks exist, never pruned


# Networking (bridges, ports, DNS) is not built yet: the engine has the two networks that need no
# set-up, as a Docker engine shows them, so `docker network ls/inspect` tell the truth.
_NETWORKS = {
    "none": {"Driver": "null", "Id": "0" * 63 + "1"},
    "host": {"Driver": "host", "Id": "0" * 63 + "2"},
}


def _network(name: str) -> dict:  # type: ignore[type-arg]
    n = _NETWORKS[name]
    return {"Name": name, "Id": n["Id"], "Created": "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": n["Driver"], "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {}}


def _find_network(ref: str) -> str | None:
    for name, n in _NETWORKS.items():
        if ref == name or (len(ref) >= 3 and n["Id"].startswith(ref)):
            return name
    return None


def _network_listed(f: Filters, n: dict) -> bool:  # type: ignore[type-arg]
    """Docker's network list filters, for the predefined networks (builtin, never dangling)."""
    for t in f.vals("type"):
        if t not in ("custom", "builtin"):
            raise InvalidParameter(f"invalid filter: 'type'='{t}'")
    dangling = f.vals("dangling")
    if len(dangling) > 1:
        raise InvalidParameter('got more than one value for filter key "dangling"')
    if dangling and dangling[0] not in ("0", "false", "1", "true"):
        raise InvalidParameter('invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")')
    return (f.exact("driver", n["Driver"]) and f.match("name", n["Name"]) and f.match("id", n["Id"])
            and f.match_kv("label", n["Labels"]) and f.exact("scope", n["Scope"])
            and not (dangling and dangling[0] in ("1", "true")) and f.exact("type", "builtin"))


@routes.get("/networks")
async def networks(request: web.Request) -> web.Response:
    f = filters(request).validate(("dangling", "driver", "id", "label", "name", "scope", "type"),
                                  patterns=("name", "id"))
    return json_response([n for n in (_network(name) for name in _NETWORKS) if _network_listed(f, n)])


@routes.get("/networks/{id}")
async def network_inspect(request: web.Request) -> web.Response:
    name = _find_network(request.match_info["id"])
    if name is None:
        return json_response({"message": f"network {request.match_info['id']} not found"}, status=404)
    return json_response(_network(name))


@routes.post("/networks/create")
async def network_create(request: web.Request) -> web.Response:
    return json_response({"message": "creating networks is not supported by this Berth engine yet"}, status=501)
