"""Views of a container's filesystem: its changes, its layer as a tar, commit to an image,
and a host path showing its root (for export and the archive endpoints)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from berth.containers.store import Container, ContainerNotFound
from berth.images import reference
from berth.images.changes import apply_changes

if TYPE_CHECKING:
    from berth.containers.service import ContainerService


class Snapshots:
    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc  # lookup, locks, pause/unpause, events; its layers and images
        self.get = svc.get

    async def changes(self, name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.svc.layers.changes, self.svc.get(name).id)

    def write_rw_tar(self, cid: str, out: Any, mtime_clamp: int | None = None) -> None:
        """The container layer as an image layer tar, whiteouts as ``.wh.`` entries (blocking);
        ``mtime_clamp`` caps every entry's mtime (the builder's reproducible layers)."""
        self.svc.layers.write_diff(cid, out, mtime_clamp)

    async def commit(self, name: str, repo: str | None, tag: str | None, comment: str, author: str,
                     changes: list[str], pause: bool, overrides: dict[str, Any] | None) -> str:
        c = self.svc.get(name)
        # everything the request says is checked before any work: a bad --change or tag leaves nothing
        if repo:
            reference.parse_repo_tag(repo, tag)
        section = {k: v for k, v in copy.deepcopy(c.config).items() if k not in ("Hostname", "Domainname")}
        section.update({k: v for k, v in (overrides or {}).items() if v is not None})
        apply_changes(section, changes)
        paused_here = False
        if pause and c.state.Status == "running":
            await self.svc.pause(c.id)
            paused_here = True
        try:
            tmp = self.svc.images.scratch_path(".tar")
            with open(tmp, "wb") as f:
                await asyncio.to_thread(self.write_rw_tar, c.id, f)
        finally:
            if paused_here and c.id in self.svc.by_id and c.state.Status == "paused":
                await self.svc.unpause(c.id)
        try:
            cmd = " ".join([c.path, *c.args])
            iid = await self.svc.images.commit_layer(tmp, c.image_id, c.id, c.config, overrides or {}, changes,
                                                     repo, tag, comment, author, created_by=cmd)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.svc.event(c, "commit", comment=comment)
        return iid

    @contextlib.asynccontextmanager
    async def rootfs_view(self, c: Container, with_mounts: bool = True) -> AsyncIterator[str]:
        """A host path showing the container's filesystem: while it runs, /proc/<pid>/root (its
        volumes and binds included) or, ``with_mounts=False``, the rootfs alone; when stopped, the
        rootfs mounted for the duration under the container's lock."""
        if c.state.running and c.state.Pid:
            yield f"/proc/{c.state.Pid}/root" if with_mounts else self.svc.layers.driver.rootfs_path(c.id)
            return
        async with self.svc.lock(c.id):
            if c.id not in self.svc.by_id:
                raise ContainerNotFound(c.id)
            # mounting (and reading /proc/self/mountinfo) can take a while on a busy host: a thread
            path = await asyncio.to_thread(self.svc.layers.mount_rw, c.id)
            try:
                yield path
            finally:
                if not c.state.running:
                    await asyncio.to_thread(self.svc.layers.unmount_rw, c.id)
