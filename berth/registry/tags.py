"""Tags: ``GET /v2/<name>/tags/list`` and the tag links manifests read and write.

A tag is ``repositories/<name>/_manifests/tags/<tag>/current`` holding the manifest digest.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.registry import catalog, layout
from berth.registry.context import RegistryContext
from berth.registry.digests import Digest, parse_digest
from berth.registry.errors import RegistryError, name_unknown
from berth.registry.names import valid_tag
from berth.registry.pagination import page
from berth.registry.storage import Storage


def resolve(storage: Storage, name: str, tag: str) -> Digest | None:
    try:
        raw = storage.get(layout.tag_current(name, tag))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return parse_digest(raw.decode().strip())
    except (RegistryError, UnicodeDecodeError):
        return None  # a damaged tag file reads as no tag


def set_tag(storage: Storage, name: str, tag: str, d: Digest) -> None:
    storage.put(layout.tag_current(name, tag), str(d).encode())


def delete_tag(storage: Storage, name: str, tag: str) -> bool:
    return storage.delete(layout.tag_dir(name, tag))


def list_tags(storage: Storage, name: str) -> list[str]:
    return [t for t in storage.list(layout.tags_dir(name))
            if valid_tag(t) and storage.stat(layout.tag_current(name, t)) is not None]


def tags_pointing_at(storage: Storage, name: str, d: Digest) -> list[str]:
    return [t for t in list_tags(storage, name) if resolve(storage, name, t) == d]


def _listing(storage: Storage, name: str) -> list[str] | None:
    if not catalog.exists(storage, name):
        return None
    return list_tags(storage, name)


async def get_tags(request: web.Request, ctx: RegistryContext, name: str) -> web.StreamResponse:
    found = await asyncio.to_thread(_listing, ctx.storage, name)
    if found is None:
        raise name_unknown(name)
    items, headers = page(found, request)
    return web.Response(body=json.dumps({"name": name, "tags": items}).encode(), content_type="application/json",
                        headers=headers)
