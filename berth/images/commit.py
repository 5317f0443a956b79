"""Every path that turns layers into a new image record: load, import, commit, a build step, a pull.

These share one shape (extract or verify layers in threads, then commit the layers and add the image, with
its tags, on the event loop under the write lock, rolling the extraction back if anything fails first), and
none of them needs the listing, inspect or removal side of the service. ``ImageCommits`` holds them and the
state they need (the stores, the scratch directory, the write lock, the event hook); ``ImageService`` in
berth/images/service.py builds on it with the read, tag and removal operations the API also calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from berth import crashpoint
from berth.images import reference
from berth.images.archive import ArchiveError, ArchiveReader, hash_range, spool_uncompressed
from berth.images.changes import apply_changes
from berth.images.store import Image, ImageNotFound, ImageStore
from berth.images.timestamps import rfc3339
from berth.layers.store import Extracted, LayerStore, chain_id


class ImageCommits:
    def __init__(self, images: ImageStore, layers: LayerStore, scratch: str) -> None:
        self.images = images
        self.layers = layers
        self.scratch = scratch
        self._lock = asyncio.Lock()  # serialises commits of images and tags
        # (type, action, actor id, attributes) -> None; the daemon plugs in its event bus
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None

    def _event(self, action: str, image_id: str, name: str = "") -> None:
        self.publish("image", action, name or image_id, {"name": name or image_id})

    def scratch_path(self, suffix: str = "") -> str:
        return os.path.join(self.scratch, secrets.token_hex(8) + suffix)

    # -- load ------------------------------------------------------------------------------
    async def _extract_image(self, reader: ArchiveReader, raw_config: bytes, members: list[str],
                             pending: dict[str, Extracted]) -> None:
        try:
            config = json.loads(raw_config)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as e:
            raise ArchiveError(f"invalid image config: {e}") from e
        if len(diff_ids) != len(members):
            raise ArchiveError(f"invalid image archive: config has {len(diff_ids)} layers, manifest {len(members)}")
        parent = None
        for i, (member, diff_id) in enumerate(zip(members, diff_ids, strict=True)):
            cid = chain_id(parent, diff_id)
            if cid not in pending and not self.layers.exists(cid):
                ex = await asyncio.to_thread(self._extract_layer, reader, member, i, diff_id, parent, pending)
                if ex is not None:
                    pending[cid] = ex
            parent = cid

    def _extract_layer(self, reader: ArchiveReader, member: str, i: int, diff_id: str, parent: str | None,
                       pending: dict[str, Extracted]) -> Extracted | None:
        """One layer of a loaded archive, verified before it is extracted. An uncompressed layer in an
        uncompressed archive (what ``docker save`` writes) is hashed and extracted where it lies;
        others are decompressed into a scratch file first. Not synced: ``load`` syncs once."""
        where = reader.plain_range(member)
        tmp = None
        try:
            if where is None:
                tmp = self.scratch_path(".tar")
                got = spool_uncompressed(reader.open(member), tmp)
                where = (tmp, 0, os.path.getsize(tmp))
            else:
                got = hash_range(*where)
            if got != diff_id:
                raise ArchiveError(f"invalid diffID for layer {i}: expected {diff_id!r}, got {got!r}")
            return self.layers.extract(where[0], diff_id, parent, pending, where[1], where[2], sync=False)
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    async def load(self, path: str) -> list[str]:
        """Load a save tarball; return the lines Docker prints (``Loaded image: …``).

        Consumes ``path``: it is deleted once the layers are extracted, before they are flushed to
        disk, so that the flush does not write out the archive too."""
        reader = await asyncio.to_thread(ArchiveReader, path)
        pending: dict[str, Extracted] = {}
        try:
            try:
                items = await asyncio.to_thread(reader.items)
                if not items:
                    raise ArchiveError("invalid image archive: no images found")
                tags: list[list[reference.Reference]] = []
                for item in items:
                    tags.append([reference.parse(t) for t in item.repo_tags])
                    await self._extract_image(reader, item.raw_config, item.layer_members, pending)
            finally:
                reader.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            await asyncio.to_thread(self.layers.sync, list(pending.values()))
        except BaseException:
            for ex in pending.values():
                self.layers.discard(ex)
            raise
        lines = []
        async with self._lock:
            for ex in pending.values():  # insertion order: parents before children
                self.layers.commit(ex)
            for item, refs in zip(items, tags, strict=True):
                iid = self.images.add(item.raw_config, 0)
                for ref in refs:
                    old = self.images.tag(ref, iid)
                    if old:
                        lines.append(f"The image {ref.familiar} already exists, renaming the old one with ID "
                                     f"{old} to empty string")
                    lines.append(f"Loaded image: {ref.familiar}")
                    self._event("tag", iid, ref.familiar)
                if not refs:
                    lines.append(f"Loaded image ID: {iid}")
                self._event("load", iid, refs[0].familiar if refs else "")
        return lines

    # -- import a rootfs tar -------------------------------------------------------------------
    async def import_rootfs(self, path: str, repo: str | None, tag: str | None, changes: list[str],
                            message: str, platform: str | None = None) -> str:
        ref = reference.parse_repo_tag(repo, tag) if repo else None
        config_section = apply_changes({}, changes)
        tmp = self.scratch_path(".tar")
        ex = None
        try:
            with open(path, "rb") as src:
                diff_id = await asyncio.to_thread(spool_uncompressed, src, tmp)
            ex = await asyncio.to_thread(self.layers.extract, tmp, diff_id, None)
        except BaseException:
            self.layers.discard(ex)
            raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        now = rfc3339(time.time())
        cfg: dict[str, Any] = {
            "architecture": "amd64",
            "config": config_section,
            "created": now,
            "history": [{"created": now, "comment": message or "Imported from -"}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        raw = json.dumps(cfg, separators=(",", ":"), sort_keys=True).encode()
        async with self._lock:
            self.layers.commit(ex)
            iid = self.images.add(raw, 0)
            if ref:
                self.images.tag(ref, iid)
        self._event("import", iid, ref.familiar if ref else "")
        return iid

    # -- commit a container layer ---------------------------------------------------------------------------
    async def commit_layer(self, tar_path: str, base_id: str, cid: str, container_config: dict[str, Any],
                           overrides: dict[str, Any], changes: list[str], repo: str | None, tag: str | None,
                           comment: str, author: str, created_by: str, diff_id: str | None = None) -> str:
        """A new image: ``base_id`` plus the layer in ``tar_path`` (uncompressed), with the
        container's config, then the request's overrides and ``changes`` applied on top.
        ``diff_id``: the tar's digest when the caller hashed it while writing it. ``tar_path`` is
        consumed (deleted once extracted)."""
        ref = reference.parse_repo_tag(repo, tag) if repo else None
        base = self.images.get(base_id)
        ex, diff_id = await self._extract_layer_tar(tar_path, base.top_layer, diff_id)
        crashpoint.hit("commit-after-extract")
        try:
            return await self._commit_extracted(ex, base, ref, diff_id, cid, container_config, overrides,
                                                changes, comment, author, created_by)
        except BaseException:
            if ex is not None and not self.layers.exists(ex.chain_id):
                self.layers.discard(ex)  # nothing recorded it: roll the extraction back
            raise

    async def _extract_layer_tar(self, tar_path: str, parent: str | None,
                                 diff_id: str | None = None) -> tuple[Extracted | None, str]:
        """A container diff tar (a scratch file only the daemon writes) extracted as a layer on
        ``parent``, where it lies; hashed first unless its writer already did (``diff_id``).
        Consumes ``tar_path``: it is deleted before the layer is flushed, so that the flush does
        not write it out too."""
        if diff_id is None:
            diff_id = await asyncio.to_thread(hash_range, tar_path, 0, os.path.getsize(tar_path))
        ex = await asyncio.to_thread(self.layers.extract, tar_path, diff_id, parent, sync=False)
        try:
            os.unlink(tar_path)
            if ex is not None:
                await asyncio.to_thread(self.layers.sync, [ex])
        except BaseException:
            self.layers.discard(ex)
            raise
        return ex, diff_id

    async def commit_built(self, tar_path: str | None, base_id: str | None, config: dict[str, Any],
                           reuse_diff_id: str | None = None) -> str:
        """A build step's image: ``config`` (the builder's whole image config, history included) on
        ``base_id``'s layers, plus the layer in ``tar_path`` when the step made one. The new image's
        parent is ``base_id``, so intermediates stay hidden from ``docker images`` and go with
        their child in ``docker image prune``, as Docker's are. ``tar_path`` is consumed.
        ``reuse_diff_id``: a layer already stored on ``base_id``'s (a build cache source's),
        instead of a new one."""
        base = self.images.get(base_id) if base_id else None
        diff_ids = list(base.diff_ids) if base else []
        ex = None
        if reuse_diff_id is not None:
            if not self.layers.exists(chain_id(base.top_layer if base else None, reuse_diff_id)):
                raise ImageNotFound(f"layer {reuse_diff_id} on {base_id}")
            diff_ids.append(reuse_diff_id)
        elif tar_path is not None:
            ex, diff_id = await self._extract_layer_tar(tar_path, base.top_layer if base else None)
            diff_ids.append(diff_id)
        try:
            cfg = dict(config, rootfs={"type": "layers", "diff_ids": diff_ids})
            raw = json.dumps(cfg, separators=(",", ":"), sort_keys=True).encode()
            async with self._lock:
                self.layers.commit(ex)
                iid = self.images.add(raw, 0, parent=base.id if base else "")
        except BaseException:
            if ex is not None and not self.layers.exists(ex.chain_id):
                self.layers.discard(ex)
            raise
        return iid

    async def _commit_extracted(self, ex: Extracted | None, base: Image, ref: reference.Reference | None,
                                diff_id: str, cid: str, container_config: dict[str, Any],
                                overrides: dict[str, Any], changes: list[str], comment: str, author: str,
                                created_by: str) -> str:
        section = {k: v for k, v in container_config.items() if k not in ("Hostname", "Domainname")}
        section.update({k: v for k, v in overrides.items() if v is not None})
        section = apply_changes(section, changes)
        now = rfc3339(time.time())
        cfg = {k: v for k, v in base.config.items() if k not in ("config", "container_config", "history", "rootfs")}
        cfg.update({
            "config": section, "container": cid, "created": now,
            "history": list(base.config.get("history") or []) + [{"created": now, "created_by": created_by,
                                                                    **({"author": author} if author else {}),
                                                                    **({"comment": comment} if comment else {})}],
            "rootfs": {"type": "layers", "diff_ids": [*base.diff_ids, diff_id]},
        })
        if author:
            cfg["author"] = author
        if comment:
            cfg["comment"] = comment
        raw = json.dumps(cfg, separators=(",", ":"), sort_keys=True).encode()
        async with self._lock:
            self.layers.commit(ex)
            iid = self.images.add(raw, 0, parent=base.id)
            if ref:
                self.images.tag(ref, iid)
        self._event("commit", iid, ref.familiar if ref else "")
        return iid

    # -- what distribution needs ------------------------------------------------------------------------------
    async def store_pulled(self, raw_config: bytes, pending: dict[str, Extracted], ref: reference.Reference | None,
                           repo: str, manifest_digest: str) -> tuple[str, bool]:
        """Commit a pulled image's layers and config, tag it; return (image ID, whether anything changed)."""
        iid = "sha256:" + hashlib.sha256(raw_config).hexdigest()
        async with self._lock:
            existed = True
            try:
                self.images.get(iid)
            except ImageNotFound:
                existed = False
            tagged_before = existed and ref is not None and str(ref) in self.images.refs_of(iid)
            for ex in pending.values():
                self.layers.commit(ex)
            self.images.add(raw_config, 0)
            if ref:
                self.images.tag(ref, iid)
            self.images.add_repo_digest(repo, manifest_digest, iid)
        if not existed:
            self._event("pull", iid, ref.familiar if ref else "")
        return iid, not (existed and (tagged_before or ref is None))

    async def record_repo_digest(self, repo: str, digest: str, iid: str) -> None:
        async with self._lock:
            self.images.add_repo_digest(repo, digest, iid)
        self._event("push", iid, repo)
