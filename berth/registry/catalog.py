"""``GET /v2/_catalog``: every repository, lexically, with ``n``/``last`` pagination."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry import layout
from berth.registry.context import RegistryContext
from berth.registry.pagination import page
from berth.registry.storage import Storage


def exists(storage: Storage, name: str) -> bool:
    st = storage.stat(layout.repo(name))
    return st is not None and st.is_dir


def repositories(storage: Storage) -> list[str]:
    """Directories under ``repositories/`` holding ``_manifests`` or ``_layers``; names nest with ``/``."""
    found: list[str] = []

    def walk(key: str, prefix: str) -> None:
        for child in storage.list(key):
            if child.startswith("_"):
                continue  # _layers/_manifests/_referrers: repository data, not a nested name
            sub = f"{key}/{child}"
            kids = storage.list(sub)
            if not kids:
                continue
            if "_manifests" in kids or "_layers" in kids:
                found.append(prefix + child)
            walk(sub, f"{prefix}{child}/")

    walk(layout.REPOSITORIES, "")
    return sorted(found)


async def get_catalog(request: web.Request, ctx: RegistryContext) -> web.StreamResponse:
    names = await asyncio.to_thread(repositories, ctx.storage)
    items, headers = page(names, request)
    return web.Response(body=json.dumps({"repositories": items}).encode(), content_type="application/json",
                        headers=headers)
