"""The images backend the API calls: load, save, import, list, inspect, tag, remove, prune.

The paths that make new images (load, import, commit, build steps, pulls) are in berth/images/commit.py,
which ``ImageService`` builds on; this module holds the reads, save, tag and removal.

Blocking work (decompression, hashing, extraction, tar assembly) runs in threads; every
database write happens on the event loop thread, after all checks passed, so a failed
request leaves the store as it was.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth.errors import Conflict
from berth.filters import Filters, familiar_match, glob, timestamp
from berth.images import reference
from berth.images.archive import SaveImage, write_save
from berth.images.commit import ImageCommits
from berth.images.store import Image, ImageNotFound, ImageStore
from berth.images.timestamps import parse_created, rfc3339
from berth.layers.store import LayerStore
from berth.threadstream import stream_from_thread

# (container id, running?) for every container made from an image
ContainersUsing = Callable[[str], list[tuple[str, bool]]]


# Docker's image inspect shows its Config as a container config: every field, empty when unset
_IMAGE_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


class ImageService(ImageCommits):
    def __init__(self, images: ImageStore, layers: LayerStore, scratch: str, containers_using: ContainersUsing,
                 driver_name: str) -> None:
        super().__init__(images, layers, scratch)
        self.containers_using = containers_using
        self.driver_name = driver_name

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> Image:
        return self.images.resolve(name)

    def image_size(self, image: Image) -> int:
        return sum(layer.size for layer in self.layers.chain(image.top_layer))

    def all_tags(self) -> list[str]:
        return [t for image in self.images.list() for t in self.images.refs_of(image.id)]

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

    # the annotations after this method say builtins.list: in the class body, list is this method
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

    def df_items(self) -> tuple[int, builtins.list[dict[str, Any]]]:
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

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
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

    async def remove(self, name: str, force: bool, prune: bool = True) -> builtins.list[dict[str, str]]:
        async with self._lock:
            out = self._remove(name, force, prune)
        for item in out:
            for action, what in item.items():
                if action == "Untagged":
                    self._event("untag", what, what)
                elif action == "Deleted" and what.startswith("sha256:") and len(what) == 71:
                    self._event("delete", what)
        return out

    def _remove(self, name: str, force: bool, prune: bool) -> builtins.list[dict[str, str]]:
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

    async def prune(self, filters: dict[str, builtins.list[str]]) -> dict[str, Any]:
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


__all__ = ["ImageNotFound", "ImageService", "parse_created", "rfc3339"]
