"""``GET /containers/{id}/attach/ws``: a container's stdio over one WebSocket, as Docker serves it.

Docker never multiplexes here: each chunk of stdout or stderr is one binary message of raw bytes
(a text message before API 1.28, bytes unchanged), and every message the client sends (binary or
text) is stdin. From API 1.42 the
``stdin``/``stdout``/``stderr`` parameters choose the streams (default none); before, all three.
``logs`` sends what was logged first, ``stream`` then follows the live output; ``detachKeys``
ends the attach to a TTY as on the hijacked attach.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, WSMsgType, web

from berth import detachkeys
from berth.api.backends import CONTAINER_QUERIES, CONTAINERS, STDIO
from berth.api.common import api_version, qbool
from berth.api.containers import attach_detach_keys
from berth.errors import BerthError, InvalidParameter
from berth.runtime.interface import STDERR, STDOUT, Attachment

routes = web.RouteTableDef()


@routes.get("/containers/{id}/attach/ws")
async def attach_ws(request: web.Request) -> web.StreamResponse:
    keys = attach_detach_keys(request)
    c = request.app[CONTAINERS].get(request.match_info["id"])
    if api_version(request) >= (1, 42):
        want_in, want_out, want_err = qbool(request, "stdin"), qbool(request, "stdout"), qbool(request, "stderr")
    else:
        want_in = want_out = want_err = True
    tty = bool(c.config.get("Tty"))
    opcode = WSMsgType.BINARY if api_version(request) >= (1, 28) else WSMsgType.TEXT
    ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
    if not ws.can_prepare(request).ok:
        raise InvalidParameter("not a websocket request: Upgrade: websocket is required")
    await ws.prepare(request)
    attached: asyncio.Future[Attachment] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()  # the client closed, or typed the detach keys

    async def stdin() -> None:
        escape = detachkeys.Escape(keys) if tty else None  # as Docker: detach keys only with a TTY
        att = await attached if want_in else None  # stdin waits (unread) until the container's is there
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or att is None:
                continue
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            detached = False
            if escape is not None:
                data, detached = escape.feed(data)
            if data:
                await att.write_stdin(data)
            if detached:
                break
        gone.set()

    async def output() -> None:
        wanted = {STDOUT: want_out, STDERR: want_err}
        if qbool(request, "logs"):
            async for batch in request.app[CONTAINER_QUERIES].logs(
                    c.id, stdout=want_out, stderr=want_err, follow=False, tail=-1, since=0, until=0):
                for rec in batch:
                    await ws.send_frame(rec.data, opcode)
        if not qbool(request, "stream"):
            return
        att = await request.app[STDIO].attach(c.id)  # a created container: until it starts
        if att is None:
            return
        attached.set_result(att)
        async for stream, data in att.output():
            if wanted.get(stream):
                await ws.send_frame(data, opcode)
        await request.app[STDIO].settle(c.id)

    reader = asyncio.ensure_future(stdin())
    writer = asyncio.ensure_future(output())
    waiter = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({writer, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (writer, waiter):
            t.cancel()
        code, why = WSCloseCode.OK, b""
        try:
            await writer
        except BerthError as e:  # e.g. a container that is not running: say why as the socket closes
            code, why = WSCloseCode.INTERNAL_ERROR, e.message.encode()[:120]
        except (asyncio.CancelledError, ConnectionResetError, BrokenPipeError):
            pass
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await ws.close(code=code, message=why)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        if attached.done():
            attached.result().close()
        else:
            attached.cancel()
    return ws
