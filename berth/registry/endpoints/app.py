"""The registry's aiohttp application: routing under ``/v2/`` and authorization.

Repository names contain slashes, so ``/v2/<tail>`` is dispatched by matching the tail against each
resource's pattern anchored at its end (``.../blobs/uploads/<id>``, ``.../manifests/<ref>``, ...) and
what precedes it is the name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from berth.registry.endpoints import blobs, catalog, manifests, referrers, tags, uploads
from berth.registry.endpoints.auth import Access, Auth, catalog_access
from berth.registry.endpoints.context import CONTEXT, GRANT_KEY, RegistryContext
from berth.registry.endpoints.errors import error_middleware
from berth.registry.model.errors import RegistryError, unsupported
from berth.registry.model.names import check_name
from berth.registry.model.registry import FilesystemRegistry, RegistryModel
from berth.registry.model.storage import Storage
from berth.registry.proxy.cache import PullThrough

log = logging.getLogger("berth.registry")

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
ResourceHandler = Callable[..., Awaitable[web.StreamResponse]]


class Route:
    def __init__(self, pattern: str, handlers: dict[str, ResourceHandler], action: str | None = None) -> None:
        self.regex = re.compile(pattern)
        self.handlers = handlers
        self.action = action  # fixed action for every method (uploads are all "push")

    def action_for(self, method: str) -> str:
        if self.action:
            return self.action
        return {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")


# Order matters: the uploads patterns must win over the generic blob pattern.
ROUTES = [
    Route(r"^(?P<name>.+)/blobs/uploads/?$", {"POST": uploads.start}, "push"),
    Route(r"^(?P<name>.+)/blobs/uploads/(?P<session_id>[^/]+)$",
          {"GET": uploads.status, "PATCH": uploads.patch, "PUT": uploads.put, "DELETE": uploads.cancel}, "push"),
    Route(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$",
          {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob}),
    Route(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$",
          {"GET": manifests.get_manifest, "HEAD": manifests.get_manifest, "PUT": manifests.put_manifest,
           "DELETE": manifests.delete_manifest}),
    Route(r"^(?P<name>.+)/tags/list$", {"GET": tags.get_tags}),
    Route(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$", {"GET": referrers.get_referrers}),
]


async def _authorize(request: web.Request, ctx: RegistryContext, needed: list[Access]) -> None:
    if ctx.auth is not None:
        request[GRANT_KEY] = await ctx.auth.authorize(request, needed, ctx.allow_anonymous_read)


async def _base(request: web.Request, ctx: RegistryContext) -> web.StreamResponse:
    await _authorize(request, ctx, [])
    return web.json_response({})


async def dispatch(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    tail = request.match_info.get("tail", "")
    method = request.method
    if tail == "":
        if method not in ("GET", "HEAD"):
            raise unsupported(allow=["GET", "HEAD"])
        return await _base(request, ctx)
    if tail == "_catalog":
        if method != "GET":
            raise unsupported(allow=["GET"])
        await _authorize(request, ctx, [catalog_access()])
        return await catalog.get_catalog(request, ctx)
    for route in ROUTES:
        m = route.regex.match(tail)
        if m:
            break
    else:
        raise RegistryError("UNSUPPORTED", "unknown API endpoint", status=404)
    params: dict[str, Any] = m.groupdict()
    name = check_name(params.pop("name"))
    handler = route.handlers.get(method)
    if handler is None:
        raise unsupported(allow=sorted(route.handlers))
    action = route.action_for(method)
    await _authorize(request, ctx, [Access("repository", name, action)])
    if ctx.proxy is not None and action != "pull":
        # A pull-through cache mirrors its upstream; writing to it would fork the two.
        raise RegistryError("UNSUPPORTED", "this registry is a pull-through cache: push and delete are refused",
                            status=405, headers={"Allow": "GET, HEAD"})
    return await handler(request, ctx, name, **params)


async def _api_version(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/v2"):
        response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]


def build_app(root: str, auth: Auth | None = None, allow_anonymous_read: bool = False, *,
              storage: Storage | None = None, model: RegistryModel | None = None,
              max_manifest_size: int = 4 * 1024 * 1024, proxy: PullThrough | None = None) -> web.Application:
    """The registry application over ``root`` (or an explicit ``storage``, or a whole ``model``)."""
    if model is None:
        model = proxy.model if proxy is not None else FilesystemRegistry(storage if storage is not None else root)
    ctx = RegistryContext(model, auth, allow_anonymous_read, max_manifest_size, proxy)
    app = web.Application(middlewares=[error_middleware])
    app[CONTEXT] = ctx
    app.router.add_route("*", "/v2", dispatch)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
    if auth is not None:
        auth.setup(app, allow_anonymous_read)
    app.on_response_prepare.append(_api_version)
    return app
