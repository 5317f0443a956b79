"""Blobs in the store: per-repository links, cross-repository mounts, and committing verified upload data.

A blob is visible in a repository only while the repository holds a link to it *and* the blob file
exists. Everything that makes a blob visible runs under the root's shared lock and refreshes the
blob's mtime, which is what keeps a concurrent GC sweep from collecting it (see :mod:`.gc`).
"""

from __future__ import annotations

from berth.registry.model import layout
from berth.registry.model.digests import Digest
from berth.registry.model.storage import Storage

# ---- storage-level operations (synchronous; run them in a thread) ----

def linked_size(storage: Storage, name: str, d: Digest) -> int | None:
    """The blob's size when ``name`` links it and the content exists, else None."""
    if storage.stat(layout.layer_link(name, d)) is None:
        return None
    st = storage.stat(layout.blob(d))
    return st.size if st is not None else None


def link(storage: Storage, name: str, d: Digest) -> None:
    """Link an existing blob into ``name``. The caller holds the shared lock."""
    storage.put(layout.layer_link(name, d), str(d).encode())


def mount(storage: Storage, name: str, source: str, d: Digest) -> bool:
    """Cross-repository mount: link ``d`` into ``name`` if ``source`` has it."""
    with storage.shared_lock():
        if linked_size(storage, source, d) is None:
            return False
        storage.touch(layout.blob(d))  # fresh mtime: a GC that marked before this link must not sweep it
        link(storage, name, d)
    return True


def adopt(storage: Storage, name: str, d: Digest) -> bool:
    """Link a blob whose bytes are stored (by any repository or the cache) into ``name``."""
    with storage.shared_lock():
        if storage.stat(layout.blob(d)) is None:
            return False
        storage.touch(layout.blob(d))
        link(storage, name, d)
    return True


def commit(storage: Storage, data_key: str, name: str, d: Digest) -> None:
    """Make verified upload data the blob ``d`` (or reuse the existing copy) and link it into ``name``."""
    with storage.shared_lock():
        target = layout.blob(d)
        if storage.stat(target) is not None:
            storage.touch(target)  # deduplicated: refresh it so a running GC keeps it
            storage.delete(data_key)
        else:
            with storage.writer(data_key) as w:
                w.sync()
            storage.touch(data_key)  # rename keeps the mtime; make the new blob look new to GC
            storage.move(data_key, target)
        link(storage, name, d)


def unlink(storage: Storage, name: str, d: Digest) -> bool:
    return storage.delete(layout.layer_link(name, d))
