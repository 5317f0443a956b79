"""The Engine API's OpenAPI document (v1.45, swagger 2.0) and the routes Berth serves, shared by
the fuzz test and the sweep test. Tests skip when the document is not there."""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from berth.api.server import build_app

SPEC = os.environ.get("BERTH_API_SPEC", "/work/shared/reference/engine-api-v1.45.yaml")
if not os.path.exists(SPEC):
    SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "engine-api-v1.45.yaml")
SWARM = ("/configs", "/nodes", "/secrets", "/services", "/tasks")


def load() -> dict[str, Any] | None:
    """The document, or None if it is absent."""
    if not os.path.exists(SPEC):
        return None
    with open(SPEC) as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


def served_routes() -> list[tuple[str, str]]:
    """(method, path) of every route berthd serves; method ``*`` for catch-alls."""
    app = build_app()  # the route table only: no backends
    out = []
    for r in app.router.routes():
        path = r.resource.canonical if r.resource is not None else ""
        if r.method == "HEAD" and path != "/containers/{id}/archive":
            continue  # aiohttp's automatic HEAD for each GET: no body to check
        if path.endswith("{tail}") or path in SWARM:
            continue  # the swarm catch-alls answer 503 whatever is sent; /swarm itself is kept once
        out.append((r.method, path))
    return sorted(set(out))


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The document's operations by (METHOD, path with its parameters written ``{}``)."""
    ops = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and method != "parameters":
                ops[(method.upper(), _shape(path))] = op
    return ops


def operation(ops: dict[tuple[str, str], dict[str, Any]], method: str, path: str) -> dict[str, Any] | None:
    return ops.get((method if method != "*" else "GET", _shape(path)))


def resolve(defs: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """``s`` with ``$ref`` followed and ``allOf`` merged into one object schema."""
    while "$ref" in s:
        s = defs[s["$ref"].rsplit("/", 1)[1]]
    if "allOf" in s:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in s["allOf"]:
            r = resolve(defs, part)
            merged["properties"].update(r.get("properties") or {})
            merged["required"] += r.get("required") or []
        return merged
    return s
