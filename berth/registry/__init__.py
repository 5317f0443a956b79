"""An OCI Distribution Specification v1.1 registry server (aiohttp) with filesystem storage and GC."""

from berth.registry.app import build_app, serve
from berth.registry.cli import main
from berth.registry.gc import GCReport, collect

__all__ = ["GCReport", "build_app", "collect", "main", "serve"]
