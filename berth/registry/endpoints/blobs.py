"""Blobs: ``GET``/``HEAD``/``DELETE /v2/<name>/blobs/<digest>``, with single ``Range`` requests."""

from __future__ import annotations

import asyncio
import re
from typing import BinaryIO

from aiohttp import web

from berth.registry.endpoints.context import RegistryContext
from berth.registry.model.digests import Digest, parse_digest
from berth.registry.model.errors import blob_unknown
from berth.registry.proxy.cache import PullThrough

READ_CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """An inclusive (start, end) for a single ``bytes=`` range; None means "send everything".

    Raises ValueError when the range cannot be satisfied (the caller answers 416).
    """
    m = _RANGE.match(value.strip())
    if not m:
        return None  # multi-range or foreign units: ignoring Range is allowed
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # suffix: the last b bytes
        n = int(b)
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(a)
    end = int(b) if b else size - 1
    if start >= size or end < start:
        raise ValueError("range not satisfiable")
    return start, min(end, size - 1)


async def get_blob(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    d = parse_digest(digest)
    if ctx.proxy is not None:
        size = await ctx.proxy.blob_size(name, d)
        if size is None:
            return await _proxied(request, ctx.proxy, name, d)
    else:
        size = await asyncio.to_thread(ctx.model.blob_size, name, d)
    if size is None:
        raise blob_unknown(digest)
    headers = _headers(d)
    start, end, status = 0, size - 1, 200
    rng = request.headers.get("Range")
    if rng:
        try:
            r = parse_range(rng, size)
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}",
                                                     "Docker-Content-Digest": str(d)})
        if r is not None:
            start, end = r
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    if request.method == "HEAD" or length == 0:
        await resp.write_eof()
        return resp
    f = await asyncio.to_thread(ctx.model.open_blob, d, start)
    try:
        await send_file(request, resp, f, start, length)
    finally:
        f.close()
    await resp.write_eof()
    return resp


async def send_file(request: web.Request, resp: web.StreamResponse, f: BinaryIO, offset: int, count: int) -> None:
    """``count`` bytes of ``f`` from ``offset`` after the prepared headers: ``sendfile(2)`` from the page
    cache to the socket (no copy through Python), or asyncio's read/write fallback (TLS)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away")
    try:
        await asyncio.get_running_loop().sendfile(transport, f, offset, count)
    except NotImplementedError:  # a file without a descriptor
        f.seek(offset)
        left = count
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, left))
            if not chunk:
                break  # cannot happen for immutable blobs; never spin if it does
            left -= len(chunk)
            await resp.write(chunk)
    except RuntimeError as e:  # asyncio's word for a transport closed under it: the client went away
        if transport.is_closing():
            raise ConnectionResetError("client went away") from e
        raise


def _headers(d: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(d),
        "ETag": f'"{d}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
        "Content-Type": "application/octet-stream",
    }


async def _proxied(request: web.Request, proxy: PullThrough, name: str, d: Digest) -> web.StreamResponse:
    """A blob the cache lacks: HEAD asks the upstream; GET streams it while it is fetched (Range ignored)."""
    if request.method == "HEAD":
        size = await proxy.head_blob(name, d)
        resp = web.StreamResponse(headers=_headers(d))
        resp.content_length = size
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    fetch = await proxy.fetch(name, d)
    resp = web.StreamResponse(headers=_headers(d))
    resp.content_length = fetch.size
    await resp.prepare(request)
    try:
        async for f, offset, count in proxy.spans(fetch):
            await send_file(request, resp, f, offset, count)
    except BaseException:
        # Failed verification (or anything else) after the headers went out: cut the connection so
        # the client never sees a complete (wrong) body, nor waits for bytes that will not come.
        if request.transport is not None:
            request.transport.abort()
        raise
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    # Only the repository's link goes; the bytes stay until GC finds no manifest needs them.
    d = parse_digest(digest)
    if not await asyncio.to_thread(ctx.model.unlink_blob, name, d):
        raise blob_unknown(digest)
    return web.Response(status=202)
