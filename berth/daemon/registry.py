"""``berthd --registry-addr HOST:PORT``: the registry API served from berthd's own content store.

The endpoints are the standalone registry's (:mod:`berth.registry.endpoints`); the model is
:class:`~berth.registry.model.engine.EngineRegistry`, over ``<data-root>/registry`` for the registry's
records and the engine's content store for blobs. As for the API's TCP listener, a registry that
anyone on the network could push to is refused without TLS: loopback is served as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from berth.daemon.listeners import is_loopback

if TYPE_CHECKING:
    from berth.content.store import ContentStore
    from berth.daemon.config import Config

log = logging.getLogger("berthd")


def check(cfg: Config) -> None:
    """Refuse a bad ``--registry-addr`` before anything is created (exits with the reason)."""
    if not cfg.registry_addr:
        return
    from berth.registry.server import parse_addr

    try:
        host, _port = parse_addr(cfg.registry_addr)
    except ValueError as e:
        raise SystemExit(f"berthd: --registry-addr: {e}") from None
    if bool(cfg.registry_tlscert) != bool(cfg.registry_tlskey):
        raise SystemExit("berthd: --registry-tlscert and --registry-tlskey go together")
    if not cfg.registry_tlscert and not is_loopback(host or "0.0.0.0"):
        raise SystemExit(f"berthd: refusing to serve the registry on {cfg.registry_addr} without TLS: anyone who "
                         "can reach that address could push to and read from this engine's store. Give "
                         "--registry-tlscert and --registry-tlskey, or listen on a loopback address.")


async def start(cfg: Config, content: ContentStore) -> web.AppRunner:
    """Listen on ``cfg.registry_addr``; the caller cleans the runner up at shutdown."""
    from berth.registry.endpoints.accesslog import access_logger
    from berth.registry.endpoints.app import build_app
    from berth.registry.model.engine import EngineRegistry
    from berth.registry.server import parse_addr, tls_context

    root = os.path.join(cfg.data_root, "registry")
    model = EngineRegistry(root, content, asyncio.get_running_loop())
    app = build_app(root, model=model)

    async def housekeeping(_app: web.Application) -> AsyncIterator[None]:
        from berth.registry.server import DEFAULT_UPLOAD_MAX_AGE, housekeeping

        task = asyncio.get_running_loop().create_task(housekeeping(model, DEFAULT_UPLOAD_MAX_AGE))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(housekeeping)  # abandoned upload sessions are removed, as by `registry serve`
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log_class=access_logger("text"),
                           access_log=logging.getLogger("berth.registry.access"))
    await runner.setup()
    host, port = parse_addr(cfg.registry_addr)
    ssl_ctx = tls_context(cfg.registry_tlscert, cfg.registry_tlskey) if cfg.registry_tlscert else None
    await web.TCPSite(runner, host, port, ssl_context=ssl_ctx).start()
    log.info("registry listening on %s (%s, blobs from the engine's content store)", cfg.registry_addr,
             "https" if ssl_ctx else "http")
    return runner
