"""``GET /v2/<name>/tags/list``, with ``n``/``last`` pagination."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry.endpoints.context import RegistryContext
from berth.registry.endpoints.pagination import page
from berth.registry.model.errors import name_unknown


async def get_tags(request: web.Request, ctx: RegistryContext, name: str) -> web.StreamResponse:
    found = await asyncio.to_thread(ctx.model.tags, name)
    if found is None:
        raise name_unknown(name)
    items, headers = page(found, request)
    return web.Response(body=json.dumps({"name": name, "tags": items}).encode(), content_type="application/json",
                        headers=headers)
