"""Image endpoints: load, save, import, list, inspect, history, tag, remove, prune."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from berth.api.backends import DISTRIBUTION, IMAGES, ImageBackend
from berth.api.common import (
    filters,
    json_body,
    json_response,
    json_stream_start,
    json_stream_write,
    qbool,
    spooled_body,
    stream_tar,
)
from berth.distribution.client import Credentials
from berth.errors import BerthError, InvalidParameter

routes = web.RouteTableDef()
log = logging.getLogger("berth.api")


def svc(request: web.Request) -> ImageBackend:
    return request.app[IMAGES]


@routes.post("/images/load")
async def load(request: web.Request) -> web.StreamResponse:
    # as dockerd: a body that is no image archive is a 200 whose stream carries the error (what the
    # CLI prints and the SDK raises as ImageLoadError), with or without ``quiet``
    lines: list[str] = []
    error = ""
    async with spooled_body(request, ".tar") as (tmp, size):
        try:
            if size == 0:
                raise InvalidParameter("invalid image archive: request body is empty")
            lines = await svc(request).load(tmp)
        except BerthError as e:
            error = e.message
    resp = await json_stream_start(request)
    for line in lines:
        await json_stream_write(resp, {"stream": line + "\n"})
    if error:
        await json_stream_write(resp, {"errorDetail": {"message": error}, "error": error})
    await resp.write_eof()
    return resp


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise InvalidParameter("no image names given")
    return await stream_tar(request, svc(request).save(names))


@routes.get("/images/get")
async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


@routes.get("/images/{name:.+}/get")
async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


@routes.post("/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    src = request.query.get("fromSrc")
    if src is None:
        image = request.query.get("fromImage", "")
        if not image:
            raise InvalidParameter("fromImage or fromSrc is required")
        creds = Credentials.from_header(request.headers.get("X-Registry-Auth"))
        return await _progress_stream(request, request.app[DISTRIBUTION].pull(image, request.query.get("tag", ""),
                                                                                 creds))
    if src != "-":
        raise InvalidParameter("importing from a URL is not supported; send the tarball as the request body")
    async with spooled_body(request, ".import") as (tmp, size):
        if size == 0:
            raise InvalidParameter("invalid import: request body is empty")
        iid = await svc(request).import_rootfs(tmp, request.query.get("repo") or None,
                                               request.query.get("tag") or None,
                                               request.query.getall("changes", []), request.query.get("message", ""))
    resp = await json_stream_start(request)
    await json_stream_write(resp, {"status": iid})
    await resp.write_eof()
    return resp


async def _progress_stream(request: web.Request, progress: AsyncIterator[dict]) -> web.StreamResponse:  # type: ignore[type-arg]
    """Docker's JSON progress stream; an error before the first message is a plain HTTP error,
    after it an ``errorDetail`` message in the stream (the status is already sent). Whatever the
    failure, the chunked body then ends properly: a cut stream reads as "invalid byte in chunk
    length" to the client instead of the reason."""
    first = await anext(progress)
    resp = await json_stream_start(request)
    await json_stream_write(resp, first)
    try:
        async for item in progress:
            await json_stream_write(resp, item)
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nobody to tell
    except Exception as e:
        if isinstance(e, BerthError | OSError | aiohttp.ClientError):
            msg = str(e) or type(e).__name__
        else:  # a bug or an unforeseen input: say so, and keep the traceback in the daemon's log
            log.exception("%s %s failed after the progress stream started", request.method, request.path)
            msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        await json_stream_write(resp, {"errorDetail": {"message": msg}, "error": msg})
    await resp.write_eof()
    return resp


@routes.post("/images/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    creds = Credentials.from_header(request.headers.get("X-Registry-Auth"))
    return await _progress_stream(request, request.app[DISTRIBUTION].push(request.match_info["name"],
                                                                            request.query.get("tag", ""), creds))


@routes.post("/auth")
async def auth(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: auth config must be an object")
    return json_response(await request.app[DISTRIBUTION].login(body))


@routes.get("/distribution/{name:.+}/json")
async def distribution_inspect(request: web.Request) -> web.Response:
    creds = Credentials.from_header(request.headers.get("X-Registry-Auth"))
    return json_response(await request.app[DISTRIBUTION].inspect(request.match_info["name"], creds))


@routes.get("/images/json")
async def list_(request: web.Request) -> web.Response:
    return json_response(svc(request).list(qbool(request, "all"), filters(request)))


@routes.post("/images/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(await svc(request).prune(filters(request)))


@routes.get("/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.Response:
    return json_response(svc(request).inspect(request.match_info["name"]))


@routes.get("/images/{name:.+}/history")
async def history(request: web.Request) -> web.Response:
    return json_response(svc(request).history(request.match_info["name"]))


@routes.post("/images/{name:.+}/tag")
async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo")
    if not repo:
        raise InvalidParameter("repository name must have at least one component")
    await svc(request).tag(request.match_info["name"], repo, request.query.get("tag") or None)
    return web.Response(status=201)


@routes.delete("/images/{name:.+}")
async def remove(request: web.Request) -> web.Response:
    out = await svc(request).remove(request.match_info["name"], qbool(request, "force"),
                                    not qbool(request, "noprune"))
    return json_response(out)
