"""Blob uploads: ``POST``/``PATCH``/``PUT``/``GET``/``DELETE /v2/<name>/blobs/uploads/...``.

The session state and its data live in the model (:mod:`berth.registry.model.uploads`); this module maps
the spec's requests, ``Content-Range`` checks and ``Location``/``Range`` headers onto it.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from berth.registry.endpoints.auth import Access
from berth.registry.endpoints.context import RegistryContext, grant_of
from berth.registry.model.digests import Digest, is_digest, parse_digest
from berth.registry.model.errors import digest_invalid, upload_unknown
from berth.registry.model.names import valid_name
from berth.registry.model.uploads import UploadSession

READ_CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")


def _range(offset: int) -> str:
    # Inclusive end; distribution (and clients) report "0-0" for an empty upload too.
    return f"0-{max(0, offset - 1)}"


def _session_headers(name: str, s: UploadSession) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{s.id}",
        "Range": _range(s.offset),
        "Docker-Upload-UUID": s.id,
    }


def _created(name: str, d: Digest) -> web.Response:
    return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{d}", "Docker-Content-Digest": str(d)})


def _range_not_satisfiable(name: str, s: UploadSession) -> web.Response:
    return web.Response(status=416, headers=_session_headers(name, s))


def _check_content_range(request: web.Request, s: UploadSession) -> tuple[bool, int | None]:
    """(acceptable, expected body length) for an optional ``Content-Range: a-b``."""
    expected = request.content_length
    value = request.headers.get("Content-Range")
    if value is None:
        return True, expected
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return False, None
    a, b = int(m.group(1)), int(m.group(2))
    if a != s.offset or b < a or (expected is not None and expected != b - a + 1):
        return False, None  # chunks must arrive in order, each starting at the current offset
    return True, b - a + 1


async def start(request: web.Request, ctx: RegistryContext, name: str) -> web.StreamResponse:
    q = request.query
    mount, source = q.get("mount"), q.get("from")
    if mount and is_digest(mount):
        d = parse_digest(mount)
        grant = grant_of(request)

        def may_read(repo: str) -> bool:
            return grant is None or grant.allows(Access("repository", repo, "pull"))

        if source:
            sources = [source] if valid_name(source) and may_read(source) else []
        else:
            # No ``from`` (the spec allows it): any repository holding the blob that the caller may read.
            sources = await asyncio.to_thread(ctx.model.repositories_with_blob, d, may_read)
        mounted: bool = bool(sources) and await asyncio.to_thread(ctx.model.mount, name, d, sources)
        if mounted:
            return _created(name, d)
        # Otherwise fall back to an ordinary upload session, as the spec asks.
    wanted = [parse_digest(v) for v in q.getall("digest", [])]
    s = await ctx.model.uploads.create(name)
    if not wanted:
        return web.Response(status=202, headers=_session_headers(name, s))
    # Monolithic upload: the body is the whole blob.
    async with s.lock:
        try:
            await ctx.model.uploads.append(s, request.content.iter_chunked(READ_CHUNK), request.content_length)
            d = await ctx.model.uploads.finish(s, wanted)
        except Exception:
            if not s.gone:
                await ctx.model.uploads.discard(s)
            raise
    return _created(name, d)


async def patch(request: web.Request, ctx: RegistryContext, name: str, session_id: str) -> web.StreamResponse:
    s = await ctx.model.uploads.get(session_id, name)
    async with s.lock:
        if s.gone:
            raise upload_unknown(session_id)
        ok, expected = _check_content_range(request, s)
        if not ok:
            return _range_not_satisfiable(name, s)
        await ctx.model.uploads.append(s, request.content.iter_chunked(READ_CHUNK), expected)
        return web.Response(status=202, headers=_session_headers(name, s))


async def put(request: web.Request, ctx: RegistryContext, name: str, session_id: str) -> web.StreamResponse:
    raw = request.query.getall("digest", [])
    if not raw:
        raise digest_invalid("", "the digest parameter is required to complete an upload")
    wanted = [parse_digest(v) for v in raw]
    s = await ctx.model.uploads.get(session_id, name)
    async with s.lock:
        if s.gone:
            raise upload_unknown(session_id)
        ok, expected = _check_content_range(request, s)
        if not ok:
            return _range_not_satisfiable(name, s)
        if request.body_exists:
            await ctx.model.uploads.append(s, request.content.iter_chunked(READ_CHUNK), expected)
        d = await ctx.model.uploads.finish(s, wanted)
    return _created(name, d)


async def status(request: web.Request, ctx: RegistryContext, name: str, session_id: str) -> web.StreamResponse:
    s = await ctx.model.uploads.get(session_id, name)
    return web.Response(status=204, headers=_session_headers(name, s))


async def cancel(request: web.Request, ctx: RegistryContext, name: str, session_id: str) -> web.StreamResponse:
    s = await ctx.model.uploads.get(session_id, name)
    async with s.lock:
        if s.gone:
            raise upload_unknown(session_id)
        await ctx.model.uploads.discard(s)
    return web.Response(status=204)
