"""An OCI Distribution Specification v1.1 registry server (aiohttp) with filesystem storage and GC.

``model`` is the storage model (no HTTP); ``endpoints`` is the aiohttp application over it. The names
below are loaded on first use, so importing the model (e.g. for GC) does not pull in the HTTP side.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GCReport": "berth.registry.model.gc",
    "collect": "berth.registry.model.gc",
    "build_app": "berth.registry.endpoints.app",
    "serve": "berth.registry.server",
    "main": "berth.registry.cli",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
