"""The volumes backend the API calls: create, list, inspect, remove, prune, usage, export, import."""

from __future__ import annotations

import asyncio
import os
import secrets
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from berth.errors import Conflict, InvalidParameter
from berth.filters import Filters, go_list
from berth.fsutil import dir_size, discard_tree
from berth.layers.tarapply import apply_tar
from berth.threadstream import stream_from_thread
from berth.volumes.store import ANON_LABEL, Volume, VolumeStore, inspect

Users = Callable[[str], list[str]]
Pauser = Callable[[str], Awaitable[None]]


def _all_flag(vals: list[str]) -> bool:
    """Prune's ``all``: one value, as Go's ParseBool reads it."""
    if len(vals) > 1:
        raise InvalidParameter(f"invalid filter 'all={go_list(vals)}': only one value is expected")
    if not vals:
        return False
    if vals[0] in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if vals[0] in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidParameter(f'invalid filter \'all\': strconv.ParseBool: parsing "{vals[0]}": invalid syntax')


class VolumeService:
    def __init__(self, store: VolumeStore, users: Users, running_users: Users, pause: Pauser,
                 resume: Pauser) -> None:
        self.store = store
        self.users = users
        self.running_users = running_users
        self.pause = pause
        self.resume = resume
        # (type, action, actor id, attributes) -> None; the daemon plugs in its event bus
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: volume config must be an object")
        opts = body.get("DriverOpts") or {}
        labels = body.get("Labels") or {}
        if not isinstance(opts, dict) or not isinstance(labels, dict):
            raise InvalidParameter("DriverOpts and Labels must be objects")
        vol = self.store.create(body.get("Name") or None, body.get("Driver") or "local",
                                {str(k): str(v) for k, v in opts.items()}, {str(k): str(v) for k, v in labels.items()})
        self.publish("volume", "create", vol.name, {"driver": vol.driver})
        return inspect(vol)

    def inspect(self, name: str) -> dict[str, Any]:
        return inspect(self.store.get(name))

    def _matches(self, vol: Volume, f: Filters, dangling: bool | None) -> bool:
        if not f.exact("driver", vol.driver) or not f.match("name", vol.name) or not f.match_labels(vol.labels):
            return False
        return dangling is None or dangling != bool(self.users(vol.name))

    def list(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        f = Filters.of(filters).validate(("dangling", "name", "driver", "label"), patterns=("name",))
        dangling = f.get_bool("dangling", False) if "dangling" in f else None
        return {"Volumes": [inspect(v) for v in self.store.list() if self._matches(v, f, dangling)], "Warnings": None}

    def remove(self, name: str, force: bool) -> None:
        users = self.users(name) if self.store.exists(name) else []
        existed = self.store.exists(name)
        self.store.remove(name, users, force=force and not users)
        if existed:
            self.publish("volume", "destroy", name, {"driver": "local"})

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        """Unused volumes; anonymous ones only unless ``all=true`` (as Docker 23+)."""
        f = Filters.of(filters).validate(("label", "label!", "all"))
        everything = _all_flag(f.vals("all"))
        deleted, reclaimed = [], 0
        for vol in self.store.list():
            if not f.match_labels(vol.labels) or self.users(vol.name):
                continue
            if not everything and ANON_LABEL not in vol.labels:
                continue
            size = dir_size(vol.mountpoint)
            self.store.remove(vol.name, [])
            self.publish("volume", "destroy", vol.name, {"driver": "local"})
            deleted.append(vol.name)
            reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    async def df_items(self) -> list[dict[str, Any]]:
        out = []
        for v in self.store.list():
            size = await asyncio.to_thread(dir_size, v.mountpoint)  # a big volume must not stall the loop
            out.append(inspect(v, {"Size": size, "RefCount": len(self.users(v.name))}))
        return out

    # -- export / import (beyond Docker: moby#32263) ------------------------------------------------------
    async def export(self, name: str) -> AsyncIterator[bytes]:
        """A tar of the volume's content. Running containers that use it are paused meanwhile,
        so the archive is one consistent state."""
        vol = self.store.get(name)
        paused: list[str] = []
        try:
            for cid in self.running_users(name):
                await self.pause(cid)
                paused.append(cid)

            def produce(out: Any) -> None:
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for entry in sorted(os.listdir(vol.mountpoint)):
                        tf.add(os.path.join(vol.mountpoint, entry), arcname=entry, recursive=True)

            async for chunk in stream_from_thread(produce):
                yield chunk
        finally:
            for cid in paused:
                await self.resume(cid)

    async def import_(self, name: str, tar_path: str) -> dict[str, Any]:
        """Replace the volume's content with a tar's (creating the volume if needed). The new
        content is unpacked beside the old and swapped in with a rename."""
        vol = self.store.get(name) if self.store.exists(name) else self.store.create(name)
        if vol.options:
            raise InvalidParameter(f"volume {name} is backed by {vol.options.get('type') or 'a device'}: "
                                   "import works on plain local volumes")
        if self.running_users(name):
            raise Conflict(f"import {name}: volume is in use by running containers - "
                           f"[{', '.join(self.running_users(name))}]")
        staging = os.path.join(os.path.dirname(vol.mountpoint), "_import-" + secrets.token_hex(4))
        os.mkdir(staging, 0o755)
        try:
            await asyncio.to_thread(apply_tar, tar_path, staging, "plain", None)
            old = vol.mountpoint + ".old"
            os.rename(vol.mountpoint, old)
            os.rename(staging, vol.mountpoint)
            discard_tree(old, self.store.trash)
        except BaseException:
            discard_tree(staging, self.store.trash)
            raise
        return inspect(self.store.get(name))
