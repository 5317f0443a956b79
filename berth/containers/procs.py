"""The processes of a running container: ``top`` (ps on the host, filtered by cgroup)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from berth.containers.store import Container
from berth.errors import Conflict, InvalidParameter


class Processes:
    def __init__(self, get: Callable[[str], Container]) -> None:
        self.get = get

    def container_pids(self, c: Container) -> list[int]:
        """Every process in the container, from its cgroup (v1 pids hierarchy, or v2)."""
        for base in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
            path = os.path.join(base, "berth", c.id, "cgroup.procs")
            try:
                with open(path) as f:
                    return [int(x) for x in f.read().split()]
            except FileNotFoundError:
                continue
        return [c.state.Pid] if c.state.Pid else []

    async def top(self, name: str, ps_args: str) -> dict[str, Any]:
        """``ps`` on the host, keeping only the container's processes, as Docker does."""
        c = self.get(name)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        args = ps_args.split() if ps_args else ["-ef"]
        proc = await asyncio.create_subprocess_exec(shutil.which("ps") or "ps", *args, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidParameter(f"ps: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        if not lines:
            raise InvalidParameter("ps: no output")
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        pid_col = titles.index("PID")
        pids = set(self.container_pids(c))
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}
