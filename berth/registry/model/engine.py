"""The registry served from berthd's own content store (``berthd --registry-addr``).

:class:`EngineRegistry` is the :class:`~berth.registry.model.registry.FilesystemRegistry` code over a
different :class:`~berth.registry.model.storage.Storage`: :class:`EngineStorage` keeps the registry's
own records (repository links, manifest revisions, tags, referrers, upload sessions, ``gc.lock``)
under ``<data-root>/registry`` as usual, but a key ``blobs/sha256/<hex>`` *is* the content store's
blob. So a blob push compressed (``layer.gzip/…``) or an image config (``image.config/…``) is the
very file the registry serves, and an upload is renamed into the content store when it commits.

Which blobs the registry keeps is said with content references, one per link:
``registry.layer/<repo>/<digest>`` while ``<repo>`` links a blob, ``registry.manifest/<repo>/<digest>``
while it holds a manifest revision. They are recorded before the link file is written and released
after it is removed, so the engine's collection (an ``rmi``, a pull's lease ending) never removes a
blob a repository still links. The registry's GC (:func:`berth.registry.model.gc.collect` over this
storage) sees as blobs only those the registry references, and "deleting" one releases the
registry's references to it: the content store removes the file only when nothing else keeps it.

Lending: a repository answers ``HEAD``/``GET`` for a blob it does not link when the engine itself
keeps that blob (a gzip layer or an image config), and a manifest ``PUT`` links such blobs into the
repository. That is how ``docker push`` of an image berthd holds to its own registry finds every
layer "already exists" and moves no bytes. Only the engine's content is lent, never a blob another
repository of the registry uploaded (that needs a mount, as in any registry).

Threads: storage calls run in worker threads; every use of the database (the content store's
references) is handed to the event loop that owns the connection (:meth:`EngineStorage.on_loop`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from berth.registry.model import blobs, layout
from berth.registry.model.digests import Digest
from berth.registry.model.gc import GCReport, collect
from berth.registry.model.manifests import Manifest
from berth.registry.model.registry import FilesystemRegistry
from berth.registry.model.storage import FilesystemStorage

if TYPE_CHECKING:
    from berth.content.store import ContentStore

T = TypeVar("T")
LAYER_REF = "registry.layer/"  # + <repo>/<digest>: the repository links the blob
MANIFEST_REF = "registry.manifest/"  # + <repo>/<digest>: the repository holds the manifest revision
REGISTRY_PREFIX = "registry."
_BLOB_DIR = f"{layout.BLOBS}/sha256"


def _link_ref(key: str) -> str | None:
    """The content reference a link key stands for (sha256 links only), else None."""
    if not key.startswith(layout.REPOSITORIES + "/"):
        return None
    for marker, prefix in (("/_layers/sha256/", LAYER_REF), ("/_manifests/revisions/sha256/", MANIFEST_REF)):
        head, sep, hexd = key.partition(marker)
        if sep and "/" not in hexd:
            return f"{prefix}{head[len(layout.REPOSITORIES) + 1:]}/sha256:{hexd}"
    return None


def _blob_digest(key: str) -> str | None:
    head, _, hexd = key.rpartition("/")
    return f"sha256:{hexd}" if head == _BLOB_DIR and hexd else None


class EngineStorage(FilesystemStorage):
    """The registry tree under ``root`` whose sha256 blobs are the content store's."""

    def __init__(self, root: str, content: ContentStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(root)
        self.content = content
        self.loop = loop

    def on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the event loop's thread (where the database connection is used) and wait."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return fn(*args)
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to the waiting thread
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result()

    def path(self, key: str) -> str:
        digest = _blob_digest(key)
        if digest is not None:
            return self.content.path(digest)  # ValueError for a malformed name, as a bad key
        return super().path(key)

    # -- links carry the content references -------------------------------------------------------------
    def put(self, path: str, data: bytes) -> None:
        ref = _link_ref(path)
        if ref is not None:
            digest = ref.rpartition("/")[2]
            self.on_loop(self.content.keep, ref, digest)  # the reference first: never a link without one
            if not self.content.exists(digest):
                # released and collected (an rmi, a manifest deleted elsewhere) between the caller's
                # check and this link: fail the write rather than link a hole
                self.on_loop(self.content.release, ref)
                raise FileNotFoundError(f"blob {digest} is gone")
        super().put(path, data)

    def delete(self, path: str) -> bool:
        digest = _blob_digest(path)
        if digest is not None:
            # the registry's GC sweeping a blob: drop the registry's hold; the store removes the file
            # only when no image, push cache or other repository keeps it
            return self.on_loop(self._release_blob, digest)
        ref = _link_ref(path)
        gone = super().delete(path)
        if ref is not None:
            self.on_loop(self.content.release, ref)
        return gone

    def _release_blob(self, digest: str) -> bool:
        refs = [r for r in self.content.refs_of(digest) if r.startswith(REGISTRY_PREFIX)]
        self.content.release(*refs)
        return bool(refs)

    def list(self, path: str) -> list[str]:
        if path == layout.BLOBS:
            return sorted({"sha256", *super().list(path)})
        if path == _BLOB_DIR:
            # the registry's blobs are those it references; the engine's own are not its to collect
            refs = self.on_loop(self.content.refs, REGISTRY_PREFIX)
            return sorted({d.removeprefix("sha256:") for d in refs.values() if self.content.exists(d)})
        return super().list(path)


class EngineRegistry(FilesystemRegistry):
    """:class:`RegistryModel` over berthd's content store (see the module docstring)."""

    storage: EngineStorage

    def __init__(self, root: str, content: ContentStore, loop: asyncio.AbstractEventLoop) -> None:
        os.makedirs(root, mode=0o700, exist_ok=True)
        super().__init__(EngineStorage(root, content, loop))
        self.content = content

    def _engine_keeps(self, d: Digest) -> bool:
        if d.algorithm != "sha256":
            return False
        refs = self.storage.on_loop(self.content.refs_of, str(d))
        return any(not r.startswith((REGISTRY_PREFIX, "lease/")) for r in refs)

    def _lent_size(self, d: Digest) -> int | None:
        size = self.stored_blob_size(d)
        return size if size is not None and self._engine_keeps(d) else None

    def blob_size(self, name: str, d: Digest) -> int | None:
        size = super().blob_size(name, d)
        return size if size is not None else self._lent_size(d)

    def put_manifest(self, name: str, tag_names: list[str], d: Digest, body: bytes, m: Manifest, *,
                     check_refs: bool = True) -> None:
        for desc in ([m.config] if m.config else []) + m.layers:
            if not desc.foreign and blobs.linked_size(self.storage, name, desc.digest) is None and \
                    self._lent_size(desc.digest) is not None:
                blobs.adopt(self.storage, name, desc.digest)  # the engine's blob joins the repository
        super().put_manifest(name, tag_names, d, body, m, check_refs=check_refs)

    def collect(self, dry_run: bool = False, delete_untagged: bool = False, grace_seconds: float = 0.0) -> GCReport:
        """The registry's GC; sweeping releases the registry's references (run it in a thread)."""
        return collect(self.storage, dry_run, delete_untagged, grace_seconds=grace_seconds)
