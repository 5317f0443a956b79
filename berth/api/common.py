"""Helpers shared by the API modules: JSON bodies, query flags, filters, stream framing."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from berth.errors import InvalidParameter
from berth.filters import Filters

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdio multiplexing: 1 byte stream, 3 zero bytes, 4 bytes big-endian length."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def qbool(request: web.Request, key: str, default: bool = False) -> bool:
    v = request.query.get(key)
    if v is None:
        return default
    return v.lower() not in ("", "0", "false", "no")


def qint(request: web.Request, key: str, default: int) -> int:
    v = request.query.get(key)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError as e:
        raise InvalidParameter(f"invalid value for {key}: {v!r}") from e


def qtime(request: web.Request, key: str) -> float | None:
    """A time parameter as Docker takes it: Unix seconds (fractions allowed) or RFC 3339."""
    v = request.query.get(key)
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError as e:
        raise InvalidParameter(f"invalid value for {key}: {v!r}") from e


def filters(request: web.Request) -> Filters:
    """The ``filters`` parameter in both shapes Docker accepts ({"k": ["v"]} and {"k": {"v": true}})."""
    return Filters.from_json(request.query.get("filters"))


async def json_body(request: web.Request, required: bool = True) -> Any:
    raw = await request.read()
    if not raw:
        if required:
            raise InvalidParameter("invalid JSON: request body is empty")
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"invalid JSON: {e}") from e


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200) -> web.Response:
    # exactly "application/json", no charset: the Go client compares the header verbatim
    # before it decodes {"message": ...} from an error
    return web.Response(body=(dumps(obj) + "\n").encode(), status=status, content_type="application/json")


async def json_stream_start(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    return resp


async def json_stream_write(resp: web.StreamResponse, obj: Any) -> None:
    await resp.write((dumps(obj) + "\r\n").encode())


async def stream_tar(request: web.Request, chunks: AsyncIterator[bytes],
                     headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Send a tar as it is produced. The first chunk is awaited before the headers go out, so a
    failure to start (a missing path, a bad name) is still a proper HTTP error."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar", **(headers or {})})
    first = await anext(chunks, b"")
    await resp.prepare(request)
    if first:
        await resp.write(first)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp
