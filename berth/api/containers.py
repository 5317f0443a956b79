"""Container endpoints: create, start, wait, logs, attach, stop, kill, remove, list, inspect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re

from aiohttp import web

from berth import detachkeys
from berth.api import bodies
from berth.api.backends import (
    ARCHIVES,
    CONTAINER_QUERIES,
    CONTAINERS,
    PROCESSES,
    SNAPSHOTS,
    STDIO,
    ContainerBackend,
    ContainerQueryBackend,
)
from berth.api.common import (
    MULTIPLEXED,
    RAW_STREAM,
    api_version,
    body_chunks,
    dumps,
    filters,
    frame,
    json_body,
    json_response,
    qbool,
    qint,
    qtime,
    stream_tar,
)
from berth.api.hijack import Hijacked, hijack
from berth.containers import logs as logfile
from berth.errors import InvalidParameter, NotFound, NotImplementedHere
from berth.runtime.interface import STDERR, STDOUT, Attachment

routes = web.RouteTableDef()


def svc(request: web.Request) -> ContainerBackend:
    return request.app[CONTAINERS]


def queries(request: web.Request) -> ContainerQueryBackend:
    return request.app[CONTAINER_QUERIES]


# Docker's name rule; fullmatch, because Python's ``$`` also matches before a final newline
_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


@routes.post("/containers/create")
async def create(request: web.Request) -> web.Response:
    name = request.query.get("name")
    if name:
        _check_name(name)
    body = await json_body(request, schema=bodies.CREATE_REQUEST)
    hc = body.get("HostConfig")
    if isinstance(hc, dict) and "ConsoleSize" in hc and api_version(request) < (1, 42):
        hc["ConsoleSize"] = [0, 0]  # as dockerd on Linux: the initial console size came with API 1.42
    c, warnings = await svc(request).create(body, name)
    return json_response({"Id": c.id, "Warnings": warnings}, status=201)


@routes.get("/containers/json")
async def list_(request: web.Request) -> web.Response:
    args = (qbool(request, "all"), qint(request, "limit", -1), filters(request))
    q = queries(request)
    out = await q.list_sized(*args) if qbool(request, "size") else q.list(*args)
    return json_response(out)


@routes.get("/containers/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return json_response(await queries(request).inspect(request.match_info["id"], qbool(request, "size")))


@routes.post("/containers/{id}/start")
async def start(request: web.Request) -> web.Response:
    await svc(request).start(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    s = svc(request)
    s.get(request.match_info["id"])  # 404 before headers go out
    condition = request.query.get("condition", "")
    if condition not in ("", "not-running", "next-exit", "removed"):
        raise InvalidParameter(f"invalid condition: {condition!r}")
    waiter = asyncio.ensure_future(s.wait(request.match_info["id"], condition))
    await asyncio.sleep(0)  # register the waiter before the client (told by the headers) starts it
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        # ``docker run -d`` opens a wait and hangs up: stop waiting when the client is gone
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=1.0)
            transport = request.transport
            if transport is None or transport.is_closing():
                return resp
        result = waiter.result()
    finally:
        waiter.cancel()
    await resp.write((dumps(result) + "\n").encode())
    await resp.write_eof()
    return resp


def _stop_timeout(request: web.Request) -> int | None:
    """``t``: seconds before SIGKILL; absent means the container's StopTimeout (or 10)."""
    return qint(request, "t", 0) if request.query.get("t") else None


@routes.post("/containers/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    await svc(request).stop(request.match_info["id"], _stop_timeout(request), request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/restart")
async def restart(request: web.Request) -> web.Response:
    s = svc(request)
    c = s.get(request.match_info["id"])  # a missing container is a 404 before a bad ``t`` is a 400
    await s.restart(c.id, _stop_timeout(request), request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    await svc(request).pause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.Response:
    await svc(request).unpause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/prune")
async def prune(request: web.Request) -> web.Response:
    return json_response(await svc(request).prune(filters(request)))


@routes.get("/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    s = queries(request)
    c = svc(request).get(request.match_info["id"])
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if one_shot and stream:
        raise InvalidParameter("cannot have stream=true and one-shot=true")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    previous = None
    try:
        if not stream and not one_shot:
            previous = s.stats(c.id, None)  # a first sample, so the CPU figures have a baseline
            await asyncio.sleep(1)
        while True:
            previous = s.stats(c.id, previous)
            await resp.write((dumps(previous) + "\n").encode())
            if not stream or not c.state.running or not _exists(svc(request), c.id):
                break
            await asyncio.sleep(1)
    except (ConnectionResetError, BrokenPipeError):
        return resp
    await resp.write_eof()
    return resp


def _exists(s: ContainerBackend, cid: str) -> bool:
    try:
        s.get(cid)
    except NotFound:
        return False
    return True


@routes.get("/containers/{id}/changes")
async def changes(request: web.Request) -> web.Response:
    return json_response(await request.app[SNAPSHOTS].changes(request.match_info["id"]) or None)


@routes.post("/commit")
async def commit(request: web.Request) -> web.Response:
    name = request.query.get("container", "")
    if not name:
        raise InvalidParameter("No container specified")
    overrides = await json_body(request, required=False, schema=bodies.CONFIG)
    iid = await request.app[SNAPSHOTS].commit(name, request.query.get("repo") or None, request.query.get("tag") or None,
                                    request.query.get("comment", ""), request.query.get("author", ""),
                                    request.query.getall("changes", []), qbool(request, "pause", True), overrides)
    return json_response({"Id": iid}, status=201)


@routes.get("/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    async with request.app[ARCHIVES].export(request.match_info["id"]) as chunks:
        return await stream_tar(request, chunks)


def _path_param(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameter("path is required")
    return path


def _stat_header(st: dict[str, object]) -> dict[str, str]:
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(st).encode()).decode()}


@routes.head("/containers/{id}/archive")
async def archive_head(request: web.Request) -> web.Response:
    c = svc(request).get(request.match_info["id"])  # 404 before a missing path is a 400
    st = await request.app[ARCHIVES].stat(c.id, _path_param(request))
    return web.Response(status=200, headers=_stat_header(st))


@routes.get("/containers/{id}/archive", allow_head=False)
async def archive_get(request: web.Request) -> web.StreamResponse:
    c = svc(request).get(request.match_info["id"])
    async with request.app[ARCHIVES].read(c.id, _path_param(request)) as (st, chunks):
        return await stream_tar(request, chunks, _stat_header(st))


@routes.put("/containers/{id}/archive")
async def archive_put(request: web.Request) -> web.Response:
    c = svc(request).get(request.match_info["id"])
    await request.app[ARCHIVES].put(c.id, _path_param(request), body_chunks(request),
                                    qbool(request, "noOverwriteDirNonDir"))
    return web.Response(status=200)


@routes.post("/containers/{id}/rename")
async def rename(request: web.Request) -> web.Response:
    _check_name(request.query.get("name", ""))
    await svc(request).rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


@routes.post("/containers/{id}/update")
async def update(request: web.Request) -> web.Response:
    svc(request).get(request.match_info["id"])  # 404 before a bad body is a 400
    body = await json_body(request, schema=bodies.UPDATE_CONFIG)
    return json_response({"Warnings": await svc(request).update(request.match_info["id"], body)})


@routes.get("/containers/{id}/top")
async def top(request: web.Request) -> web.Response:
    return json_response(await request.app[PROCESSES].top(request.match_info["id"], request.query.get("ps_args", "")))


@routes.post("/containers/{id}/kill")
async def kill(request: web.Request) -> web.Response:
    await svc(request).kill(request.match_info["id"], request.query.get("signal"))
    return web.Response(status=204)


@routes.delete("/containers/{id}")
async def remove(request: web.Request) -> web.Response:
    await svc(request).remove(request.match_info["id"], qbool(request, "force"), qbool(request, "v"))
    return web.Response(status=204)


@routes.post("/containers/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    request.app[STDIO].resize(request.match_info["id"], qint(request, "h", 0), qint(request, "w", 0))
    return web.Response(status=200)


@routes.get("/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    s = queries(request)
    c = svc(request).get(request.match_info["id"])
    stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
    if not stdout and not stderr:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tail = -1 if request.query.get("tail", "all") == "all" else qint(request, "tail", -1)
    timestamps = qbool(request, "timestamps")
    tty = bool(c.config.get("Tty"))
    it = s.logs(c.id, stdout=stdout, stderr=stderr, follow=qbool(request, "follow"), tail=tail,
                since=qtime(request, "since") or 0.0, until=qtime(request, "until") or 0.0)
    resp = web.StreamResponse(status=200, headers={"Content-Type": RAW_STREAM if tty else MULTIPLEXED})
    await resp.prepare(request)
    async for batch in it:  # one write per batch: a big log streams at disk speed, not record by record
        if batch:
            await resp.write(b"".join(_log_frame(rec, timestamps, tty) for rec in batch))
    await resp.write_eof()
    return resp


def _log_frame(rec: logfile.Record, timestamps: bool, tty: bool) -> bytes:
    data = (rec.ts.encode() + b" " + rec.data) if timestamps else rec.data
    return data if tty else frame(rec.stream, data)


@routes.post("/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    s, io = queries(request), request.app[STDIO]
    keys = attach_detach_keys(request)  # Docker checks them before it looks the container up
    c = svc(request).get(request.match_info["id"])
    want_stdin, want_out, want_err = qbool(request, "stdin"), qbool(request, "stdout"), qbool(request, "stderr")
    tty = bool(c.config.get("Tty"))
    h = await hijack(request, RAW_STREAM if tty else MULTIPLEXED)
    try:
        if qbool(request, "logs"):
            with contextlib.suppress(NotImplementedHere):  # log driver "none": there is no past output
                async for batch in s.logs(c.id, stdout=want_out, stderr=want_err, follow=False, tail=-1, since=0,
                                          until=0):
                    if batch:
                        await h.write(b"".join(_log_frame(rec, False, tty) for rec in batch))
        if qbool(request, "stream"):
            att = await h.until_closed(io.attach(c.id))  # a created container: until it starts
            if att is not None:
                await _pump(h, att, tty, want_stdin, want_out, want_err, keys)
                await io.settle(c.id)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        h.close()
    return h.resp


def attach_detach_keys(request: web.Request) -> bytes:
    """The ``detachKeys`` query parameter, parsed (empty: the default); 400 in Docker's words if bad."""
    spec = request.query.get("detachKeys", "")
    try:
        return detachkeys.parse(spec) if spec else b""
    except ValueError as e:
        raise InvalidParameter(f"Invalid detach keys ({spec}) provided") from e


async def _pump(h: Hijacked, att: Attachment, tty: bool, want_stdin: bool, want_out: bool, want_err: bool,
                keys: bytes) -> None:
    async def stdin() -> None:
        escape = detachkeys.Escape(keys) if tty else None  # as Docker: detach keys only with a TTY
        while True:
            data = await h.read()
            if data is None:
                att.close_stdin()
                return
            detached = False
            if escape is not None:
                data, detached = escape.feed(data)
            if data:
                await att.write_stdin(data)
            if detached:  # the container runs on; the connection ends as Docker ends it
                h.close()
                return

    async def output() -> None:
        async for stream, data in att.output():
            if (stream == STDOUT and want_out) or (stream == STDERR and want_err):
                await h.write(data if tty else frame(stream, data))

    feeder = asyncio.ensure_future(stdin()) if want_stdin else None
    try:
        await h.until_closed(output())
    finally:
        if feeder is not None:
            feeder.cancel()
        att.close()


__all__ = ["routes", "logfile"]
