"""Referrers: descriptors of manifests that name a ``subject``, kept per subject.

When a manifest with a ``subject`` is pushed, :func:`record` writes its descriptor under
``_referrers/<subject>/``; listing reads those entries back, skipping any whose manifest was deleted
since (GC removes such stale entries).
"""

from __future__ import annotations

import json
from typing import Any

from berth.registry.model import layout
from berth.registry.model.digests import Digest, parse_digest
from berth.registry.model.errors import RegistryError
from berth.registry.model.storage import Storage


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
