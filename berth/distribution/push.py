"""Push, with Docker's JSON progress messages.

Layers are gzip-compressed on every core (independent gzip members, which every gzip reader
accepts), once per layer (the result is cached, and deterministic, so the same image always gets
the same digests), skipped when the registry has them, and the manifest goes last.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from berth import gz
from berth.content import GZIP_REF, ContentStore, Writer
from berth.distribution.client import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    Credentials,
    Registry,
    RegistryConfig,
    new_session,
)
from berth.distribution.progress import PARALLEL_LAYERS, Progress, progress_bar, short_id
from berth.errors import InvalidParameter, NotFound
from berth.images import reference
from berth.images.service import ImageService

CHUNK = 4 << 20


class Pusher:
    """``DistributionService.push``; ``seen`` records that a registry's repository has a blob,
    ``repos_with`` names the registry's other repositories known to have it (to mount from)."""

    def __init__(self, content: ContentStore, images: ImageService, config: RegistryConfig,
                 pool: ThreadPoolExecutor, seen: Callable[[str, Registry], None],
                 repos_with: Callable[[str, Registry], list[str]]) -> None:
        self.content = content
        self.images = images
        self.config = config
        self.pool = pool
        self._seen = seen
        self._repos_with = repos_with

    async def push(self, name: str, tag: str, creds: Credentials) -> AsyncIterator[Progress]:
        repo_ref = reference.parse(name, default_tag=False)
        if repo_ref.digest:
            raise InvalidParameter("cannot push a digest reference")
        tags = [tag] if tag else ([repo_ref.tag] if repo_ref.tag else [])
        if not tags:
            tags = sorted(r.rsplit(":", 1)[1] for r in self.images.all_tags()
                          if r.rsplit(":", 1)[0] == repo_ref.repo)
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {repo_ref.familiar_repo}")
        yield {"status": f"The push refers to repository [{repo_ref.familiar_repo}]"}
        async with new_session() as s:
            reg = Registry(s, self.config.endpoint(repo_ref.domain, push=True), repo_ref.path, creds, "pull,push")
            for t in tags:
                full = f"{repo_ref.repo}:{t}"
                try:
                    image = self.images.get(full)
                except NotFound as e:
                    raise NotFound(f"An image does not exist locally with the tag: {reference.familiar(full)}") \
                        from e
                async for p in self._push_one(reg, image, t, repo_ref.repo):
                    yield p

    async def _push_one(self, reg: Registry, image: Any, tag: str, repo: str) -> AsyncIterator[Progress]:
        chain = list(reversed(self.images.layers.chain(image.top_layer)))
        for layer in reversed(chain):
            yield {"status": "Preparing", "progressDetail": {}, "id": short_id(layer.diff_id)}
        queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        results: dict[str, tuple[str, int]] = {}

        async def one(layer: Any) -> None:
            short = short_id(layer.diff_id)
            digest, size, path = await self._compressed(layer)
            results[layer.diff_id] = (digest, size)
            if await reg.blob_exists(digest):
                queue.put_nowait({"status": "Layer already exists", "progressDetail": {}, "id": short})
                self._seen(digest, reg)
                return
            for other in self._repos_with(digest, reg):
                if await reg.mount(digest, other):  # the registry links it: no bytes travel
                    queue.put_nowait({"status": f"Mounted from {other}", "progressDetail": {}, "id": short})
                    self._seen(digest, reg)
                    return
            queue.put_nowait({"status": "Pushing", "progressDetail": {"current": 0, "total": size},
                              "progress": progress_bar(0, size), "id": short})
            await reg.upload(digest, size, _file_sender(path, lambda n: queue.put_nowait(
                {"status": "Pushing", "progressDetail": {"current": n, "total": size},
                 "progress": progress_bar(n, size), "id": short})))
            queue.put_nowait({"status": "Pushed", "progressDetail": {}, "id": short})
            self._seen(digest, reg)

        async def all_layers() -> None:
            sem = asyncio.Semaphore(PARALLEL_LAYERS)

            async def guarded(layer: Any) -> None:
                async with sem:
                    await one(layer)

            tasks = [asyncio.ensure_future(guarded(x)) for x in chain]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:  # one layer failed: stop the others before the session closes
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(all_layers())
        while True:
            item = await queue.get()
            if item is None:
                break
            yield item
        await task
        cfg_digest = image.id
        if not await reg.blob_exists(cfg_digest):
            await reg.upload(cfg_digest, len(image.raw_config), image.raw_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(image.raw_config), "digest": cfg_digest},
            "layers": [{"mediaType": MT_DOCKER_LAYER_GZIP, "size": results[x.diff_id][1],
                        "digest": results[x.diff_id][0]} for x in chain],
        }
        raw = json.dumps(manifest, indent=3).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        await reg.put_manifest(tag, raw, MT_DOCKER_MANIFEST)
        await self.images.record_repo_digest(repo, digest, image.id)
        yield {"status": f"{tag}: digest: {digest} size: {len(raw)}"}
        yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(raw)}}

    async def _compressed(self, layer: Any) -> tuple[str, int, str]:
        """The layer's gzip blob: (digest, size, path), made once and kept in the content store."""
        ref = GZIP_REF + layer.diff_id
        digest = self.content.ref(ref)
        if digest is not None and (size := self.content.size(digest)) is not None:
            return digest, size, self.content.path(digest)
        tar = self.images.scratch_path(".tar")
        w = self.content.writer()  # its own temporary: two pushes may compress the same layer at once
        try:
            with open(tar, "wb") as f:
                await asyncio.to_thread(self.images.layers.tar_stream, layer.chain_id, f)
            await asyncio.get_running_loop().run_in_executor(None, _parallel_gzip, tar, w, self.pool)
            await asyncio.to_thread(w.finish)
            digest = w.commit([ref])
        finally:
            w.abort()
            if os.path.exists(tar):
                os.unlink(tar)
        return digest, w.offset, self.content.path(digest)


def _gzip_member(data: bytes) -> bytes:
    return gz.member(data)  # level 1, mtime 0: the same blob for the same layer


def _parallel_gzip(src: str, out: Writer, pool: ThreadPoolExecutor) -> None:
    """gzip ``src`` in CHUNK-sized members on every core (zlib releases the GIL) into ``out``, which
    hashes as it writes."""
    size = 0
    window = 2 * (os.cpu_count() or 2)
    with open(src, "rb") as f:
        futures: list[Any] = []
        eof = False
        while not eof or futures:
            while not eof and len(futures) < window:
                chunk = f.read(CHUNK)
                if not chunk:
                    eof = True
                    break
                futures.append(pool.submit(_gzip_member, chunk))
            if futures:
                size += out.write(futures.pop(0).result())
        if size == 0:  # an empty layer is still one valid gzip member
            out.write(gzip.compress(b"", mtime=0))

async def _file_sender(path: str, progress: Callable[[int], None]) -> AsyncIterator[bytes]:
    sent = 0
    last = 0
    with open(path, "rb") as f:
        while True:
            chunk = await asyncio.to_thread(f.read, 1 << 20)
            if not chunk:
                return
            sent += len(chunk)
            if sent - last >= 4 << 20:
                last = sent
                progress(sent)
            yield chunk
