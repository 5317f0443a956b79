"""What the builder asks of the rest of the engine, as narrow Protocols, and the container work
of a step: run a RUN container with its output streamed, put files into a created container,
and commit a container's layer through the same snapshot path ``docker commit`` takes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from berth.containers.store import Container
from berth.images.store import Image
from berth.runtime.interface import Attachment

JSON = dict[str, Any]


class Containers(Protocol):
    async def create(self, body: JSON, name: str | None) -> tuple[Container, list[str]]: ...
    async def start(self, name: str) -> None: ...
    async def wait(self, name: str, condition: str) -> JSON: ...
    async def remove(self, name: str, force: bool, volumes: bool) -> None: ...


class Stdio(Protocol):
    async def attach(self, name: str) -> Attachment | None: ...


class Snapshots(Protocol):
    def get(self, name: str) -> Container: ...
    def write_rw_tar(self, cid: str, out: Any, mtime_clamp: int | None = None) -> None: ...
    def rootfs_view(self, c: Container, with_mounts: bool = True) -> AbstractAsyncContextManager[str]: ...


class Archives(Protocol):
    async def stat(self, name: str, path: str) -> JSON: ...
    async def put(self, name: str, path: str, tar: AsyncIterable[bytes], no_overwrite_dir_non_dir: bool) -> None: ...


class Images(Protocol):
    def get(self, name: str) -> Image: ...
    def scratch_path(self, suffix: str = "") -> str: ...
    async def commit_built(self, tar_path: str | None, base_id: str | None, config: JSON,
                           reuse_diff_id: str | None = None) -> str: ...
    async def tag(self, name: str, repo: str, tag: str | None) -> None: ...


class Pulls(Protocol):
    def pull(self, image: str, tag: str, creds: Any) -> AsyncIterator[JSON]: ...


@dataclass
class Engine:
    containers: Containers
    stdio: Stdio
    snapshots: Snapshots
    archives: Archives
    images: Images
    pulls: Pulls


async def file_chunks(path: str) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, 1 << 20):
            yield chunk


class StepContainer:
    """One intermediate container of a build: created from the step's image, removed by the
    build (``rm``/``forcerm``) or left for the user to inspect, as Docker leaves a failed one."""

    def __init__(self, engine: Engine, image_id: str, cmd: list[str], body: JSON) -> None:
        self.engine = engine
        self.body = {"Image": image_id, "Cmd": cmd, "Entrypoint": [""], **body}
        self.id = ""

    async def create(self) -> str:
        c, _warnings = await self.engine.containers.create(self.body, None)
        self.id = c.id
        return c.id

    async def run(self) -> AsyncIterator[bytes | int]:
        """Start it, yield its output as it comes, then its exit code (an int) last."""
        eng = self.engine
        attaching = asyncio.ensure_future(eng.stdio.attach(self.id))
        await asyncio.sleep(0)  # the attach waits for the start: registered before it
        try:
            await eng.containers.start(self.id)
        except BaseException:
            attaching.cancel()
            raise
        att = await attaching
        if att is not None:
            try:
                async for _stream, data in att.output():
                    yield data
            finally:
                att.close()
        status = await eng.containers.wait(self.id, "not-running")
        yield int(status.get("StatusCode", 255))

    async def put_tar(self, tar_path: str) -> None:
        await self.engine.archives.put(self.id, "/", file_chunks(tar_path), False)

    async def exists(self, path: str) -> bool:
        from berth.errors import NotFound

        try:
            await self.engine.archives.stat(self.id, path)
            return True
        except NotFound:
            return False

    async def commit(self, base_id: str | None, config: JSON, mtime_clamp: int | None) -> str:
        """The container's layer as a new image on ``base_id`` (a layer even when it is empty,
        as Docker commits ``RUN true``)."""
        eng = self.engine
        tmp = eng.images.scratch_path(".tar")
        try:
            with open(tmp, "wb") as f:
                await asyncio.to_thread(eng.snapshots.write_rw_tar, self.id, f, mtime_clamp)
            return await eng.images.commit_built(tmp, base_id, config)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    async def remove(self) -> None:
        if self.id:
            with contextlib.suppress(Exception):
                await self.engine.containers.remove(self.id, force=True, volumes=True)

    @contextlib.asynccontextmanager
    async def rootfs(self) -> AsyncIterator[str]:
        """The created container's filesystem as a host path, for the duration."""
        c = self.engine.snapshots.get(self.id)
        async with self.engine.snapshots.rootfs_view(c, with_mounts=False) as root:
            yield root

