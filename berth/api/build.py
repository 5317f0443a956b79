"""``POST /build``: the classic builder. The context body is spooled to disk, the query decoded
into BuildOptions, and the builder's messages streamed as Docker's JSON lines."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from berth.api.backends import BUILD
from berth.api.common import json_stream_start, json_stream_write, spooled_body
from berth.build.options import BuildOptions
from berth.distribution.client import Credentials
from berth.errors import BerthError, InvalidParameter

routes = web.RouteTableDef()
log = logging.getLogger("berth.api")
_FALSE = ("", "0", "false", "no", "none", "off")


def _bool(request: web.Request, key: str, default: bool = False) -> bool:
    """Lenient, as dockerd's BoolValue: anything but a false-ish word is true."""
    v = request.query.get(key)
    return default if v is None else v.strip().lower() not in _FALSE


def _int(request: web.Request, key: str) -> int:
    v = (request.query.get(key) or "").strip()
    if not v:
        return 0
    try:
        return int(v)
    except ValueError:
        raise InvalidParameter(f"invalid value for {key}: {v!r}") from None


def _json(request: web.Request, key: str, want: type) -> Any:
    """A JSON-valued parameter; empty, ``null`` and absent all mean "none given"."""
    v = (request.query.get(key) or "").strip()
    if v in ("", "null"):
        return want()
    try:
        data = json.loads(v)
    except ValueError as e:
        raise InvalidParameter(f"invalid value for {key}: {e}") from None
    if data is None:
        return want()
    if not isinstance(data, want):
        raise InvalidParameter(f"invalid value for {key}: want a JSON {'object' if want is dict else 'array'}")
    return data


def _registry_auth(header: str | None) -> dict[str, Credentials]:
    """X-Registry-Config: base64url JSON {registry: {username, password, identitytoken, ...}}."""
    if not header:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) or b"{}")
    except ValueError:
        return {}
    out: dict[str, Credentials] = {}
    if isinstance(data, dict):
        for reg, auth in data.items():
            if isinstance(auth, dict):
                out[str(reg)] = Credentials(auth.get("username") or "", auth.get("password") or "",
                                            auth.get("identitytoken") or "")
    return out


def options(request: web.Request) -> BuildOptions:
    q = request.query
    if _bool(request, "squash"):
        raise InvalidParameter("squash is not supported by berth's builder: every step is its own layer "
                               "(flatten with docker export | docker import)")
    if q.get("remote"):
        raise InvalidParameter("remote build contexts are not supported: send the context as the request body")
    if (q.get("version") or "1") not in ("1", ""):
        raise InvalidParameter("BuildKit (version=2) is not supported; berth implements the classic builder")
    stamps = (q.get("timestamps") or "").lower()
    if stamps not in ("", "now", "reproducible"):
        raise InvalidParameter(f"invalid value for timestamps: {stamps!r} (now or reproducible)")
    args = _json(request, "buildargs", dict)
    labels = _json(request, "labels", dict)
    if not all(v is None or isinstance(v, str) for v in args.values()):
        raise InvalidParameter("invalid value for buildargs: values must be strings")
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidParameter("invalid value for labels: values must be strings")
    cache_from = [str(x) for x in _json(request, "cachefrom", list) if x]
    hosts = [h for v in q.getall("extrahosts", []) for h in v.split(",") if h]
    return BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile", tags=[t for t in q.getall("t", []) if t],
        build_args=args, labels=labels, target=q.get("target", ""), nocache=_bool(request, "nocache"),
        pull=_bool(request, "pull"), rm=_bool(request, "rm", True), forcerm=_bool(request, "forcerm"),
        quiet=_bool(request, "q"), cache_from=cache_from, network_mode=q.get("networkmode") or "default",
        platform=q.get("platform", ""), shm_size=_int(request, "shmsize"), memory=_int(request, "memory"),
        memswap=_int(request, "memswap"), cpu_shares=_int(request, "cpushares"),
        cpuset_cpus=q.get("cpusetcpus", ""), extra_hosts=hosts, timestamps_now=stamps == "now",
        registry_auth=_registry_auth(request.headers.get("X-Registry-Config")),
        source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH", ""),
    )


async def _next_or_gone(request: web.Request, messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The builder's next message; a client that hung up meanwhile (a RUN may print nothing for
    minutes) cancels the build, whose containers are then removed."""
    step = asyncio.ensure_future(anext(messages, None))
    while True:
        done, _ = await asyncio.wait({step}, timeout=1.0)
        if done:
            return step.result()
        transport = request.transport
        if transport is None or transport.is_closing():
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await step
            raise ConnectionResetError("the client closed the connection")


@routes.post("/build")
async def build(request: web.Request) -> web.StreamResponse:
    opts = options(request)  # a bad parameter is a 400 before the body is read
    async with spooled_body(request, ".context") as (tmp, _size):
        messages = request.app[BUILD].build(tmp, opts)
        # the context and Dockerfile are checked before the first message: those errors are HTTP errors
        first = await anext(messages, None)
        resp = await json_stream_start(request)
        try:
            if first is not None:
                await json_stream_write(resp, first)
            while (msg := await _next_or_gone(request, messages)) is not None:
                await json_stream_write(resp, msg)
        except (ConnectionResetError, asyncio.CancelledError):
            await messages.aclose()  # type: ignore[attr-defined]  # an async generator: its finally runs now
            raise
        except Exception as e:  # the builder reports its own errors in-stream; this is a bug or I/O
            if isinstance(e, BerthError | OSError | aiohttp.ClientError):
                text = str(e) or type(e).__name__
            else:
                log.exception("POST /build failed after the stream started")
                text = f"{type(e).__name__}: {e}"
            await json_stream_write(resp, {"errorDetail": {"message": text}, "error": text})
        await resp.write_eof()
        return resp
