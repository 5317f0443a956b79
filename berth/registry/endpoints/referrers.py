"""The referrers API: ``GET /v2/<name>/referrers/<digest>[?artifactType=...]``."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry.endpoints.context import RegistryContext
from berth.registry.model.digests import parse_digest
from berth.registry.model.mediatypes import OCI_INDEX


async def get_referrers(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    subject = parse_digest(digest)
    # 200 with an empty index for a repository not seen yet: clients read a 404 as "no referrers API".
    found = await asyncio.to_thread(ctx.model.referrers, name, subject)
    headers: dict[str, str] = {}
    wanted = request.query.get("artifactType")
    if wanted:
        found = [d for d in found if d.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    # 200 with an empty index even for an unknown subject: referrers may be pushed before their subject.
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type=OCI_INDEX)
