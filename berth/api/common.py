"""Helpers shared by the API modules: JSON bodies, query values, filters, stream framing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import struct
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

import berth
from berth.api.backends import SCRATCH
from berth.api.schema import Type, decode
from berth.errors import BerthError, InvalidParameter
from berth.filters import Filters
from berth.threadstream import spool

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
API_VERSION = "berth.api_version"  # request key: the (major, minor) of a /vX.Y prefix, if one was given


def api_version(request: web.Request) -> tuple[int, int]:
    """The request's API version: its /vX.Y prefix, else the newest Berth speaks."""
    v = request.get(API_VERSION)
    if v is not None:
        return v  # type: ignore[no-any-return]
    major, minor = berth.API_VERSION.split(".")
    return int(major), int(minor)


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdio multiplexing: 1 byte stream, 3 zero bytes, 4 bytes big-endian length."""
    return struct.pack(">BxxxL", stream, len(data)) + data


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "none", "off")
_INT = re.compile(r"-?[0-9]{1,19}")
_SECONDS = re.compile(r"-?[0-9]{1,12}(\.[0-9]{0,9})?")
INT64_MAX = (1 << 63) - 1


def qbool(request: web.Request, key: str, default: bool = False) -> bool:
    v = request.query.get(key)
    if v is None:
        return default
    low = v.lower()
    if low in _FALSE:
        return False
    if low in _TRUE:
        return True
    raise InvalidParameter(f"invalid value for {key}: {v!r} (want a boolean: 1, 0, true or false)")


def qint(request: web.Request, key: str, default: int) -> int:
    v = request.query.get(key)
    if v is None or v == "":
        return default
    # ASCII digits only, within int64: Python's int() would also take "１", " 1", "1_0"
    if not _INT.fullmatch(v) or not -INT64_MAX - 1 <= int(v) <= INT64_MAX:
        raise InvalidParameter(f"invalid value for {key}: {v!r}")
    return int(v)


def qtime(request: web.Request, key: str) -> float | None:
    """A time parameter as Docker takes it: Unix seconds (fractions allowed) or RFC 3339."""
    v = request.query.get(key)
    if not v:
        return None
    if _SECONDS.fullmatch(v):
        return float(v)
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError) as e:
        raise InvalidParameter(f"invalid value for {key}: {v!r}") from e


def filters(request: web.Request) -> Filters:
    """The ``filters`` parameter in both shapes Docker accepts ({"k": ["v"]} and {"k": {"v": true}})."""
    return Filters.from_json(request.query.get("filters"))


class TooLarge(BerthError):
    status = 413


# Bodies of JSON endpoints are small (a create body with an inline seccomp profile is ~60 KB).
# The cap bounds what one request costs: json.loads holds the GIL, so even in a thread it
# stalls the event loop for as long as it parses (~5 ms a MiB measured here).
JSON_LIMIT = 2 << 20
_THREAD_OVER = 64 << 10  # bodies larger than this are parsed and checked off the event loop


async def read_capped(request: web.Request, limit: int = JSON_LIMIT) -> bytes:
    """The request body, refused with 413 once it is larger than ``limit``. What is left
    unread is drained by aiohttp after the answer, so the client still reads the 413."""
    too_large = TooLarge(f"request body too large: a JSON body may be at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise too_large
    return bytes(buf)


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def parse_json(raw: bytes, schema: Type | None = None) -> Any:
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # ValueError covers JSONDecodeError, NaN/Infinity and integers of more than 4300 digits
        raise InvalidParameter(f"invalid JSON: {str(e)[:200] or type(e).__name__}") from e
    if schema is None:
        return data
    try:
        return decode(data, schema)
    except RecursionError as e:
        raise InvalidParameter("invalid JSON: nested too deeply") from e


async def json_body(request: web.Request, required: bool = True, schema: Type | None = None) -> Any:
    """The JSON body, capped in size and, with ``schema``, checked field by field as dockerd's
    Go decoder does; a large body is parsed in a worker thread."""
    raw = await read_capped(request)
    if not raw.strip():
        if required:
            raise InvalidParameter("invalid JSON: request body is empty")
        return None
    if len(raw) > _THREAD_OVER:
        return await asyncio.to_thread(parse_json, raw, schema)
    return parse_json(raw, schema)


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


def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, in chunks of up to 1 MiB."""
    return request.content.iter_chunked(1 << 20)


@contextlib.asynccontextmanager
async def spooled_body(request: web.Request, suffix: str) -> AsyncIterator[tuple[str, int]]:
    """The request body written to a scratch file: (path, size); the file is gone afterwards."""
    path = request.app[SCRATCH].scratch_path(suffix)
    try:
        yield path, await spool(body_chunks(request), path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
