"""``GET /v2/_catalog``: every repository, lexically, with ``n``/``last`` pagination."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry.endpoints.context import RegistryContext
from berth.registry.endpoints.pagination import page


async def get_catalog(request: web.Request, ctx: RegistryContext) -> web.StreamResponse:
    names = await asyncio.to_thread(ctx.model.repositories)
    items, headers = page(names, request)
    return web.Response(body=json.dumps({"repositories": items}).encode(), content_type="application/json",
                        headers=headers)
