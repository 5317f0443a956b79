"""One log line per request: a common-log-format line, or a JSON object with ``--log-format json``."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from berth.registry.endpoints.context import grant_of

log = logging.getLogger("berth.registry.access")


def _user(request: web.BaseRequest) -> str:
    grant = grant_of(request) if isinstance(request, web.Request) else None
    return grant.subject if grant is not None and grant.subject else ""


class TextAccessLogger(AbstractAccessLogger):
    """``addr - user [time] "METHOD path HTTP/x" status bytes "referer" "agent" seconds``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        when = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        line = (f'{request.remote or "-"} - {_user(request) or "-"} [{when}] '
                f'"{request.method} {request.path_qs} HTTP/{request.version.major}.{request.version.minor}" '
                f'{response.status} {response.body_length} "{request.headers.get("Referer", "-")}" '
                f'"{request.headers.get("User-Agent", "-")}" {elapsed:.3f}')
        self.logger.info(line)


class JsonAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "remote": request.remote,
            "user": _user(request) or None,
            "method": request.method,
            "path": request.path_qs,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(elapsed * 1000, 1),
            "user_agent": request.headers.get("User-Agent"),
            "digest": response.headers.get("Docker-Content-Digest"),
        }
        self.logger.info(json.dumps(entry))


def access_logger(fmt: str) -> type[AbstractAccessLogger]:
    if fmt == "json":
        return JsonAccessLogger
    if fmt == "text":
        return TextAccessLogger
    raise ValueError(f"--log-format {fmt!r}: expected text or json")
