"""``berthd --registry-addr HOST:PORT``: the registry API served from berthd's own content store.

The endpoints are the standalone registry's (:mod:`berth.registry.endpoints`); the model is
:class:`~berth.registry.model.engine.EngineRegistry`, over ``<data-root>/registry`` for the registry's
records and the engine's content store for blobs. As for the API's TCP listener, a registry that
anyone on the network could push to is refused without TLS: loopback is served as it is.
``--registry-auth`` (and ``--registry-auth-policy``) are the standalone server's ``--auth`` (and
``--auth-policy``), checked before anything is created; the token key lives under the registry root.
Garbage collection runs in the background every ``--registry-gc-interval``, keeping anything written
within ``--registry-gc-grace`` (a push in flight); sweeping a blob releases the registry's reference to
it in the content store, so a blob the engine still uses stays.
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
    from berth.registry.endpoints.auth import Auth
    from berth.registry.model.engine import EngineRegistry

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
    from berth.registry.proxy.upstream import parse_duration

    for flag, value in (("--registry-gc-interval", cfg.registry_gc_interval),
                        ("--registry-gc-grace", cfg.registry_gc_grace)):
        try:
            parse_duration(value)
        except ValueError as e:
            raise SystemExit(f"berthd: {flag}: {e}") from None
    if cfg.registry_auth_policy and not cfg.registry_auth:
        raise SystemExit("berthd: --registry-auth-policy needs --registry-auth (htpasswd:FILE or token:FILE) "
                         "to know who the caller is")
    if cfg.registry_auth:
        try:
            _auth(cfg, b"0" * 64)  # the files are read now, so a bad one stops berthd before it starts
        except (ValueError, OSError) as e:
            raise SystemExit(f"berthd: --registry-auth: {e}") from None
    if not cfg.registry_tlscert and not is_loopback(host or "0.0.0.0"):
        raise SystemExit(f"berthd: refusing to serve the registry on {cfg.registry_addr} without TLS: anyone who "
                         "can reach that address could push to and read from this engine's store. Give "
                         "--registry-tlscert and --registry-tlskey, or listen on a loopback address.")


async def _collect_every(model: EngineRegistry, interval: float, grace: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            # In a thread: the collection is blocking, and it reaches the content store through the loop.
            report = await asyncio.to_thread(model.collect, False, False, grace)
        except OSError as e:
            log.warning("registry GC failed: %s", e)
            continue
        if report.blobs_deleted or report.links_removed:
            log.info("registry GC: %d blob(s) deleted, %d bytes freed, %d link(s) removed",
                     len(report.blobs_deleted), report.bytes_freed, report.links_removed)


def _auth(cfg: Config, token_key: bytes | None) -> Auth:
    from berth.registry.endpoints.auth import auth_from_spec
    from berth.registry.policy import Policy

    policy = Policy.load(cfg.registry_auth_policy) if cfg.registry_auth_policy else None
    return auth_from_spec(cfg.registry_auth, token_secret=token_key, policy=policy)


async def start(cfg: Config, content: ContentStore) -> web.AppRunner:
    """Listen on ``cfg.registry_addr``; the caller cleans the runner up at shutdown."""
    from berth.registry.endpoints.accesslog import access_logger
    from berth.registry.endpoints.app import build_app
    from berth.registry.model.engine import EngineRegistry
    from berth.registry.proxy.upstream import parse_duration
    from berth.registry.server import parse_addr, tls_context

    root = os.path.join(cfg.data_root, "registry")
    model = EngineRegistry(root, content, asyncio.get_running_loop())
    auth = None
    if cfg.registry_auth:
        from berth.registry.tokenkey import load_or_create_key

        key = await asyncio.to_thread(load_or_create_key, root) if cfg.registry_auth.startswith("token:") else None
        auth = _auth(cfg, key)
    app = build_app(root, auth, model=model)

    async def housekeeping(_app: web.Application) -> AsyncIterator[None]:
        from berth.registry.server import DEFAULT_UPLOAD_MAX_AGE, housekeeping

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(housekeeping(model, DEFAULT_UPLOAD_MAX_AGE))]
        interval = parse_duration(cfg.registry_gc_interval)
        if interval > 0:
            tasks.append(loop.create_task(_collect_every(model, interval, parse_duration(cfg.registry_gc_grace))))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(housekeeping)  # expired uploads removed, as by `registry serve`; and GC
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log_class=access_logger("text"),
                           access_log=logging.getLogger("berth.registry.access"))
    await runner.setup()
    host, port = parse_addr(cfg.registry_addr)
    ssl_ctx = tls_context(cfg.registry_tlscert, cfg.registry_tlskey) if cfg.registry_tlscert else None
    await web.TCPSite(runner, host, port, ssl_context=ssl_ctx).start()
    log.info("registry listening on %s (%s, %s, blobs from the engine's content store)", cfg.registry_addr,
             "https" if ssl_ctx else "http", cfg.registry_auth.partition(":")[0] + " auth" if auth else "no auth")
    return runner
