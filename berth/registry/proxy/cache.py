"""Pull-through cache mode: what the local store lacks is fetched from the upstream, checked, and kept.

Manifests
    By digest: served locally once held (a digest never needs re-checking). By tag: served locally
    while the last check is younger than the TTL; after it, one ``HEAD`` to the upstream says whether
    the tag still names the same digest (then nothing is fetched) or the new manifest is fetched. The
    upstream is always asked with every manifest type accepted, so the cache holds what the upstream
    holds and the endpoint negotiates locally. A manifest is stored only when its bytes match the digest
    asked for (or the upstream's ``Docker-Content-Digest``).
Blobs
    A miss starts one fetch per digest (concurrent requests join it: *single flight*). The fetch
    streams into an ingest file; every client reading the blob follows that file as it grows (sent
    by ``sendfile`` from the page cache), so the first client does not wait for the whole blob. The
    last byte is held back from every client until the digest and size are verified: a corrupt
    upstream blob is never served whole (the connection is cut) and never kept. The fsync and rename
    that keep it come after the last byte is released, so a client never waits for the disk. The
    fetch runs on even when its clients go away, so a retry finds it done.
Offline
    When the upstream cannot be reached, what is cached is still served (a tag with a ``Warning``
    header, since it may be stale); anything else is a 503 naming the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

from berth.distribution.client import RegistryError as UpstreamError
from berth.errors import NotFound
from berth.registry.model.digests import Digest, compute, new_hasher, parse_digest
from berth.registry.model.errors import RegistryError, blob_unknown, manifest_unknown
from berth.registry.model.manifests import Revision, parse
from berth.registry.model.registry import RegistryModel
from berth.registry.proxy.upstream import UNREACHABLE, Upstream

log = logging.getLogger("berth.registry.proxy")

CHUNK = 1024 * 1024
SPAN = 256 * 1024  # clients following a fetch are woken per this much new data (or its end)
FAILURES: tuple[type[BaseException], ...] = (*UNREACHABLE, UpstreamError)
STALE_WARNING = '110 berth-registry "Response is Stale: upstream unreachable"'


def unavailable(upstream: Upstream, error: BaseException | str) -> RegistryError:
    return RegistryError("UNKNOWN", f"upstream registry {upstream.base} is unavailable: {error}", status=503)


@dataclass(eq=False)
class BlobFetch:
    """One blob being fetched from the upstream, shared by every client asking for it meanwhile."""

    digest: Digest
    names: list[str]
    key: str = ""
    size: int = -1
    written: int = 0
    verified: bool = False  # every byte is written and matches the digest
    committed: bool = False  # kept in the store as the blob
    error: str | None = None
    task: asyncio.Task[None] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def readable(self) -> int:
        """How far clients may read now: everything once verified, all but the last byte before."""
        return self.size if self.verified else min(self.written, self.size - 1)


class PullThrough:
    def __init__(self, model: RegistryModel, upstream: Upstream, ttl: float) -> None:
        self.model = model
        self.upstream = upstream
        self.ttl = ttl
        self._checked: dict[tuple[str, str], float] = {}  # (repository, tag) -> monotonic time of last check
        self._fetches: dict[Digest, BlobFetch] = {}
        self._manifest_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.upstream_requests = 0  # counted for tests and the bench: what did the cache cost upstream?

    async def close(self) -> None:
        # A verified blob being kept (fsync, rename) is let finish: its clients already have it, and a
        # restart should find it cached. Anything still downloading is cut.
        keeping = [f.task for f in self._fetches.values() if f.verified and f.task is not None]
        if keeping:
            await asyncio.wait(keeping, timeout=30)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.close()

    # ---- manifests ----

    async def _local(self, name: str, reference: str) -> tuple[Revision, bytes] | None:
        try:
            return await asyncio.to_thread(self.model.get_manifest, name, reference)
        except RegistryError:
            return None

    def _fresh(self, name: str, tag: str) -> bool:
        at = self._checked.get((name, tag))
        return at is not None and time.monotonic() - at < self.ttl

    async def manifest(self, name: str, reference: str) -> tuple[Revision, bytes, str | None]:
        """(revision, bytes, Warning header or None) for a manifest, fetching it on a miss."""
        by_digest = ":" in reference
        local = await self._local(name, reference)
        if local is not None and (by_digest or self._fresh(name, reference)):
            return (*local, None)
        lock = self._manifest_locks.setdefault((name, reference), asyncio.Lock())
        async with lock:  # one upstream round trip per reference, however many clients ask at once
            local = await self._local(name, reference)
            if local is not None and (by_digest or self._fresh(name, reference)):
                return (*local, None)
            try:
                fetched = await self._fetch_manifest(name, reference, local)
            except NotFound:
                raise manifest_unknown(reference) from None
            except FAILURES as e:
                if local is not None:
                    log.warning("proxy: serving cached %s:%s, upstream unavailable: %s", name, reference, e)
                    return (*local, STALE_WARNING)
                raise unavailable(self.upstream, e) from None
        return (*fetched, None)

    async def _fetch_manifest(self, name: str, reference: str,
                              local: tuple[Revision, bytes] | None) -> tuple[Revision, bytes]:
        reg = self.upstream.repo(name)
        headers = {"Accept": self.upstream.ACCEPT}
        if local is not None:
            self.upstream_requests += 1
            resp = await reg.request("HEAD", f"/v2/{name}/manifests/{reference}", headers=headers)
            resp.release()
            if resp.headers.get("Docker-Content-Digest") == str(local[0].digest):
                self._checked[(name, reference)] = time.monotonic()
                return local
        self.upstream_requests += 1
        resp = await reg.request("GET", f"/v2/{name}/manifests/{reference}", headers=headers)
        try:
            body = await resp.read()
            content_type = resp.headers.get("Content-Type")
            claimed = resp.headers.get("Docker-Content-Digest")
        finally:
            resp.release()
        want = parse_digest(reference) if ":" in reference else (parse_digest(claimed) if claimed else None)
        d = compute(want.algorithm if want else "sha256", body)
        if want is not None and d != want:
            raise RegistryError("MANIFEST_INVALID", f"upstream manifest does not match its digest {want} "
                                f"(got {d}); not cached", status=502)
        m = parse(body, content_type)
        tags = [] if ":" in reference else [reference]
        await asyncio.to_thread(self.model.put_manifest, name, tags, d, body, m, check_refs=False)
        if tags:
            self._checked[(name, reference)] = time.monotonic()
        return await asyncio.to_thread(self.model.get_manifest, name, str(d))

    # ---- blobs ----

    async def blob_size(self, name: str, d: Digest) -> int | None:
        """The size when the blob is held here (linking cached bytes into ``name`` on the way)."""
        size = await asyncio.to_thread(self.model.blob_size, name, d)
        if size is None and await asyncio.to_thread(self.model.adopt, name, d):
            size = await asyncio.to_thread(self.model.blob_size, name, d)
        return size

    async def head_blob(self, name: str, d: Digest) -> int:
        """A miss answered by the upstream's HEAD, without fetching the bytes."""
        try:
            self.upstream_requests += 1
            resp = await self.upstream.repo(name).request("HEAD", f"/v2/{name}/blobs/{d}")
            resp.release()
        except NotFound:
            raise blob_unknown(str(d)) from None
        except FAILURES as e:
            raise unavailable(self.upstream, e) from None
        if resp.content_length is None:
            raise unavailable(self.upstream, "no Content-Length on a blob HEAD")
        return resp.content_length

    async def fetch(self, name: str, d: Digest) -> BlobFetch:
        """The running fetch of ``d`` (joining one in flight), once the upstream has answered."""
        f = self._fetches.get(d)
        if f is None:
            f = self._fetches[d] = BlobFetch(d, [name])
            task = f.task = asyncio.get_running_loop().create_task(self._run(f))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif name not in f.names:
            f.names.append(name)
            if f.committed:
                await asyncio.to_thread(self.model.adopt, name, d)
        await f.started.wait()
        if f.error is not None:
            if f.error == "404":
                raise blob_unknown(str(d))
            raise unavailable(self.upstream, f.error)
        return f

    async def _run(self, f: BlobFetch) -> None:
        writer = None
        t0 = time.monotonic()
        busy = 0.0  # seconds spent writing and hashing (in the worker thread)
        try:
            self.upstream_requests += 1
            resp = await self.upstream.repo(f.names[0]).request("GET", f"/v2/{f.names[0]}/blobs/{f.digest}")
            try:
                if resp.content_length is None:
                    raise UpstreamError("upstream sent a blob without Content-Length")
                f.key, writer = await asyncio.to_thread(self.model.begin_ingest)
                f.size = resp.content_length
                f.started.set()
                hasher = new_hasher(f.digest.algorithm)

                def write(parts: list[bytes]) -> None:
                    nonlocal busy
                    assert writer is not None
                    w0 = time.perf_counter()
                    for data in parts:
                        writer.write(data)
                        hasher.update(data)
                    busy += time.perf_counter() - w0

                # Batches of about CHUNK, as received (no joining copy): one thread hop and one wake-up
                # of the clients per MiB, not per network read, which from a far upstream is a few KiB.
                parts: list[bytes] = []
                pending = 0
                async for data, _ in resp.content.iter_chunks():
                    if not data:
                        continue
                    parts.append(data)
                    pending += len(data)
                    if pending >= CHUNK or f.written + pending >= f.size:
                        await asyncio.to_thread(write, parts)
                        async with f.changed:
                            f.written += pending
                            f.changed.notify_all()
                        parts, pending = [], 0
                if parts:  # a body shorter than announced: written, and refused just below
                    await asyncio.to_thread(write, parts)
                    f.written += pending
            finally:
                resp.release()
            got = Digest(f.digest.algorithm, hasher.hexdigest())
            if f.written != f.size or got != f.digest:
                raise UpstreamError(f"upstream blob {f.digest} failed verification ({f.written} of {f.size} "
                                    f"bytes, digest {got}); not cached")
            # Every byte is in the ingest file and matches the digest: clients may have the last byte
            # now. Keeping it (fsync, rename into place) happens after, off their path; were that to
            # fail, they still got the right bytes and the cache simply does not hold the blob.
            async with f.changed:
                f.verified = True
                f.changed.notify_all()
            t_verified = time.monotonic()
            await asyncio.to_thread(writer.sync)
            names = list(f.names)
            await asyncio.to_thread(self.model.commit_ingest, f.key, names, f.digest)
            f.committed = True
            late = f.names[len(names):]  # joined while the commit ran: link them too
            for name in late:
                await asyncio.to_thread(self.model.adopt, name, f.digest)
            log.info("proxy: fetched %s, %d bytes, in %.3f s (%.0f MB/s; writing and hashing %.3f s); "
                     "kept %.3f s after release", f.digest, f.size, t_verified - t0,
                     f.size / 1e6 / max(t_verified - t0, 1e-6), busy, time.monotonic() - t_verified)
        except BaseException as e:
            f.error = "404" if isinstance(e, NotFound) else (str(e) or type(e).__name__)
            log.warning("proxy: fetch of %s failed: %s", f.digest, f.error)
            # a request from now on starts a fresh fetch rather than joining this failed one; waiting
            # clients learn of the failure next (they cut their connections); the ingest's removal
            # follows and, should it fail, must not keep them waiting
            if self._fetches.get(f.digest) is f:
                del self._fetches[f.digest]
            f.started.set()
            async with f.changed:
                f.changed.notify_all()
            if f.key:
                try:
                    await asyncio.shield(asyncio.to_thread(self.model.abort_ingest, f.key))
                except OSError as ae:
                    log.warning("proxy: could not remove the ingest of %s: %s", f.digest, ae)
            if not isinstance(e, Exception):
                raise
        finally:
            if writer is not None:
                writer.close()
            if self._fetches.get(f.digest) is f:  # not a fresh fetch started after this one failed
                del self._fetches[f.digest]

    async def spans(self, f: BlobFetch) -> AsyncIterator[tuple[BinaryIO, int, int]]:
        """(file, offset, count) spans of the blob as the fetch writes them, for the caller to send
        (by ``sendfile``); raises ConnectionResetError if the fetch fails before verification."""
        try:
            reader = await asyncio.to_thread(self.model.open_ingest, f.key)
        except FileNotFoundError:  # verified and kept between our joining and now
            reader = await asyncio.to_thread(self.model.open_blob, f.digest)
        try:
            pos = 0
            while pos < f.size:
                want = min(pos + SPAN, f.size)  # a span per SPAN bytes, not per network read

                def ready(at: int = pos, want: int = want) -> bool:
                    return f.verified or f.error is not None or f.readable() >= want or \
                        (f.readable() > at and f.written >= f.size)
                async with f.changed:
                    await f.changed.wait_for(ready)
                if not f.verified and f.error is not None:
                    raise ConnectionResetError(f"upstream blob failed: {f.error}")
                limit = f.readable()
                yield reader, pos, limit - pos
                pos = limit
        finally:
            reader.close()
