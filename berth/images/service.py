"""The images backend the API calls: load, save, import, list, inspect, tag, remove, prune.

Blocking work (decompression, hashing, extraction, tar assembly) runs in threads; every
database write happens on the event loop thread, after all checks passed, so a failed
request leaves the store as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from berth import crashpoint
from berth.errors import Conflict
from berth.filters import Filters, familiar_match, glob, timestamp
from berth.images import reference
from berth.images.archive import ArchiveError, ArchiveReader, SaveImage, hash_range, spool_uncompressed, write_save
from berth.images.changes import apply_changes
from berth.images.store import Image, ImageNotFound, ImageStore
from berth.layers.store import Extracted, LayerStore, chain_id
from berth.threadstream import stream_from_thread

# (container id, running?) for every container made from an image
ContainersUsing = Callable[[str], list[tuple[str, bool]]]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace("000Z", "Z")


def parse_created(s: str | None) -> int:
    if not s:
        return 0
    try:
        s = s.rstrip("Z")
        if "." in s:
            head, frac = s.split(".", 1)
            s = head
        return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


# Docker's image inspect shows its Config as a container config: every field, empty when unset
_IMAGE_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


class ImageService:
    def __init__(self, images: ImageStore, layers: LayerStore, scratch: str, containers_using: ContainersUsing,
                 driver_name: str) -> None:
        self.images = images
        self.layers = layers
        self.scratch = scratch
        self.containers_using = containers_using
        self.driver_name = driver_name
        self._lock = asyncio.Lock()  # serialises commits of images and tags
        # (type, action, actor id, attributes) -> None; the daemon plugs in its event bus
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None

    def _event(self, action: str, image_id: str, name: str = "") -> None:
        self.publish("image", action, name or image_id, {"name": name or image_id})

    def scratch_path(self, suffix: str = "") -> str:
        return os.path.join(self.scratch, secrets.token_hex(8) + suffix)

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> Image:
        return self.images.resolve(name)

    def image_size(self, image: Image) -> int:
        return sum(layer.size for layer in self.layers.chain(image.top_layer))

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

    def all_tags(self) -> list[str]:
        return [t for image in self.images.list() for t in self.images.refs_of(image.id)]

    async def record_repo_digest(self, repo: str, digest: str, iid: str) -> None:
        async with self._lock:
            self.images.add_repo_digest(repo, digest, iid)
        self._event("push", iid, repo)

    # -- save ------------------------------------------------------------------------------------
    def _save_plan(self, names: list[str]) -> list[SaveImage]:
        plan: dict[str, SaveImage] = {}
        for name in names:
            image = self.get(name)
            refs: list[tuple[str, str]] = []
            if not reference.looks_like_id(name) and not image.id.startswith("sha256:" + name):
                ref = reference.parse(name)
                if ref.tag and not ref.digest:
                    refs.append((str(ref), ref.familiar))
            chain = list(reversed(self.layers.chain(image.top_layer)))
            item = plan.get(image.id)
            if item is None:
                item = plan[image.id] = SaveImage(image.id, image.raw_config, image.diff_ids,
                                                  [x.chain_id for x in chain], [x.tar_size for x in chain], [])
            item.refs.extend(r for r in refs if r not in item.refs)
        return list(plan.values())

    def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """Stream a save tarball. Resolves names first, so a bad name fails before any byte is sent."""
        plan = self._save_plan(names)
        return stream_from_thread(lambda out: write_save(out, plan, self.layers.tar_stream))

    # -- list / inspect / history ---------------------------------------------------------------
    def summary(self, image: Image) -> dict[str, Any]:
        cfg = image.config.get("config") or {}
        return {
            "Id": image.id,
            "ParentId": image.parent,
            "RepoTags": image.repo_tags,
            "RepoDigests": image.repo_digests,
            "Created": parse_created(image.config.get("created")),
            "Size": self.image_size(image),
            "SharedSize": -1,
            "Labels": cfg.get("Labels") or {},
            "Containers": len(self.containers_using(image.id)),
        }

    def list(self, all_: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``GET /images/json`` with Docker's filters (``reference`` also narrows each image's tags)."""
        f = Filters.of(filters).validate(LIST_FILTERS)
        dangling_only = f.get_bool("dangling", False)
        for pattern in f.vals("reference"):
            glob(pattern)  # a bad pattern is a 400 even when no image is there to try it on
        befores = [created_ts(self.get(v)) for v in f.vals("before")] + [timestamp(v) for v in f.vals("until")]
        since = max((created_ts(self.get(v)) for v in f.vals("since")), default=None)
        before = min(befores, default=None)
        out = []
        for image in self.images.list():
            created = created_ts(image)
            if (before is not None and not created < before) or (since is not None and not created > since):
                continue
            if "label" in f and not f.match_kv("label", (image.config.get("config") or {}).get("Labels")):
                continue
            entry = self.summary(image)
            if "reference" in f:
                pats = f.vals("reference")
                entry["RepoTags"] = [t for t in image.repo_tags if any(familiar_match(p, t) for p in pats)]
                entry["RepoDigests"] = [d for d in image.repo_digests if any(familiar_match(p, d) for p in pats)]
            if not entry["RepoTags"] and not entry["RepoDigests"]:
                if not all_ and self.images.children(image.id):
                    continue  # an intermediate image, shown only with --all
                if ("dangling" in f and not dangling_only) or "reference" in f:
                    continue
            elif dangling_only and entry["RepoTags"]:
                continue
            out.append(entry)
        return out

    def df_items(self) -> tuple[int, list[dict[str, Any]]]:
        """(LayersSize, image summaries with SharedSize) for ``/system/df``."""
        users: dict[str, int] = {}
        for image in self.images.list():
            for layer in self.layers.chain(image.top_layer):
                users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
        out = []
        for image in self.images.list():
            item = self.summary(image)
            item["SharedSize"] = sum(x.size for x in self.layers.chain(image.top_layer) if users[x.chain_id] > 1)
            out.append(item)
        return sum(x.size for x in self.layers.all()), out

    def inspect(self, name: str) -> dict[str, Any]:
        image = self.get(name)
        c = image.config
        graph = self.layers.graph_data(image.top_layer)
        return {
            "Id": image.id,
            "RepoTags": image.repo_tags,
            "RepoDigests": image.repo_digests,
            "Parent": image.parent,
            "Comment": c.get("comment", ""),
            "Created": c.get("created", ""),
            "DockerVersion": c.get("docker_version", ""),
            "Author": c.get("author", ""),
            "Config": {**_IMAGE_CONFIG_DEFAULTS, **(c.get("config") or {})},
            "Architecture": c.get("architecture", ""),
            "Variant": c.get("variant", ""),
            "Os": c.get("os", ""),
            "OsVersion": c.get("os.version", ""),
            "Size": self.image_size(image),
            "GraphDriver": {"Name": self.driver_name, "Data": graph},
            "RootFS": {"Type": "layers", "Layers": image.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        image = self.get(name)
        chain = list(reversed(self.layers.chain(image.top_layer)))
        sizes = [x.size for x in chain]
        out = []
        for h in image.config.get("history") or []:
            size = 0 if h.get("empty_layer") or not sizes else sizes.pop(0)
            out.append({"Id": "<missing>", "Created": parse_created(h.get("created")),
                        "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                        "Comment": h.get("comment", "")})
        if not out:
            out = [{"Id": "<missing>", "Created": parse_created(image.config.get("created")), "CreatedBy": "",
                    "Tags": None, "Size": s, "Comment": ""} for s in sizes]
        out.reverse()
        if out:
            out[0]["Id"] = image.id
            out[0]["Tags"] = image.repo_tags or None
        return out

    # -- tag / remove / prune --------------------------------------------------------------------
    async def tag(self, name: str, repo: str, tag: str | None) -> None:
        image = self.get(name)
        ref = reference.parse_repo_tag(repo, tag)
        async with self._lock:
            self.images.tag(ref, image.id)
        self._event("tag", image.id, ref.familiar)

    async def remove(self, name: str, force: bool, prune: bool = True) -> list[dict[str, str]]:
        async with self._lock:
            out = self._remove(name, force, prune)
        for item in out:
            for action, what in item.items():
                if action == "Untagged":
                    self._event("untag", what, what)
                elif action == "Deleted" and what.startswith("sha256:") and len(what) == 71:
                    self._event("delete", what)
        return out

    def _remove(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]:
        image = self.get(name)
        short = image.id.split(":", 1)[1][:12]
        by_ref = not reference.looks_like_id(name) and not image.id.startswith("sha256:" + name) \
            and not image.id.startswith(name)
        users = self.containers_using(image.id)
        running = [c for c, r in users if r]
        tags = self.images.refs_of(image.id)
        out: list[dict[str, str]] = []
        if by_ref:
            ref = reference.parse(name)
            if len(tags) > 1 or (ref.digest and tags):
                self.images.untag(ref)
                return [{"Untagged": ref.familiar}]
            if users and not force:
                raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                               f"container {users[0][0][:12]} is using its referenced image {short}")
        elif len(tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {short} (must be forced) - "
                           "image is referenced in multiple repositories")
        if running and not by_ref:
            raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - "
                           f"image is being used by running container {running[0][:12]}")
        if users and not force and not by_ref:
            raise Conflict(f"conflict: unable to delete {short} (must be forced) - "
                           f"image is being used by stopped container {users[0][0][:12]}")
        for t in tags:
            self.images.untag(reference.parse(t))
            out.append({"Untagged": reference.familiar(t)})
        for d in image.repo_digests:
            self.images.untag(reference.parse(d))
            out.append({"Untagged": d})
        if users:
            return out  # a container still needs it: it stays, untagged (as Docker does)
        self.images.delete(image.id)
        out.append({"Deleted": image.id})
        if prune:
            for cid in self.layers.prune(self.images.top_layers()):
                out.append({"Deleted": cid})
        return out

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        f = Filters.of(filters).validate(PRUNE_FILTERS)
        dangling_only = f.get_bool("dangling", True)
        until = f.until()  # bad values are a 400 before anything is deleted
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        async with self._lock:
            for image in self.images.list():
                if dangling_only and image.repo_tags:
                    continue
                if not image.repo_tags and not image.repo_digests and self.images.children(image.id):
                    continue  # an intermediate image goes with its child
                if until is not None and created_ts(image) > until:
                    continue
                if not f.match_labels((image.config.get("config") or {}).get("Labels")):
                    continue
                if self.containers_using(image.id):
                    continue
                size = self.image_size(image)
                for t in self.images.refs_of(image.id):
                    self.images.untag(reference.parse(t))
                    deleted.append({"Untagged": reference.familiar(t)})
                self.images.delete(image.id)
                deleted.append({"Deleted": image.id})
                reclaimed += size
            self.layers.prune(self.images.top_layers())
        return {"ImagesDeleted": deleted, "SpaceReclaimed": reclaimed}


LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")
PRUNE_FILTERS = ("dangling", "label", "label!", "until")


def created_ts(image: Image) -> float:
    """The image's ``created`` as Unix seconds (nanoseconds kept as far as a float holds them)."""
    s = image.config.get("created")
    if not s:
        return 0.0
    frac = re.match(r"[^.]*\.(\d+)", s)
    return parse_created(s) + (float("0." + frac.group(1)) if frac else 0.0)


__all__ = ["ImageNotFound", "ImageService"]
