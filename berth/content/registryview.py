"""The read side of the registry server's blob interface over berthd's content store.

:class:`berth.registry.model.registry.RegistryModel` reads blobs through ``blob_size``,
``stored_blob_size`` and ``open_blob``. :class:`ContentBlobs` answers them from the content store,
so a registry served by berthd (the next step: a ``RegistryModel`` whose blob side is this class and
whose manifests and repository links stay in the registry's own tree) reads the very files push
compressed and pull downloaded, and a local push copies nothing. Which repository may see which
blob is the registry's business, not the store's: ``linked`` answers it. The write side (upload
sessions) maps onto :meth:`ContentStore.writer` the same way: a session is a writer, its PUT a
``commit`` with a reference such as ``registry.repo/<name>/<digest>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from berth.content.store import BlobNotFound, ContentStore

if TYPE_CHECKING:
    from berth.registry.model.digests import Digest


class ContentBlobs:
    def __init__(self, store: ContentStore, linked: Callable[[str, Digest], bool]) -> None:
        self.store = store
        self.linked = linked

    def stored_blob_size(self, d: Digest) -> int | None:
        """The blob's size when the store holds it (the store names blobs by sha256 only)."""
        if d.algorithm != "sha256":
            return None
        return self.store.size(str(d))

    def blob_size(self, name: str, d: Digest) -> int | None:
        size = self.stored_blob_size(d)
        return size if size is not None and self.linked(name, d) else None

    def open_blob(self, d: Digest, offset: int = 0) -> BinaryIO:
        if d.algorithm != "sha256":
            raise FileNotFoundError(str(d))
        try:
            return self.store.open(str(d), offset)
        except BlobNotFound as e:
            raise FileNotFoundError(str(d)) from e  # as the filesystem registry's reader raises
