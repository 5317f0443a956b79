"""``GET /v2/_catalog``: the repositories (with a policy, those the caller may pull), with pagination."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry.endpoints.context import RegistryContext, grant_of
from berth.registry.endpoints.pagination import page


async def get_catalog(request: web.Request, ctx: RegistryContext) -> web.StreamResponse:
    names = await asyncio.to_thread(ctx.model.repositories)
    grant = grant_of(request)
    if grant is not None and ctx.auth is not None and ctx.auth.policy is not None:
        # Only what the caller may pull, by the policy (a token for the catalog names no repositories).
        user = grant.subject or None
        names = [n for n in names if "pull" in ctx.auth.policy.actions(user, n)]
    items, headers = page(names, request)
    return web.Response(body=json.dumps({"repositories": items}).encode(), content_type="application/json",
                        headers=headers)
