"""Per-application state shared by the resource handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from berth.registry.endpoints.auth import Auth, Grant
from berth.registry.model.registry import RegistryModel
from berth.registry.proxy.cache import PullThrough


@dataclass
class RegistryContext:
    model: RegistryModel
    auth: Auth | None = None
    allow_anonymous_read: bool = False
    # Manifests bigger than this are refused; the spec asks registries to accept at least 4 MiB.
    max_manifest_size: int = 4 * 1024 * 1024
    proxy: PullThrough | None = None  # pull-through cache mode: misses are fetched from the upstream


CONTEXT: web.AppKey[RegistryContext] = web.AppKey("berth.registry", RegistryContext)
# aiohttp >= 3.12 wants typed request keys; older releases take a plain string.
GRANT_KEY: Any = (web.RequestKey("berth.registry.grant", object) if hasattr(web, "RequestKey")
                  else "berth.registry.grant")


def grant_of(request: web.Request) -> Grant | None:
    """What the authenticated caller may do; None when the registry runs without auth."""
    grant = request.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else None
