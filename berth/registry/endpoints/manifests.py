"""Manifests: ``GET``/``HEAD``/``PUT``/``DELETE /v2/<name>/manifests/<reference>``.

Validation and storage are the model's (:mod:`berth.registry.model.manifests`); this module reads the
body within the size limit, checks the reference against the content and answers with the spec's headers.
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web
from multidict import MultiDict

from berth.registry.endpoints.context import RegistryContext
from berth.registry.model.digests import compute, parse_digest, sha256
from berth.registry.model.errors import RegistryError
from berth.registry.model.manifests import parse
from berth.registry.model.names import valid_tag
from berth.registry.model.negotiation import negotiate


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_big = RegistryError("SIZE_INVALID", f"manifest exceeds {limit} bytes", status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise too_big
    return bytes(buf)


async def get_manifest(request: web.Request, ctx: RegistryContext, name: str, reference: str) -> web.StreamResponse:
    if ctx.proxy is not None:
        rev, body, warning = await ctx.proxy.manifest(name, reference)
    else:
        rev, body = await asyncio.to_thread(ctx.model.get_manifest, name, reference)
        warning = None
    rev, body = await asyncio.to_thread(negotiate, ctx.model, name, reference, rev, body,
                                        request.headers.getall(hdrs.ACCEPT, []))
    headers = {"Docker-Content-Digest": str(rev.digest), "ETag": f'"{rev.digest}"',
               hdrs.CONTENT_TYPE: rev.media_type}
    if warning:
        headers["Warning"] = warning
    resp = web.StreamResponse(headers=headers)
    resp.content_length = len(body)
    await resp.prepare(request)
    if request.method != "HEAD":
        await resp.write(body)
    await resp.write_eof()
    return resp


async def put_manifest(request: web.Request, ctx: RegistryContext, name: str, reference: str) -> web.StreamResponse:
    body = await _read_body(request, ctx.max_manifest_size)
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    m = parse(body, content_type)
    tag_names = request.query.getall("tag", [])
    if ":" in reference:
        want = parse_digest(reference)
        d = compute(want.algorithm, body)
        if d != want:
            raise RegistryError("DIGEST_INVALID", "manifest content does not match the digest in the URL",
                                detail={"digest": reference, "computed": str(d)})
    else:
        if not valid_tag(reference):
            raise RegistryError("MANIFEST_INVALID", "invalid tag", detail={"tag": reference})
        tag_names, d = [reference], sha256(body)
    for t in tag_names:
        if not valid_tag(t):
            raise RegistryError("MANIFEST_INVALID", "invalid tag", detail={"tag": t})
    await asyncio.to_thread(ctx.model.put_manifest, name, tag_names, d, body, m)
    headers: MultiDict[str] = MultiDict({"Location": f"/v2/{name}/manifests/{d}", "Docker-Content-Digest": str(d)})
    if ":" in reference:
        for t in dict.fromkeys(tag_names):
            headers.add("OCI-Tag", t)  # the spec's answer to ?tag=: one header per tag created
    if m.subject is not None:
        headers["OCI-Subject"] = str(m.subject.digest)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request, ctx: RegistryContext, name: str,
                          reference: str) -> web.StreamResponse:
    await asyncio.to_thread(ctx.model.delete_manifest, name, reference)
    return web.Response(status=202)
