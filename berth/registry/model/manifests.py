"""Manifests in the store: parsing and validating pushed manifests, storing, resolving and removing them.

The manifest bytes are stored as a blob; the repository holds a revision link (JSON with the digest,
media type and size, so ``Content-Type`` survives even when the body omits ``mediaType``) and tag links.
A PUT is accepted only when every config/layer blob is linked in the repository and every child of an
index is a manifest of the repository; a ``subject`` need not exist yet (referrers may come first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berth.registry.model import blobs, catalog, layout, referrers, tags
from berth.registry.model.digests import Digest, parse_digest
from berth.registry.model.errors import ErrorInfo, RegistryError, manifest_unknown, name_unknown, unsupported
from berth.registry.model.mediatypes import INDEX_TYPES, MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST
from berth.registry.model.names import valid_tag
from berth.registry.model.storage import Storage

# Layers that live elsewhere by design; a manifest may name them without the registry having them.
FOREIGN_LAYERS = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.")
# Content types that say nothing about the manifest kind; the body's mediaType (or shape) decides.
GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")


@dataclass
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: list[str] = field(default_factory=list)

    @property
    def foreign(self) -> bool:
        return bool(self.urls) or self.media_type.startswith(FOREIGN_LAYERS)


@dataclass
class Manifest:
    media_type: str
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise _invalid(f"{where} is not a descriptor")
    mt, raw, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mt:
        raise _invalid(f"{where}.mediaType is required")
    if not isinstance(raw, str):
        raise _invalid(f"{where}.digest is required")
    try:
        d = parse_digest(raw)
    except RegistryError:
        raise _invalid(f"{where}.digest is not a valid digest", digest=raw) from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    urls = obj.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}.urls must be a list of strings")
    return Descriptor(mt, d, size, urls)


def parse(body: bytes, content_type: str | None) -> Manifest:
    """Validate a pushed manifest; the kind comes from ``mediaType``, else ``Content-Type``, else its shape."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in GENERIC_TYPES:
        ct = ""
    if declared and ct and declared != ct:
        raise _invalid("mediaType does not match Content-Type", mediaType=declared, contentType=ct)
    mt = declared or ct or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    if mt not in MEDIA_TYPES:
        raise unsupported(f"manifest media type {mt} is not supported", status=415)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    m = Manifest(mt)
    if m.is_index:
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise _invalid("manifests must be a list")
        m.children = [_descriptor(x, f"manifests[{i}]") for i, x in enumerate(items)]
    else:
        m.config = _descriptor(doc.get("config"), "config")
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        m.layers = [_descriptor(x, f"layers[{i}]") for i, x in enumerate(layers)]
    if doc.get("subject") is not None:
        m.subject = _descriptor(doc["subject"], "subject")
    at = doc.get("artifactType")
    if at is not None and not isinstance(at, str):
        raise _invalid("artifactType must be a string")
    m.artifact_type = at
    ann = doc.get("annotations")
    if ann is not None and (not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())):
        raise _invalid("annotations must map strings to strings")
    m.annotations = ann
    return m


def references(body: bytes) -> tuple[list[Digest], list[Digest], Digest | None]:
    """Lenient (GC) view of a stored manifest: (blobs, child manifests, subject); junk is skipped."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], [], None
    if not isinstance(doc, dict):
        return [], [], None

    def digest_of(obj: Any) -> Digest | None:
        if isinstance(obj, dict) and isinstance(obj.get("digest"), str):
            try:
                return parse_digest(obj["digest"])
            except RegistryError:
                return None
        return None

    blob_refs = [digest_of(doc.get("config"))]
    layers = doc.get("layers")
    if isinstance(layers, list):
        blob_refs += [digest_of(x) for x in layers]
    kids = doc.get("manifests")
    children = [digest_of(x) for x in kids] if isinstance(kids, list) else []
    return ([d for d in blob_refs if d is not None], [d for d in children if d is not None],
            digest_of(doc.get("subject")))


# ---- storage-level operations ----

@dataclass
class Revision:
    digest: Digest
    media_type: str
    size: int


def read_revision(storage: Storage, name: str, d: Digest) -> Revision | None:
    try:
        info = json.loads(storage.get(layout.revision(name, d)))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    return Revision(d, str(info.get("mediaType") or OCI_MANIFEST), int(info.get("size", -1)))


def resolve(storage: Storage, name: str, reference: str) -> Revision:
    if ":" in reference:
        d: Digest | None = parse_digest(reference)
    elif valid_tag(reference):
        d = tags.resolve(storage, name, reference)
    else:
        d = None
    rev = read_revision(storage, name, d) if d is not None else None
    if rev is None:
        if not catalog.exists(storage, name):
            raise name_unknown(name)
        raise manifest_unknown(reference)
    return rev


def fetch(storage: Storage, name: str, reference: str) -> tuple[Revision, bytes]:
    rev = resolve(storage, name, reference)
    try:
        return rev, storage.get(layout.blob(rev.digest))
    except FileNotFoundError:
        raise manifest_unknown(reference) from None


def store(storage: Storage, name: str, tag_names: list[str], d: Digest, body: bytes, m: Manifest, *,
          check_refs: bool = True) -> None:
    """Check references and commit, all under the shared lock so a GC sweep sees all of it or none.

    ``check_refs=False`` is for a pull-through cache, which stores a manifest before the blobs it names.
    """
    with storage.shared_lock():
        problems: list[ErrorInfo] = []
        for desc in ([m.config] if m.config else []) + m.layers if check_refs else []:
            if desc.foreign:
                continue
            size = blobs.linked_size(storage, name, desc.digest)
            if size is None:
                problems.append(ErrorInfo("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(desc.digest)}))
            elif size != desc.size:
                problems.append(ErrorInfo("MANIFEST_INVALID", f"blob {desc.digest} is {size} bytes, "
                                          f"descriptor says {desc.size}", {"digest": str(desc.digest)}))
        for child in m.children if check_refs else []:
            rev = read_revision(storage, name, child.digest)
            if rev is None or storage.stat(layout.blob(child.digest)) is None:
                problems.append(ErrorInfo("MANIFEST_BLOB_UNKNOWN", "manifest references a manifest unknown to "
                                          "the repository", {"digest": str(child.digest)}))
            elif rev.size >= 0 and rev.size != child.size:
                problems.append(ErrorInfo("MANIFEST_INVALID", f"manifest {child.digest} is {rev.size} bytes, "
                                          f"descriptor says {child.size}", {"digest": str(child.digest)}))
        if problems:
            first, *rest = problems
            raise RegistryError(first.code, first.message, first.detail, more=rest)
        target = layout.blob(d)
        if storage.stat(target) is not None:
            storage.touch(target)  # already stored (another repository): refresh it for a running GC
        else:
            storage.put(target, body)
        storage.put(layout.revision(name, d),
                    json.dumps({"digest": str(d), "mediaType": m.media_type, "size": len(body)}).encode())
        if m.subject is not None:
            artifact = m.artifact_type or (m.config.media_type if m.config else None)
            entry = referrers.descriptor(m.media_type, d, len(body), artifact, m.annotations)
            referrers.record(storage, name, m.subject.digest, d, entry)
        for tag in tag_names:
            tags.set_tag(storage, name, tag, d)


def remove(storage: Storage, name: str, reference: str) -> None:
    """Delete by tag (just the tag) or by digest (the revision, every tag on it, its referrers entry)."""
    if ":" not in reference:
        if not valid_tag(reference) or not tags.delete_tag(storage, name, reference):
            raise manifest_unknown(reference)
        return
    d = parse_digest(reference)
    if read_revision(storage, name, d) is None:
        raise manifest_unknown(reference)
    try:
        _, _, subject = references(storage.get(layout.blob(d)))
    except FileNotFoundError:
        subject = None
    storage.delete(layout.revision(name, d))
    for t in tags.tags_pointing_at(storage, name, d):
        tags.delete_tag(storage, name, t)
    if subject is not None:
        referrers.forget(storage, name, subject, d)
