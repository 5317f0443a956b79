"""Blobs: ``GET``/``HEAD``/``DELETE /v2/<name>/blobs/<digest>`` and the link/commit primitives uploads use.

A blob is visible in a repository only while the repository holds a link to it *and* the blob file
exists. Everything that makes a blob visible runs under the root's shared lock and refreshes the
blob's mtime, which is what keeps a concurrent GC sweep from collecting it (see :mod:`.gc`).
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from berth.registry import layout
from berth.registry.context import RegistryContext
from berth.registry.digests import Digest, parse_digest
from berth.registry.errors import blob_unknown
from berth.registry.storage import Storage

READ_CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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


# ---- HTTP ----

def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """An inclusive (start, end) for a single ``bytes=`` range; None means "send everything".

    Raises ValueError when the range cannot be satisfied (the caller answers 416).
    """
    m = _RANGE.match(value.strip())
    if not m:
        return None  # multi-range or foreign units: ignoring Range is allowed
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # suffix: the last b bytes
        n = int(b)
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(a)
    end = int(b) if b else size - 1
    if start >= size or end < start:
        raise ValueError("range not satisfiable")
    return start, min(end, size - 1)


async def get_blob(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    d = parse_digest(digest)
    size = await asyncio.to_thread(linked_size, ctx.storage, name, d)
    if size is None:
        raise blob_unknown(digest)
    headers = {
        "Docker-Content-Digest": str(d),
        "ETag": f'"{d}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
        "Content-Type": "application/octet-stream",
    }
    start, end, status = 0, size - 1, 200
    rng = request.headers.get("Range")
    if rng:
        try:
            r = parse_range(rng, size)
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}",
                                                     "Docker-Content-Digest": str(d)})
        if r is not None:
            start, end = r
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    if request.method == "HEAD" or length == 0:
        await resp.write_eof()
        return resp
    f = await asyncio.to_thread(ctx.storage.reader, layout.blob(d), start)
    try:
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, left))
            if not chunk:
                break  # cannot happen for immutable blobs; never spin if it does
            left -= len(chunk)
            await resp.write(chunk)
    finally:
        f.close()
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request, ctx: RegistryContext, name: str, digest: str) -> web.StreamResponse:
    # Only the repository's link goes; the bytes stay until GC finds no manifest needs them.
    d = parse_digest(digest)
    if not await asyncio.to_thread(unlink, ctx.storage, name, d):
        raise blob_unknown(digest)
    return web.Response(status=202)
