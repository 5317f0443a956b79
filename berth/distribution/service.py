"""Pull and push, with Docker's JSON progress messages.

Pull: manifests (an index resolves to linux/amd64) and the config are verified against
their digests; each layer is downloaded, decompressed and extracted at once (the tar extracted
as it arrives, ``berth.distribution.pipeline``), and layers of one image at once (vfs layers
wait for their parent's files); a layer counts only once its compressed digest and diff ID
matched (else what it extracted is discarded), and nothing is committed, in chain order,
until every layer passed. Push: layers are gzip-compressed on every
core (independent gzip members, which every gzip reader accepts), once per layer (the
result is cached, and deterministic, so the same image always gets the same digests),
skipped when the registry has them, and the manifest goes last.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from berth import gz
from berth.content import GZIP_REF, ContentStore, Writer
from berth.db import Step, migrate, schema_version, transaction
from berth.distribution.client import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    Credentials,
    Registry,
    RegistryConfig,
    RegistryError,
    Unauthorized,
    parse_manifest,
)
from berth.distribution.phases import Phases
from berth.distribution.pipeline import ChunkPipe, inflate, limit_malloc_arenas, settled, start_thread
from berth.errors import BerthError, InvalidParameter, NotFound
from berth.images import reference
from berth.images.archive import spool_uncompressed
from berth.images.service import ImageService
from berth.layers.spool import Spool
from berth.layers.store import Extracted, chain_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS compressed_layers (
    diff_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_repos (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repo)
);
"""
# Version 2: push's compressed layers live in the content store, kept by ``layer.gzip/<diff ID>``
# references (moved there by ``_adopt_compressed`` before this step runs); their table goes.
MIGRATIONS: list[Step] = [SCHEMA, "DROP TABLE IF EXISTS compressed_layers;"]
CHUNK = 4 << 20
PARALLEL_LAYERS = 3
# Layers extracting at once. One: on two cores under the GIL, extracting the five-layer bench
# image's layers all at once made each slower (a 0.2 s layer took 1.0 s beside the 3.5 s one)
# and took berthd's peak RSS from 115 to 180-190 MB; downloads and decompression still overlap.
EXTRACT_LAYERS = 1
Progress = dict[str, Any]


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _bar(current: int, total: int) -> str:
    if total <= 0:
        return ""
    width = 50
    filled = min(width, current * width // total)
    return "[" + "=" * max(0, filled - 1) + (">" if filled else "") + " " * (width - filled) + \
        f"]  {current / 1e6:.4g}MB/{total / 1e6:.4g}MB"


class DistributionService:
    def __init__(self, conn: sqlite3.Connection, content: ContentStore, images: ImageService,
                 config: RegistryConfig) -> None:
        self.conn = conn
        self.content = content
        if schema_version(conn, "distribution") < len(MIGRATIONS):
            migrate(conn, "distribution", MIGRATIONS[:1])
            self._adopt_compressed()
        migrate(conn, "distribution", MIGRATIONS)
        self.images = images
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="gzip")
        limit_malloc_arenas()  # pulls' threads would each keep an arena's worth of freed buffers

    def _adopt_compressed(self) -> None:
        """An older data root's compressed layers (rows, and files in distribution/blobs): into the
        content store, references first, so a crash half-way repeats this on the next start."""
        for diff_id, digest in self.conn.execute("SELECT diff_id, digest FROM compressed_layers").fetchall():
            if not self.content.adopt(digest, [GZIP_REF + diff_id]) and self.content.exists(digest):
                self.content.keep(GZIP_REF + diff_id, digest)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300))

    # -- login ------------------------------------------------------------------------------------------
    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        server = (body.get("serveraddress") or "docker.io").removeprefix("https://").removeprefix("http://")
        server = server.split("/", 1)[0]
        if server in ("index.docker.io", "registry-1.docker.io"):
            server = "docker.io"
        creds = Credentials(body.get("username") or "", body.get("password") or "")
        base = self.config.endpoint(server)
        async with self._session() as s:
            reg = Registry(s, base, "", creds)
            try:
                await reg.ping()
            except Unauthorized as e:
                raise LoginFailed(f"login attempt to {base}/v2/ failed with status: 401 Unauthorized") from e
            except aiohttp.ClientError as e:
                raise RegistryError(f"Get \"{base}/v2/\": {e}") from e
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    # -- pull -------------------------------------------------------------------------------------------------
    async def pull(self, image: str, tag: str, creds: Credentials) -> AsyncIterator[Progress]:
        name = image
        if tag:
            name = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
        ref = reference.parse(name)
        want = ref.digest or ref.tag or "latest"
        async with self._session() as s:
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
                short = _short(desc["digest"])
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
        short = _short(digest)
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
        short = _short(digest)
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
                                          "progress": _bar(done, total)})
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


    # -- push --------------------------------------------------------------------------------------------------
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
        async with self._session() as s:
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
            yield {"status": "Preparing", "progressDetail": {}, "id": _short(layer.diff_id)}
        queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        results: dict[str, tuple[str, int]] = {}

        async def one(layer: Any) -> None:
            short = _short(layer.diff_id)
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
                              "progress": _bar(0, size), "id": short})
            await reg.upload(digest, size, _file_sender(path, lambda n: queue.put_nowait(
                {"status": "Pushing", "progressDetail": {"current": n, "total": size}, "progress": _bar(n, size),
                 "id": short})))
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

    def _seen(self, digest: str, reg: Registry) -> None:
        """Remember that ``reg.repo`` has this blob, for cross-repository mounts later."""
        with transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO blob_repos VALUES (?,?,?)", (digest, reg.base, reg.repo))

    def _repos_with(self, digest: str, reg: Registry) -> list[str]:
        rows = self.conn.execute("SELECT repo FROM blob_repos WHERE digest=? AND registry=? AND repo!=?",
                                 (digest, reg.base, reg.repo)).fetchall()
        return [r[0] for r in rows]

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

    # -- distribution inspect -----------------------------------------------------------------------------------
    async def inspect(self, name: str, creds: Credentials) -> dict[str, Any]:
        ref = reference.parse(name)
        async with self._session() as s:
            reg = Registry(s, self.config.endpoint(ref.domain), ref.path, creds, "pull")
            raw, mt, _h = await reg.get_manifest(ref.digest or ref.tag or "latest")
        m = parse_manifest(raw)
        platforms = [c.get("platform") for c in m.get("manifests", []) if c.get("platform")]
        if not platforms:
            platforms = [{"architecture": "amd64", "os": "linux"}]
        return {"Descriptor": {"mediaType": mt or m.get("mediaType", ""),
                               "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)},
                "Platforms": platforms}


class LoginFailed(BerthError):
    status = 401


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


def _decompress_and_hash(src: str, dst: str) -> str:
    with open(src, "rb") as f:
        return spool_uncompressed(f, dst)


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

