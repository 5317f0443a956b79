"""The referrers API: ``GET /v2/<name>/referrers/<digest>[?artifactType=...]``.

When a manifest with a ``subject`` is pushed, :func:`record` writes its descriptor under
``_referrers/<subject>/``; listing reads those entries back, skipping any whose manifest was deleted
since (GC removes such stale entries).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from berth.registry import catalog, layout
from berth.registry.context import RegistryContext
from berth.registry.digests import Digest, parse_digest
from berth.registry.errors import RegistryError, name_unknown
from berth.registry.storage import Storage

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def descriptor(media_type: str, d: Digest, size: int, artifact_type: str | None,
               annotations: dict[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": str(d), "size": size}
    if artifact_type:
        out["artifactType"] = artifact_type
    if annotations:
        out["annotations"] = annotations
    return out


def record(storage: Storage, name: str, subject: Digest, d: Digest, desc: dict[str, Any]) -> None:
    storage.put(layout.referrer_entry(name, subject, d), json.dumps(desc, sort_keys=True).encode())


def forget(storage: Storage, name: str, subject: Digest, d: Digest) -> bool:
    return storage.delete(layout.referrer_entry(name, subject, d))


def entry_digest(entry: str) -> Digest | None:
    algo, _, hexd = entry.partition("-")
    try:
        return parse_digest(f"{algo}:{hexd}")
    except RegistryError:
        return None


def list_referrers(storage: Storage, name: str, subject: Digest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = layout.referrers_dir(name, subject)
    for entry in storage.list(base):
        d = entry_digest(entry)
        if d is None or storage.stat(layout.revision(name, d)) is None:
            continue
        try:
            out.append(json.loads(storage.get(f"{base}/{entry}")))
        except (FileNotFoundError, ValueError):
            continue
    return out


def _listing(storage: Storage, name: str, subject: Digest) -> list[dict[str, Any]] | None:
    if not catalog.exists(storage, name):
        return None
    return list_referrers(storage, name, subject)


async def get_referrers(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    subject = parse_digest(digest)
    found = await asyncio.to_thread(_listing, ctx.storage, name, subject)
    if found is None:
        raise name_unknown(name)
    headers: dict[str, str] = {}
    wanted = request.query.get("artifactType")
    if wanted:
        found = [d for d in found if d.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    # 200 with an empty index even for an unknown subject: referrers may be pushed before their subject.
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type=OCI_INDEX)
