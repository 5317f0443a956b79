"""Views of a container's filesystem: its changes, its layer as a tar, commit to an image,
and a host path showing its root (for export and the archive endpoints)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from berth.containers import cpview
from berth.containers.store import Container, ContainerNotFound
from berth.errors import Conflict
from berth.images import reference
from berth.images.changes import apply_changes
from berth.runtime.interface import RuntimeFailure

if TYPE_CHECKING:
    from berth.containers.service import ContainerService


class Snapshots:
    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc  # lookup, locks, pause/unpause, events; its layers and images
        self.get = svc.get

    async def changes(self, name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.svc.layers.changes, self.svc.get(name).id)

    def write_rw_tar(self, cid: str, out: Any, mtime_clamp: int | None = None) -> str:
        """The container layer as an image layer tar, whiteouts as ``.wh.`` entries (blocking);
        ``mtime_clamp`` caps every entry's mtime (the builder's reproducible layers). Returns
        the tar's diff ID (hashed while written)."""
        return self.svc.layers.write_diff(cid, out, mtime_clamp)

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
            try:
                await self.svc.pause(c.id)
                paused_here = True
            except (RuntimeFailure, Conflict):
                # it exited between our look and the runtime's (its exit not yet recorded): there is
                # nothing left to freeze, so it is committed as a stopped container is, as Docker does
                if not await _ends_soon(c.state.Pid):
                    raise
        try:
            tmp = self.svc.images.scratch_path(".tar")
            with open(tmp, "wb") as f:
                diff_id = await asyncio.to_thread(self.write_rw_tar, c.id, f)
        finally:
            if paused_here and c.id in self.svc.by_id and c.state.Status == "paused":
                await self.svc.unpause(c.id)
        try:
            cmd = " ".join([c.path, *c.args])
            iid = await self.svc.images.commit_layer(tmp, c.image_id, c.id, c.config, overrides or {}, changes,
                                                     repo, tag, comment, author, created_by=cmd,
                                                     diff_id=diff_id)
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
            acquired: list[str] = []
            try:
                mounts = self._copy_mounts(c, acquired) if with_mounts else []
                if mounts:  # its volumes and binds, in a mount namespace of its own (berth/containers/cpview.py)
                    async with cpview.assembled(path, mounts) as root:
                        yield root
                else:
                    yield path
            finally:
                for name in acquired:
                    self.svc.volumes.release(name)
                if not c.state.running:
                    await asyncio.to_thread(self.svc.layers.unmount_rw, c.id)

    def _copy_mounts(self, c: Container, acquired: list[str]) -> list[dict[str, Any]]:
        """What a stopped container's view has mounted: its volumes (made available, as at start)
        and binds; tmpfs mounts exist only while it runs, as in Docker."""
        out: list[dict[str, Any]] = []
        for m in c.mounts:
            if m["Type"] == "volume":
                src = self.svc.volumes.acquire(m["Name"])
                acquired.append(m["Name"])
                out.append({"source": src, "destination": m["Destination"], "rw": m.get("RW", True),
                            "subpath": m.get("Subpath") or ""})
            elif m["Type"] == "bind" and os.path.exists(m["Source"]):
                out.append({"source": m["Source"], "destination": m["Destination"], "rw": m.get("RW", True)})
        return out


async def _ends_soon(pid: int, timeout: float = 2.0) -> bool:
    """Whether ``pid`` has exited or does within ``timeout``: a runtime may already call a process
    that is on its way out "not running" while /proc still shows it alive for a few milliseconds."""
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (or is a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True
