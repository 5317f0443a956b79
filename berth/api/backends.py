"""What the API asks of the engine: one backend Protocol per resource, reached through typed app keys.

The handlers in ``berth.api`` translate HTTP (paths, query values, bodies, streams) into calls on
these backends and nothing else; what the engine decides (restart is stop then start, which root a
``docker cp`` reads, what ``/info`` counts) happens behind them. Each Protocol has one implementation
today, wired in ``berth.daemon.main``; mypy checks that wiring against the Protocols.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from berth.build.options import BuildOptions
from berth.containers.execs import ExecSession
from berth.containers.logs import Record
from berth.containers.store import Container
from berth.distribution.client import Credentials
from berth.runtime.interface import Attachment, ExecProcess

JSON = dict[str, Any]
Progress = AsyncIterator[JSON]
# aliases, as a method named ``list`` hides the builtin inside the class bodies below
JSONList = list[JSON]
FilterMap = dict[str, list[str]]
Strings = list[str]
Records = list[Record]
Deleted = list[dict[str, str]]


class ContainerBackend(Protocol):
    """The lifecycle of containers: create, start, stop, kill, pause, wait, rename, update, remove, prune."""

    def get(self, name: str) -> Container: ...
    async def create(self, body: JSON, name: str | None) -> tuple[Container, Strings]: ...
    async def start(self, name: str) -> None: ...
    async def stop(self, name: str, timeout: int | None, sig: str | None) -> None: ...
    async def restart(self, name: str, timeout: int | None, sig: str | None) -> None: ...
    async def kill(self, name: str, sig: str | None) -> None: ...
    async def pause(self, name: str) -> None: ...
    async def unpause(self, name: str) -> None: ...
    async def wait(self, name: str, condition: str) -> JSON: ...
    async def remove(self, name: str, force: bool, volumes: bool) -> None: ...
    async def rename(self, name: str, new_name: str) -> None: ...
    async def update(self, name: str, body: JSON) -> Strings: ...
    async def prune(self, filters: FilterMap) -> JSON: ...


class ContainerQueryBackend(Protocol):
    """What containers look like, changing nothing: list, inspect, logs, stats."""

    def list(self, all_: bool, limit: int, filters: FilterMap) -> JSONList: ...
    async def list_sized(self, all_: bool, limit: int, filters: FilterMap) -> JSONList: ...
    async def inspect(self, name: str, size: bool = False) -> JSON: ...
    def stats(self, name: str, previous: JSON | None) -> JSON: ...
    def logs(self, name: str, *, stdout: bool, stderr: bool, follow: bool, tail: int, since: float,
             until: float) -> AsyncIterator[Records]: ...


class StdioBackend(Protocol):
    """A container's stdio: attach (waits for a created container's start), resize, settle."""

    async def attach(self, name: str) -> Attachment | None: ...
    def resize(self, name: str, h: int, w: int) -> None: ...
    async def settle(self, name: str, timeout: float = 5.0) -> None: ...


class SnapshotBackend(Protocol):
    """A container's filesystem as a layer: ``docker diff`` and ``docker commit``."""

    async def changes(self, name: str) -> JSONList: ...
    async def commit(self, name: str, repo: str | None, tag: str | None, comment: str, author: str,
                     changes: Strings, pause: bool, overrides: JSON | None) -> str: ...


class ProcessBackend(Protocol):
    """The processes of a running container (``docker top``)."""

    async def top(self, name: str, ps_args: str) -> JSON: ...


class ExecBackend(Protocol):
    """Processes run in a running container (``/containers/{id}/exec``, ``/exec/...``)."""

    def create(self, name: str, body: JSON) -> ExecSession: ...
    def get(self, eid: str) -> ExecSession: ...
    async def start(self, eid: str, detach: bool, console_size: list[int] | None = None) -> ExecProcess: ...
    def resize(self, eid: str, h: int, w: int) -> None: ...


class ArchiveBackend(Protocol):
    """Files in and out of a container's filesystem (``docker cp``, ``docker export``). The backend
    chooses the root (with or without the container's mounts) and keeps it while the caller streams."""

    async def stat(self, name: str, path: str) -> JSON: ...
    def read(self, name: str, path: str) -> AbstractAsyncContextManager[tuple[JSON, AsyncIterator[bytes]]]: ...
    def export(self, name: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...
    async def put(self, name: str, path: str, tar: AsyncIterable[bytes], no_overwrite_dir_non_dir: bool) -> None: ...


class ImageBackend(Protocol):
    """Local images (``/images/...`` except pull and push)."""

    def list(self, all_: bool, filters: FilterMap) -> JSONList: ...
    def inspect(self, name: str) -> JSON: ...
    def history(self, name: str) -> JSONList: ...
    async def tag(self, name: str, repo: str, tag: str | None) -> None: ...
    async def remove(self, name: str, force: bool, prune: bool = True) -> Deleted: ...
    async def prune(self, filters: FilterMap) -> JSON: ...
    async def load(self, path: str) -> Strings: ...
    async def import_rootfs(self, path: str, repo: str | None, tag: str | None, changes: Strings,
                            message: str) -> str: ...
    def save(self, names: Strings) -> AsyncIterator[bytes]: ...


class DistributionBackend(Protocol):
    """Registries: pull, push, login, and the distribution inspect endpoint."""

    def pull(self, image: str, tag: str, creds: Credentials) -> Progress: ...
    def push(self, name: str, tag: str, creds: Credentials) -> Progress: ...
    async def login(self, body: JSON) -> dict[str, str]: ...
    async def inspect(self, name: str, creds: Credentials) -> JSON: ...


class VolumeBackend(Protocol):
    """Named volumes, and Berth's export/import of a volume's content."""

    def create(self, body: JSON) -> JSON: ...
    def list(self, filters: FilterMap) -> JSON: ...
    def inspect(self, name: str) -> JSON: ...
    def remove(self, name: str, force: bool) -> None: ...
    def prune(self, filters: FilterMap) -> JSON: ...
    def export(self, name: str) -> AsyncIterator[bytes]: ...
    async def import_(self, name: str, tar_path: str) -> JSON: ...


class NetworkBackend(Protocol):
    """Networks (``/networks/...``): bridges, their containers, connect and disconnect."""

    def list(self, filters: FilterMap) -> JSONList: ...
    def inspect(self, ref: str) -> JSON: ...
    async def create(self, body: JSON) -> JSON: ...
    async def remove(self, ref: str) -> None: ...
    async def prune(self, filters: FilterMap) -> JSON: ...
    async def connect(self, ref: str, body: JSON) -> None: ...
    async def disconnect(self, ref: str, body: JSON) -> None: ...


class SystemBackend(Protocol):
    """The engine as a whole: ``/version``, ``/info``, ``/system/df``."""

    def version(self) -> JSON: ...
    def info(self) -> JSON: ...
    async def disk_usage(self) -> JSON: ...


class EventStream(Protocol):
    def __aiter__(self) -> AsyncIterator[JSON]: ...
    async def __anext__(self) -> JSON: ...
    async def aclose(self) -> None: ...


class EventsBackend(Protocol):
    """The event bus behind ``/events``; filters are validated before the stream starts."""

    def subscribe(self, since: float | None, until: float | None, filters: FilterMap) -> EventStream: ...


class BuildBackend(Protocol):
    """The classic builder behind ``POST /build``. ``build`` checks the context and Dockerfile before
    its first message (raising: an HTTP error); later failures are ``errorDetail`` messages."""

    def build(self, context_tar: str, options: BuildOptions) -> Progress: ...


class Scratch(Protocol):
    """Where request bodies are spooled before the engine reads them (same filesystem as the stores)."""

    def scratch_path(self, suffix: str = "") -> str: ...


CONTAINERS = web.AppKey[ContainerBackend]("containers")
CONTAINER_QUERIES = web.AppKey[ContainerQueryBackend]("container_queries")
STDIO = web.AppKey[StdioBackend]("stdio")
SNAPSHOTS = web.AppKey[SnapshotBackend]("snapshots")
PROCESSES = web.AppKey[ProcessBackend]("processes")
EXECS = web.AppKey[ExecBackend]("execs")
ARCHIVES = web.AppKey[ArchiveBackend]("archives")
IMAGES = web.AppKey[ImageBackend]("images")
DISTRIBUTION = web.AppKey[DistributionBackend]("distribution")
VOLUMES = web.AppKey[VolumeBackend]("volumes")
NETWORKS = web.AppKey[NetworkBackend]("networks")
SYSTEM = web.AppKey[SystemBackend]("system")
EVENTS = web.AppKey[EventsBackend]("events")
SCRATCH = web.AppKey[Scratch]("scratch")
BUILD = web.AppKey[BuildBackend]("build")


@dataclass
class Backends:
    """Everything the API is built on; ``build_app`` puts each under its key."""

    containers: ContainerBackend
    container_queries: ContainerQueryBackend
    stdio: StdioBackend
    snapshots: SnapshotBackend
    processes: ProcessBackend
    execs: ExecBackend
    archives: ArchiveBackend
    images: ImageBackend
    distribution: DistributionBackend
    volumes: VolumeBackend
    system: SystemBackend
    events: EventsBackend
    scratch: Scratch
    networks: NetworkBackend
    build: BuildBackend | None = None

    def install(self, app: web.Application) -> None:
        app[CONTAINERS] = self.containers
        app[CONTAINER_QUERIES] = self.container_queries
        app[STDIO] = self.stdio
        app[SNAPSHOTS] = self.snapshots
        app[PROCESSES] = self.processes
        app[EXECS] = self.execs
        app[ARCHIVES] = self.archives
        app[IMAGES] = self.images
        app[DISTRIBUTION] = self.distribution
        app[VOLUMES] = self.volumes
        app[SYSTEM] = self.system
        app[EVENTS] = self.events
        app[SCRATCH] = self.scratch
        app[NETWORKS] = self.networks
        if self.build is not None:
            app[BUILD] = self.build

