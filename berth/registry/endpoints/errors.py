"""Rendering the model's :class:`RegistryError` as the spec's JSON error response (aiohttp middleware)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from berth.registry.model.errors import RegistryError

log = logging.getLogger("berth.registry")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render(e: RegistryError) -> web.Response:
    return web.Response(status=e.status, body=e.body(), content_type="application/json", headers=e.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render RegistryError as spec JSON; anything unexpected becomes a logged 500 in the same shape."""
    try:
        return await handler(request)
    except RegistryError as e:
        return render(e)
    except web.HTTPException:
        raise
    except ConnectionError as e:
        # The client went away mid-request (its upload state is already rolled back); nobody to answer.
        log.debug("registry: %s %s: client disconnected: %s", request.method, request.path, e)
        return web.Response(status=400)
    except Exception:
        log.exception("registry: %s %s failed", request.method, request.path)
        return render(RegistryError("UNKNOWN"))
