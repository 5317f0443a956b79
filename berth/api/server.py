"""The HTTP server: routes from each resource module, the /vX.Y prefix, and Docker's error shape."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

import berth
from berth.api import absent, attachws, build, containers, execs, images, networks, system, volumes
from berth.api.backends import Backends
from berth.api.common import API_VERSION, json_response
from berth.errors import BerthError

log = logging.getLogger("berth.api")
_VERSION = re.compile(r"^/v([0-9]+)\.([0-9]+)(?=/)")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _vtuple(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


@web.middleware
async def docker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        m = _VERSION.match(request.path)
        if m:
            ver = (int(m.group(1)), int(m.group(2)))
            vs = f"{ver[0]}.{ver[1]}"
            if ver > _vtuple(berth.API_VERSION):
                return json_response({"message": f"client version {vs} is too new. Maximum supported API version "
                                                 f"is {berth.API_VERSION}"}, status=400)
            if ver < _vtuple(berth.MIN_API_VERSION):
                return json_response({"message": f"client version {vs} is too old. Minimum supported API version "
                                                 f"is {berth.MIN_API_VERSION}, please upgrade your client to a "
                                                 "newer version"}, status=400)
            rest = request.raw_path[m.end():]
            inner = request.clone(rel_url=URL(rest, encoded=True))
            inner[API_VERSION] = ver
            match = await request.app.router.resolve(inner)
            match.add_app(request.app)
            match.freeze()
            inner._match_info = match
            request, handler = inner, match.handler
        return await handler(request)
    except BerthError as e:
        return json_response({"message": e.message}, status=e.status)
    except web.HTTPNotFound:
        return json_response({"message": "page not found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return json_response({"message": "method not allowed"}, status=405)
    except web.HTTPException:
        raise
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as e:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"message": str(e) or type(e).__name__}, status=500)


def build_app(backends: Backends | None = None) -> web.Application:
    """The API on ``backends``; without them, the route table alone (for tools that list routes)."""
    app = web.Application(middlewares=[docker_middleware], client_max_size=0)
    if backends is not None:
        backends.install(app)
    for mod in (system, images, build, containers, attachws, execs, volumes, networks, absent):
        app.router.add_routes(mod.routes)
    return app
