"""``docker cp`` and ``docker export`` behind the API's archive backend.

The decisions live here: which root a request reads (the running container's view with its
volumes and binds, or the rootfs alone for an export), that a read-only running container takes no
files, and that the root stays mounted until the stream that reads it has ended. The tar work
itself is ``berth.containers.archive``, run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from berth.containers import archive
from berth.containers.store import Container
from berth.errors import Forbidden
from berth.threadstream import spool, stream_from_thread


class Containers(Protocol):
    def get(self, name: str) -> Container: ...
    def rootfs_view(self, c: Container, with_mounts: bool = True) -> AbstractAsyncContextManager[str]: ...


class ArchiveService:
    def __init__(self, containers: Containers, scratch_path: Callable[[str], str]) -> None:
        self.containers = containers
        self.scratch_path = scratch_path

    async def stat(self, name: str, path: str) -> dict[str, Any]:
        c = self.containers.get(name)
        async with self.containers.rootfs_view(c) as root:
            return await asyncio.to_thread(archive.stat_path, root, path, c.name)

    @contextlib.asynccontextmanager
    async def read(self, name: str, path: str) -> AsyncIterator[tuple[dict[str, Any], AsyncIterator[bytes]]]:
        """The stat of ``path`` and a tar of it; the view stays until the caller is done streaming."""
        c = self.containers.get(name)
        async with self.containers.rootfs_view(c) as root:
            st = await asyncio.to_thread(archive.stat_path, root, path, c.name)
            chunks = stream_from_thread(lambda out: archive.write_archive(root, path, out, c.name), "berth-cp")
            try:
                yield st, chunks
            finally:
                await chunks.aclose()  # the producer is done with ``root`` before it goes away

    @contextlib.asynccontextmanager
    async def export(self, name: str) -> AsyncIterator[AsyncIterator[bytes]]:
        c = self.containers.get(name)
        async with self.containers.rootfs_view(c, with_mounts=False) as root:
            chunks = stream_from_thread(lambda out: archive.export_rootfs(root, out), "berth-export")
            try:
                yield chunks
            finally:
                await chunks.aclose()

    async def put(self, name: str, path: str, tar: AsyncIterable[bytes], no_overwrite_dir_non_dir: bool) -> None:
        c = self.containers.get(name)
        if c.host_config.get("ReadonlyRootfs") and c.state.running:
            raise Forbidden("container rootfs is marked read-only")
        tmp = self.scratch_path(".tar")
        try:
            await spool(tar, tmp)
            async with self.containers.rootfs_view(c) as root:
                await asyncio.to_thread(archive.extract_archive, root, path, tmp, no_overwrite_dir_non_dir, c.name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
