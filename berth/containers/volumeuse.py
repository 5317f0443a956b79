"""A container's volumes, binds and tmpfs at start and exit: OCI mount entries, Docker's
copy-up into empty volumes, staged subpaths, and the volume users the volume service asks about."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from berth.containers.mounts import MountPoint, copy_up, stage_subpath, unstage
from berth.containers.store import Container
from berth.errors import InvalidParameter
from berth.volumes.store import VolumeStore


class VolumeUse:
    def __init__(self, volumes: VolumeStore, by_id: dict[str, Container], run_dir: str) -> None:
        self.volumes = volumes
        self.by_id = by_id  # the containers berthd knows (shared with the lifecycle)
        self.run_dir = run_dir

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

    def staging_dir(self, c: Container) -> str:
        """Where a container's volume subpaths are bind-mounted for the runtime (daemon-only)."""
        return os.path.join(self.run_dir, c.id, "subpaths")

    def release(self, c: Container) -> None:
        unstage(self.staging_dir(c))
        for m in c.mounts:
            if m["Type"] == "volume":
                self.volumes.release(m["Name"])

    def users(self, name: str) -> list[str]:
        return [c.id for c in self.by_id.values() if any(m["Type"] == "volume" and m["Name"] == name
                                                         for m in c.mounts)]

    def running_users(self, name: str) -> list[str]:
        return [cid for cid in self.users(name) if self.by_id[cid].state.running]
