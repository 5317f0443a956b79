"""Tags: the tag links manifests read and write.

A tag is ``repositories/<name>/_manifests/tags/<tag>/current`` holding the manifest digest.
"""

from __future__ import annotations

from berth.registry.model import layout
from berth.registry.model.digests import Digest, parse_digest
from berth.registry.model.errors import RegistryError
from berth.registry.model.names import valid_tag
from berth.registry.model.storage import Storage


def resolve(storage: Storage, name: str, tag: str) -> Digest | None:
    try:
        raw = storage.get(layout.tag_current(name, tag))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return parse_digest(raw.decode().strip())
    except (RegistryError, UnicodeDecodeError):
        return None  # a damaged tag file reads as no tag


def set_tag(storage: Storage, name: str, tag: str, d: Digest) -> None:
    storage.put(layout.tag_current(name, tag), str(d).encode())


def delete_tag(storage: Storage, name: str, tag: str) -> bool:
    return storage.delete(layout.tag_dir(name, tag))


def list_tags(storage: Storage, name: str) -> list[str]:
    return [t for t in storage.list(layout.tags_dir(name))
            if valid_tag(t) and storage.stat(layout.tag_current(name, t)) is not None]


def tags_pointing_at(storage: Storage, name: str, d: Digest) -> list[str]:
    return [t for t in list_tags(storage, name) if resolve(storage, name, t) == d]
