"""A container's volumes, binds and tmpfs at start and exit: OCI mount entries, Docker's
copy-up into empty volumes, staged subpaths, and the volume users the volume service asks about."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from berth.containers.mounts import MountPoint, copy_up, stage_subpath, unstage
from berth.containers.store import Container
from berth.errors import BerthError, InvalidParameter
from berth.volumes.store import VolumeStore

log = logging.getLogger("berth.containers")


class VolumeUse:
    def __init__(self, volumes: VolumeStore, by_id: dict[str, Container],
                 staging_dir: Callable[[Container], str]) -> None:
        self.volumes = volumes
        self.by_id = by_id  # the containers berthd knows (shared with the lifecycle)
        self.staging_dir = staging_dir  # where a container's volume subpaths are bind-mounted

    async def prepare(self, c: Container, rootfs: str, acquired: list[str]) -> list[dict[str, Any]]:
        """OCI mount entries for the container's volumes, binds and tmpfs; copies image content
        into empty volumes first (Docker's copy-up). ``acquired`` collects volumes to release."""
        out: list[dict[str, Any]] = []
        for m in c.mounts:
            mp = MountPoint(**m)
            if mp.Type == "tmpfs":
                opts = ["nosuid", "nodev", "noexec"]
                if mp.TmpfsSize:
                    opts.append(f"size={mp.TmpfsSize}")
                if mp.TmpfsMode:
                    opts.append(f"mode={mp.TmpfsMode:o}")
                opts += [o for o in mp.Mode.split(",") if o and o not in opts]
                if not mp.RW:
                    opts.append("ro")
                out.append({"destination": mp.Destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
                continue
            if mp.Type == "volume":
                src = self.volumes.acquire(mp.Name)
                acquired.append(mp.Name)
                if mp.Subpath:
                    staging = os.path.join(self.staging_dir(c), str(len(out)))
                    src = await asyncio.to_thread(stage_subpath, src, mp.Subpath, staging)
                elif not mp.NoCopy:
                    await asyncio.to_thread(copy_up, rootfs, mp.Destination, src)
            else:
                src = mp.Source
                if not os.path.exists(src):
                    raise InvalidParameter(f"invalid mount config for type \"bind\": bind source path does not "
                                           f"exist: {src}")
            opts = ["rbind", mp.Propagation if mp.Type == "bind" and mp.Propagation else "rprivate"]
            if not mp.RW:
                opts.append("ro")
            out.append({"destination": mp.Destination, "type": "bind", "source": src, "options": opts})
        return out

    def release(self, c: Container) -> None:
        unstage(self.staging_dir(c))
        for m in c.mounts:
            if m["Type"] == "volume":
                self.volumes.release(m["Name"])

    def remove_anonymous(self, c: Container) -> None:
        """``rm -v``: the container's anonymous volumes that no other container uses."""
        for m in c.mounts:
            if m["Type"] == "volume" and m.get("Anonymous") and not self.users(m["Name"]):
                try:
                    self.volumes.remove(m["Name"], [], force=True)
                except BerthError as e:
                    log.warning("removing volume %s of %s: %s", m["Name"], c.id[:12], e)

    def users(self, name: str) -> list[str]:
        return [c.id for c in self.by_id.values() if any(m["Type"] == "volume" and m["Name"] == name
                                                         for m in c.mounts)]

    def running_users(self, name: str) -> list[str]:
        return [cid for cid in self.users(name) if self.by_id[cid].state.running]
