"""Pull, with Docker's JSON progress messages.

Manifests (an index resolves to linux/amd64) and the config are verified against their digests;
each layer is downloaded, decompressed and extracted at once (the tar extracted as it arrives,
``berth.distribution.pipeline``), and layers of one image at once (vfs layers wait for their
parent's files); a layer counts only once its compressed digest and diff ID matched (else what it
extracted is discarded), and nothing is committed, in chain order, until every layer passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth.distribution.client import (
    MT_DOCKER_LIST,
    MT_OCI_INDEX,
    Credentials,
    Registry,
    RegistryConfig,
    new_session,
    parse_manifest,
)
from berth.distribution.phases import Phases
from berth.distribution.pipeline import ChunkPipe, inflate, settled, start_thread
from berth.distribution.progress import PARALLEL_LAYERS, Progress, progress_bar, short_id
from berth.errors import InvalidParameter, NotFound
from berth.images import reference
from berth.images.service import ImageService
from berth.layers.spool import Spool
from berth.layers.store import Extracted, chain_id

# Layers extracting at once. One: on two cores under the GIL, extracting the five-layer bench
# image's layers all at once made each slower (a 0.2 s layer took 1.0 s beside the 3.5 s one)
# and took berthd's peak RSS from 115 to 180-190 MB; downloads and decompression still overlap.
EXTRACT_LAYERS = 1


class Puller:
    """``DistributionService.pull``; ``seen`` records that a registry's repository has a blob."""

    def __init__(self, images: ImageService, config: RegistryConfig,
                 seen: Callable[[str, Registry], None]) -> None:
        self.images = images
        self.config = config
        self._seen = seen

    async def pull(self, image: str, tag: str, creds: Credentials) -> AsyncIterator[Progress]:
        name = image
        if tag:
            name = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
        ref = reference.parse(name)
        want = ref.digest or ref.tag or "latest"
        async with new_session() as s:
            reg = Registry(s, self.config.endpoint(ref.domain), ref.path, creds, "pull")
            yield {"status": f"Pulling from {reference.familiar(ref.repo)}", "id": ref.tag or ref.digest}
            try:
                raw, mt, header_digest = await reg.get_manifest(want)
            except NotFound as e:
                raise NotFound(f"manifest for {ref.familiar} not found: {e}") from e
            top_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if ref.digest and ref.digest != top_digest:
                raise InvalidParameter(f"manifest digest mismatch: asked {ref.digest}, got {top_digest}")
            if header_digest and header_digest.startswith("sha256:") and header_digest != top_digest:
                raise InvalidParameter(f"manifest digest mismatch: registry said {header_digest}, got {top_digest}")
            manifest = parse_manifest(raw)
            if mt in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in manifest:
                child = _pick_platform(manifest)
                raw, _mt, _h = await reg.get_manifest(child["digest"])
                if "sha256:" + hashlib.sha256(raw).hexdigest() != child["digest"]:
                    raise InvalidParameter(f"manifest digest mismatch for {child['digest']}")
                manifest = parse_manifest(raw)
            cfg_desc = manifest.get("config") or {}
            layers = manifest.get("layers") or []
            if not isinstance(cfg_desc, dict) or not isinstance(cfg_desc.get("digest"), str) or \
                    not isinstance(layers, list) or \
                    not all(isinstance(x, dict) and isinstance(x.get("digest"), str) for x in layers):
                raise InvalidParameter(f"invalid manifest for {ref.familiar}: a config or layer descriptor "
                                       "has no digest")
            raw_config = await self._fetch_small(reg, cfg_desc["digest"])
            diff_ids = _diff_ids(raw_config, cfg_desc["digest"])
            if len(diff_ids) != len(layers):
                raise InvalidParameter(f"image config has {len(diff_ids)} layers, the manifest {len(layers)}")
            queue: asyncio.Queue[Progress | None] = asyncio.Queue()
            phases = Phases(ref.familiar)
            task = asyncio.ensure_future(self._fetch_layers(reg, layers, diff_ids, queue, phases))
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    yield item
                pending = await task  # raises what a layer task raised
            finally:
                if not task.done():  # the client went away: stop and clean up
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            with phases.span("image", "commit"):
                iid, fresh = await self.images.store_pulled(raw_config, pending,
                                                            ref if ref.tag and not ref.digest else None,
                                                            ref.repo, top_digest)
            phases.log()
            yield {"status": f"Digest: {top_digest}"}
            what = ref.familiar
            yield {"status": f"Status: Downloaded newer image for {what}" if fresh else
                   f"Status: Image is up to date for {what}"}

    async def _fetch_small(self, reg: Registry, digest: str) -> bytes:
        resp = await reg.request("GET", f"/v2/{reg.repo}/blobs/{digest}")
        try:
            data = await resp.read()
        finally:
            resp.release()
        algo, _, hexd = digest.partition(":")
        if algo not in ("sha256", "sha512") or hashlib.new(algo, data).hexdigest() != hexd:
            raise InvalidParameter(f"blob {digest} does not match its digest")
        return data

    async def _fetch_layers(self, reg: Registry, layers: list[dict[str, Any]], diff_ids: list[str],
                            queue: asyncio.Queue[Progress | None], phases: Phases) -> dict[str, Extracted]:
        """Every missing layer downloaded, decompressed and extracted at once (each into its own
        directory; vfs layers wait for their parent's), verified, then returned in chain order
        for the caller to commit."""
        lstore = self.images.layers
        sem = asyncio.Semaphore(PARALLEL_LAYERS)
        slots = asyncio.Semaphore(EXTRACT_LAYERS)  # FIFO: taken in chain order
        chains: list[str] = []
        parent = None
        for d in diff_ids:
            parent = chain_id(parent, d)
            chains.append(parent)
        tasks: list[asyncio.Task[Extracted | None] | None] = []
        try:
            for i, (desc, cid) in enumerate(zip(layers, chains, strict=True)):
                short = short_id(desc["digest"])
                if lstore.exists(cid):
                    queue.put_nowait({"status": "Already exists", "progressDetail": {}, "id": short})
                    tasks.append(None)
                else:
                    queue.put_nowait({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
                    below = tasks[i - 1] if i else None
                    tasks.append(asyncio.ensure_future(self._pull_layer(
                        reg, desc, diff_ids[i], chains[i - 1] if i else None, below, sem, slots, queue, phases)))
            running = [t for t in tasks if t is not None]
            if running:
                await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
            for t in running:  # a failure ends the pull (the others are stopped below)
                if t.done() and (err := t.exception()) is not None:
                    raise err
            pending: dict[str, Extracted] = {}
            for t in running:  # chain order: the commit inserts parents first
                ex = t.result()
                if ex is not None:
                    pending[ex.chain_id] = ex
            with phases.span("image", "syncfs"):
                # one flush for every layer, now that the decompressed tars are gone
                await asyncio.to_thread(lstore.sync, list(pending.values()))
        except BaseException:
            live = [t for t in tasks if t is not None]
            for t in live:
                t.cancel()
            await asyncio.gather(*live, return_exceptions=True)
            done = [t.result() for t in live if t.done() and not t.cancelled() and t.exception() is None]
            for ex in done:
                await asyncio.to_thread(lstore.discard, ex)
            raise
        finally:
            queue.put_nowait(None)
        return pending

    async def _pull_layer(self, reg: Registry, desc: dict[str, Any], diff_id: str, parent: str | None,
                          below: asyncio.Task[Extracted | None] | None, sem: asyncio.Semaphore,
                          slots: asyncio.Semaphore, queue: asyncio.Queue[Progress | None],
                          phases: Phases) -> Extracted | None:
        """One layer through the pipeline (``berth.distribution.pipeline``): its bytes hashed and
        decompressed on one thread, the tar extracted on another while it is still arriving.
        Returns the layer extracted and verified (both digests), or raises leaving nothing."""
        digest, total = desc["digest"], int(desc.get("size") or 0)
        algo = digest.partition(":")[0]
        if algo not in ("sha256", "sha512"):
            raise InvalidParameter(f"unsupported digest {digest}")
        short = short_id(digest)
        spool = Spool(self.images.scratch_path(".tar"))
        pipe = ChunkPipe(asyncio.get_running_loop(), algo)

        def timed_inflate() -> str:
            with phases.span(short, "decompress"):
                return inflate(pipe, spool)
        inflating = start_thread("pull-inflate", timed_inflate)
        extracting = asyncio.ensure_future(self._extract_stream(spool, diff_id, parent, below, slots, short, phases))
        try:
            await self._receive(reg, desc, pipe, sem, queue, phases)
            await settled(inflating)
            if pipe.digest() != digest or (total and pipe.count != total):
                raise InvalidParameter(f"filesystem layer verification failed for digest {digest}")
            got = inflating.result()  # a decompression error, once the blob is known to be the one asked for
            if got != diff_id:
                raise InvalidParameter(f"layer {digest}: diff ID mismatch: config says {diff_id}, content is {got}")
            queue.put_nowait({"status": "Download complete", "progressDetail": {}, "id": short})
            self._seen(digest, reg)
            queue.put_nowait({"status": "Extracting", "progressDetail": {}, "id": short})
            ex = await extracting
            queue.put_nowait({"status": "Pull complete", "progressDetail": {}, "id": short})
            return ex
        except BaseException as e:
            pipe.fail(e)
            spool.fail(e)
            extracting.cancel()  # it waits for its thread, and discards what that made
            await asyncio.gather(extracting, return_exceptions=True)
            if not extracting.cancelled() and extracting.exception() is None and extracting.result() is not None:
                await asyncio.to_thread(self.images.layers.discard, extracting.result())  # finished first
            await settled(inflating)
            raise
        finally:
            spool.close()

    async def _receive(self, reg: Registry, desc: dict[str, Any], pipe: ChunkPipe, sem: asyncio.Semaphore,
                       queue: asyncio.Queue[Progress | None], phases: Phases) -> None:
        """The blob's bytes into ``pipe`` (the loop only moves them: hashing and writing happen
        on the pipe's reading thread)."""
        digest, total = desc["digest"], int(desc.get("size") or 0)
        short = short_id(digest)
        if sem.locked():
            queue.put_nowait({"status": "Waiting", "progressDetail": {}, "id": short})
        async with sem:
            t_start = time.monotonic()
            resp = await reg.request("GET", f"/v2/{reg.repo}/blobs/{digest}")
            try:
                done = last = 0
                async for chunk in resp.content.iter_any():  # what arrived, not a full MB: it streams on
                    await pipe.put(chunk)
                    done += len(chunk)
                    if done - last >= 1 << 20 or done == total:
                        last = done
                        queue.put_nowait({"status": "Downloading", "id": short,
                                          "progressDetail": {"current": done, "total": total},
                                          "progress": progress_bar(done, total)})
                    if total and done > total:
                        raise InvalidParameter(f"filesystem layer verification failed for digest {digest}")
            finally:
                resp.release()
            pipe.close_writer()
            phases.add(short, "download", t_start, time.monotonic())
        queue.put_nowait({"status": "Verifying Checksum", "progressDetail": {}, "id": short})

    async def _extract_stream(self, spool: Spool, diff_id: str, parent: str | None,
                              below: asyncio.Task[Extracted | None] | None, slots: asyncio.Semaphore,
                              short: str, phases: Phases) -> Extracted:
        """Extract the layer as its tar arrives; a vfs layer first waits for its parent's files."""
        lstore = self.images.layers
        parent_cache = None
        if parent and lstore.needs_parent_files:
            pex = await below if below is not None else None
            parent_cache = pex.cache_id if pex is not None else lstore.get(parent).cache_id

        def run() -> Extracted:
            with phases.span(short, "extract"):
                return lstore.extract_stream(spool, diff_id, parent, parent_cache)
        async with slots:
            fut = start_thread("pull-extract", run)
            try:
                await settled(fut)
            except asyncio.CancelledError:
                if not fut.cancelled() and fut.exception() is None:
                    await asyncio.to_thread(lstore.discard, fut.result())
                raise
        return fut.result()


def _pick_platform(index: dict[str, Any]) -> dict[str, Any]:
    children = index.get("manifests") or []
    if not isinstance(children, list) or \
            not all(isinstance(c, dict) and isinstance(c.get("digest"), str) for c in children):
        raise InvalidParameter("invalid manifest list: an entry has no digest")
    entries: list[dict[str, Any]] = children
    for c in entries:
        p = c.get("platform")
        if isinstance(p, dict) and p.get("os") == "linux" and p.get("architecture") == "amd64":
            return c
    if len(entries) == 1 and not entries[0].get("platform"):
        return entries[0]
    raise NotFound("no matching manifest for linux/amd64 in the manifest list entries")


def _diff_ids(raw_config: bytes, digest: str) -> list[str]:
    try:
        config = json.loads(raw_config)
    except ValueError as e:
        raise InvalidParameter(f"invalid image config {digest}: {e}") from e
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidParameter(f"invalid image config {digest}: rootfs.diff_ids is not a list of digests")
    return list(diff_ids)
