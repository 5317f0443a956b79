"""Manifest content negotiation: which stored manifest answers a client's ``Accept`` header.

As distribution does: a client whose ``Accept`` names none of the manifest types gets what is stored.
Otherwise a single manifest of a type it does not accept is ``MANIFEST_UNKNOWN`` (it cannot be
converted without changing its digest), and an index it does not accept is replaced by the index's
linux/amd64 manifest when the client accepts that one's type. The digest always names the bytes served.
"""

from __future__ import annotations

import json
from typing import Any

from berth.registry.model.errors import RegistryError
from berth.registry.model.manifests import Revision
from berth.registry.model.mediatypes import INDEX_TYPES, MEDIA_TYPES
from berth.registry.model.registry import RegistryModel

DEFAULT_PLATFORM = ("linux", "amd64")


def accepted(accept_headers: list[str]) -> set[str] | None:
    """The manifest types the client accepts; None when it names none of them (or ``*/*``)."""
    types: set[str] = set()
    for header in accept_headers:
        for item in header.split(","):
            mt = item.split(";")[0].strip().lower()
            if mt in ("*/*", "application/*"):
                return None
            if mt:
                types.add(mt)
    known = types & set(MEDIA_TYPES)
    return known or None


def _not_acceptable(reference: str, stored: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", f"manifest is {stored}, which the Accept header does not include",
                         detail={"reference": reference, "mediaType": stored})


def _platform_child(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    items = doc.get("manifests") if isinstance(doc, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        p = item.get("platform") or {}
        if isinstance(p, dict) and (p.get("os"), p.get("architecture")) == DEFAULT_PLATFORM:
            return item
    return None


def negotiate(model: RegistryModel, name: str, reference: str, rev: Revision, body: bytes,
              accept_headers: list[str]) -> tuple[Revision, bytes]:
    """The (revision, bytes) to serve for this ``Accept``; raises MANIFEST_UNKNOWN when none fits."""
    wanted = accepted(accept_headers)
    if wanted is None or rev.media_type in wanted:
        return rev, body
    if rev.media_type in INDEX_TYPES:
        child = _platform_child(body)
        if child is not None and child.get("mediaType") in wanted and isinstance(child.get("digest"), str):
            try:
                child_rev, child_body = model.get_manifest(name, child["digest"])
            except RegistryError:
                raise _not_acceptable(reference, rev.media_type) from None
            if child_rev.media_type in wanted:
                return child_rev, child_body
    raise _not_acceptable(reference, rev.media_type)
