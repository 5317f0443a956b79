"""Running the registry: listen, optional TLS and pull-through mode, access log, background housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from berth.registry.endpoints.accesslog import access_logger
from berth.registry.endpoints.app import build_app
from berth.registry.endpoints.auth import Auth
from berth.registry.model.housekeeping import clear_ingests
from berth.registry.model.registry import FilesystemRegistry
from berth.registry.proxy.cache import PullThrough
from berth.registry.proxy.upstream import Upstream

log = logging.getLogger("berth.registry")

DEFAULT_UPLOAD_MAX_AGE = 24 * 3600.0
DEFAULT_PROXY_TTL = 168 * 3600.0


@dataclass
class ProxyOptions:
    remote_url: str
    username: str = ""
    password: str = ""
    ttl: float = DEFAULT_PROXY_TTL


def parse_addr(addr: str) -> tuple[str | None, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {addr!r}: expected HOST:PORT")
    host = host.strip("[]")
    return (host or None), int(port)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def housekeeping(model: FilesystemRegistry, max_age: float) -> None:
    """Expire idle upload sessions now and then (every quarter of the age, between 1 s and 10 min)."""
    interval = min(600.0, max(1.0, max_age / 4))
    while True:
        try:
            report = await model.uploads.expire(max_age)
            if report.uploads_removed:
                log.info("expired %d idle upload session(s), %d bytes", len(report.uploads_removed),
                         report.bytes_freed)
        except OSError as e:
            log.warning("upload expiry failed: %s", e)
        await asyncio.sleep(interval)


async def serve(addr: str, root: str, tls_cert: str | None = None, tls_key: str | None = None,
                auth: Auth | None = None, allow_anonymous_read: bool = False, *,
                ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None,
                proxy: ProxyOptions | None = None, upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE,
                log_format: str = "text") -> None:
    """Serve until cancelled (or ``stop`` is set). ``ready`` gets the base URL once listening."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("TLS needs both a certificate and a key")
    logger_class = access_logger(log_format)
    host, port = parse_addr(addr)
    model = FilesystemRegistry(root)
    cache = None
    if proxy is not None:
        upstream = Upstream(proxy.remote_url, proxy.username, proxy.password)
        cache = PullThrough(model, upstream, proxy.ttl)
        await asyncio.to_thread(clear_ingests, model.storage)
    app = build_app(root, auth, allow_anonymous_read, model=model, proxy=cache)
    runner = web.AppRunner(app, access_log_class=logger_class,
                           access_log=logging.getLogger("berth.registry.access"))
    await runner.setup()
    keeper = asyncio.get_running_loop().create_task(housekeeping(model, upload_max_age))
    try:
        ssl_ctx = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx)
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (host or "0.0.0.0", port)  # real port for :0
        bhost = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        url = f"{'https' if ssl_ctx else 'http'}://{bhost}:{bound[1]}"
        mode = f", pull-through cache of {cache.upstream.base}" if cache is not None else ""
        log.info("registry listening on %s (root %s%s)", url, root, mode)
        if ready is not None:
            ready(url)
        await (stop or asyncio.Event()).wait()
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await runner.cleanup()
        if cache is not None:
            await cache.close()
