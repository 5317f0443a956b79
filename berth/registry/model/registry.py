"""The registry's storage model as one interface, and its filesystem implementation.

The HTTP endpoints (:mod:`berth.registry.endpoints`) and the pull-through proxy reach content only
through :class:`RegistryModel`. :class:`FilesystemRegistry` is today's implementation, over a
:class:`~berth.registry.model.storage.Storage` tree; a second one (serving from berthd's own content
store, so a local push copies nothing) would implement the same protocol. Every method is synchronous
and may block on disk: callers on an event loop run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from berth.registry.model import blobs, catalog, layout, manifests, referrers, tags
from berth.registry.model.digests import Digest
from berth.registry.model.manifests import Manifest, Revision
from berth.registry.model.storage import BlobWriter, FilesystemStorage, Storage
from berth.registry.model.uploads import UploadSessions


class RegistryModel(Protocol):
    """Everything the endpoints need from a registry store."""

    uploads: UploadSessions

    def repo_exists(self, name: str) -> bool: ...

    def repositories(self) -> list[str]: ...

    def blob_size(self, name: str, d: Digest) -> int | None:
        """The blob's size when repository ``name`` holds it, else None."""

    def stored_blob_size(self, d: Digest) -> int | None:
        """The blob's size when any repository (or the cache) holds its bytes, else None."""

    def open_blob(self, d: Digest, offset: int = 0) -> BinaryIO: ...

    def unlink_blob(self, name: str, d: Digest) -> bool: ...

    def mount(self, name: str, d: Digest, sources: list[str]) -> bool:
        """Link ``d`` into ``name`` when one of ``sources`` holds it (True), else False."""

    def repositories_with_blob(self, d: Digest, may_read: Callable[[str], bool]) -> list[str]:
        """A repository holding ``d`` that ``may_read`` allows (at most one is needed to mount from)."""

    def get_manifest(self, name: str, reference: str) -> tuple[Revision, bytes]: ...

    def put_manifest(self, name: str, tag_names: list[str], d: Digest, body: bytes, m: Manifest, *,
                     check_refs: bool = True) -> None: ...

    def delete_manifest(self, name: str, reference: str) -> None: ...

    def tags(self, name: str) -> list[str] | None:
        """The repository's tags, or None when the repository does not exist."""

    def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]: ...

    # -- ingesting content that did not come through an upload session (the pull-through cache) --

    def adopt(self, name: str, d: Digest) -> bool:
        """Link an already stored blob into ``name`` (True), or False when its bytes are not here."""

    def begin_ingest(self) -> tuple[str, BlobWriter]:
        """A fresh ingest: its key and an appending writer."""

    def open_ingest(self, key: str) -> BinaryIO: ...

    def commit_ingest(self, key: str, names: list[str], d: Digest) -> None:
        """Keep verified ingest data as blob ``d``, linked into each of ``names``."""

    def abort_ingest(self, key: str) -> None: ...


class FilesystemRegistry:
    """:class:`RegistryModel` over a storage tree (see :mod:`berth.registry.model.storage` for the layout)."""

    def __init__(self, storage: Storage | str) -> None:
        self.storage = storage if isinstance(storage, Storage) else FilesystemStorage(storage)
        self.uploads = UploadSessions(self.storage)

    def repo_exists(self, name: str) -> bool:
        return catalog.exists(self.storage, name)

    def repositories(self) -> list[str]:
        return catalog.repositories(self.storage)

    def blob_size(self, name: str, d: Digest) -> int | None:
        return blobs.linked_size(self.storage, name, d)

    def stored_blob_size(self, d: Digest) -> int | None:
        st = self.storage.stat(layout.blob(d))
        return st.size if st is not None else None

    def open_blob(self, d: Digest, offset: int = 0) -> BinaryIO:
        return self.storage.reader(layout.blob(d), offset)

    def unlink_blob(self, name: str, d: Digest) -> bool:
        return blobs.unlink(self.storage, name, d)

    def mount(self, name: str, d: Digest, sources: list[str]) -> bool:
        return any(blobs.mount(self.storage, name, source, d) for source in sources)

    def repositories_with_blob(self, d: Digest, may_read: Callable[[str], bool]) -> list[str]:
        if self.stored_blob_size(d) is None:
            return []  # the common case for a new layer: no walk at all
        for r in self.repositories():
            if may_read(r) and blobs.linked_size(self.storage, r, d) is not None:
                return [r]
        return []

    def get_manifest(self, name: str, reference: str) -> tuple[Revision, bytes]:
        return manifests.fetch(self.storage, name, reference)

    def put_manifest(self, name: str, tag_names: list[str], d: Digest, body: bytes, m: Manifest, *,
                     check_refs: bool = True) -> None:
        manifests.store(self.storage, name, tag_names, d, body, m, check_refs=check_refs)

    def delete_manifest(self, name: str, reference: str) -> None:
        manifests.remove(self.storage, name, reference)

    def tags(self, name: str) -> list[str] | None:
        if not catalog.exists(self.storage, name):
            return None
        return tags.list_tags(self.storage, name)

    def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        return referrers.list_referrers(self.storage, name, subject)

    def adopt(self, name: str, d: Digest) -> bool:
        return blobs.adopt(self.storage, name, d)

    def begin_ingest(self) -> tuple[str, BlobWriter]:
        key = layout.proxy_fetch(uuid.uuid4().hex)
        return key, self.storage.writer(key)

    def open_ingest(self, key: str) -> BinaryIO:
        return self.storage.reader(key)

    def commit_ingest(self, key: str, names: list[str], d: Digest) -> None:
        first, *rest = names
        blobs.commit(self.storage, key, first, d)
        for name in rest:
            blobs.adopt(self.storage, name, d)

    def abort_ingest(self, key: str) -> None:
        self.storage.delete(key)
