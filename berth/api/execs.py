"""Exec endpoints: create, start (hijacked, TTY or multiplexed), inspect, resize."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from berth import detachkeys
from berth.api import bodies
from berth.api.backends import EXECS, ExecBackend
from berth.api.common import MULTIPLEXED, RAW_STREAM, api_version, frame, json_body, json_response, qint
from berth.api.hijack import hijack

routes = web.RouteTableDef()


def svc(request: web.Request) -> ExecBackend:
    return request.app[EXECS]


@routes.post("/containers/{id}/exec")
async def create(request: web.Request) -> web.Response:
    body = await json_body(request, schema=bodies.EXEC_CONFIG)
    if isinstance(body, dict) and api_version(request) < (1, 42):
        body.pop("ConsoleSize", None)  # an API 1.42 field: older requests have none, as dockerd
    s = svc(request).create(request.match_info["id"], body)
    return json_response({"Id": s.id}, status=201)


@routes.post("/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, required=False, schema=bodies.EXEC_START) or {}
    s = svc(request)
    session = s.get(request.match_info["id"])
    detach = bool(body.get("Detach"))
    # as dockerd: the start's ConsoleSize counts from API 1.42, and only with the start's Tty
    size = body.get("ConsoleSize") if body.get("Tty") and api_version(request) >= (1, 42) else None
    io = await s.start(session.id, detach, size)
    if detach:
        return web.Response(status=200)
    h = await hijack(request, RAW_STREAM if session.tty else MULTIPLEXED)

    async def stdin() -> None:
        escape = detachkeys.Escape(session.detach_keys) if session.tty else None
        while True:
            data = await h.read()
            if data is None:
                io.close_stdin()
                return
            detached = False
            if escape is not None:
                data, detached = escape.feed(data)
            if data:
                await io.write_stdin(data)
            if detached:  # the process runs on; its output is dropped from here on
                h.close()
                return

    async def output() -> None:
        async for stream, data in io.output():
            if (stream == 1 and not session.stdout) or (stream == 2 and not session.stderr):
                continue
            await h.write(data if session.tty else frame(stream, data))
        await session.done.wait()
        if session.error:  # Docker writes why the process could not start to its stdout
            msg = session.error.encode() + b"\r\n"
            await h.write(msg if session.tty else frame(1, msg))

    feeder = asyncio.ensure_future(stdin()) if session.stdin else None
    try:
        await h.until_closed(output())
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        io.discard_output()  # a client gone early must not stall the process on a full pipe
        h.close()
    return h.resp


@routes.get("/exec/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return json_response(svc(request).get(request.match_info["id"]).inspect())


@routes.post("/exec/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    svc(request).resize(request.match_info["id"], qint(request, "h", 0), qint(request, "w", 0))
    return web.Response(status=201)
