"""The read-only side of containers: list, inspect, logs, stats and ``system df`` entries.

Nothing here changes a container; it reads the lifecycle's records (shared, never written) and
walks writable layers and log files off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from berth.containers import logs as logfile
from berth.containers import stats as container_stats
from berth.containers import views
from berth.containers.config import log_driver
from berth.containers.networking import ContainerNetworking, NoNetworking
from berth.containers.store import Container
from berth.errors import BerthError, NotImplementedHere
from berth.images.service import ImageService
from berth.layers.store import LayerStore

# aliases: the method ``list`` hides the builtin in the class body
JSONList = list[dict[str, Any]]
FilterMap = dict[str, list[str]]
Records = list[logfile.Record]


class ContainerQueries:
    def __init__(self, by_id: Mapping[str, Container], get: Callable[[str], Container], images: ImageService,
                 layers: LayerStore, volume_root: str, exec_ids: Callable[[str], list[str]]) -> None:
        self.by_id = by_id  # the lifecycle's records, read here and never written
        self.get = get
        self.images = images
        self.layers = layers
        self.volume_root = volume_root
        self.exec_ids = exec_ids
        self.network: ContainerNetworking = NoNetworking()

    def using_image(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.state.running) for c in self.by_id.values() if c.image_id == image_id]

    def image_config(self, c: Container) -> dict[str, Any]:
        """The config of the container's image (for its healthcheck); empty once the image is gone."""
        try:
            return self.images.images.get(c.image_id).config.get("config") or {}
        except BerthError:
            return {}

    def list(self, all_: bool, limit: int, filters: FilterMap) -> JSONList:
        items = sorted(self.by_id.values(), key=lambda x: x.created_ts, reverse=True)
        return views.listing(items, all_, limit, filters, self.get, lambda refs: views.image_family(self.images, refs),
                             self.volume_root, self.network)

    async def list_sized(self, all_: bool, limit: int, filters: FilterMap) -> JSONList:
        """``ps --size``: the listing plus each writable layer's size, walked off the event loop."""
        out = self.list(all_, limit, filters)
        for entry in out:
            entry["SizeRw"] = await self._rw_size(entry["Id"])
        return out

    async def _rw_size(self, cid: str) -> int:
        try:
            return await asyncio.to_thread(self.layers.rw_size, cid)
        except OSError:
            return 0  # removed while we walked it

    async def inspect(self, name: str, size: bool = False) -> dict[str, Any]:
        c = self.get(name)
        d = views.detail(c, self.layers.driver, self.exec_ids(c.id), self.volume_root)
        d["NetworkSettings"] = self.network.settings(c.id, c.host_config, c.config.get("ExposedPorts"),
                                                     c.state.running)
        if size:
            d["SizeRw"] = await self._rw_size(c.id)
        return d

    def stats(self, name: str, previous: dict[str, Any] | None) -> dict[str, Any]:
        c = self.get(name)
        running = c.state.Status in ("running", "paused")
        out = container_stats.read_stats(f"/berth/{c.id}" if running else "/berth/nonexistent",
                                         c.state.Pid if running else 0, c.name, c.id, previous)
        networks = self.network.counters(c.id) if running else None
        if networks:
            out["networks"] = networks
        return out

    async def df_items(self) -> JSONList:
        out = await self.list_sized(True, -1, {})
        for item in out:
            image = self.images.images.get(item["ImageID"]) if item["ImageID"] else None
            item["SizeRootFs"] = item["SizeRw"] + (self.images.image_size(image) if image else 0)
        return out

    def logs(self, name: str, *, stdout: bool, stderr: bool, follow: bool, tail: int, since: float,
             until: float) -> AsyncIterator[Records]:
        """Batches of log records: tailed from the file's end, read and parsed off the event loop.
        A container whose log driver keeps no log is refused here, before any answer starts."""
        c = self.get(name)
        if log_driver(c.host_config) == "none":
            raise NotImplementedHere("configured logging driver does not support reading")
        return self._logs(c, stdout=stdout, stderr=stderr, follow=follow, tail=tail, since=since, until=until)

    async def _logs(self, c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int, since: float,
                    until: float) -> AsyncIterator[Records]:
        reader = logfile.LogReader(c.log_path)  # an open file: removal cannot cut a follower short

        def wanted(r: logfile.Record) -> bool:
            if (r.stream == logfile.STDOUT and not stdout) or (r.stream == logfile.STDERR and not stderr):
                return False
            if since and r.epoch < since:
                return False
            return not (until and r.epoch > until)

        try:
            async for batch in logfile.existing(reader, tail):
                yield [r for r in batch if wanted(r)]
            if follow and c.state.running:
                async for batch in logfile.follow(reader, lambda: c.state.running and c.id in self.by_id):
                    yield [r for r in batch if wanted(r)]
        finally:
            reader.close()
