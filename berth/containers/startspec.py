"""What a start hands the runtime: the OCI spec assembled from a container's record, and the
words a failed start is reported in."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from berth.containers.store import Container, State
from berth.errors import InvalidParameter
from berth.fsutil import write_file
from berth.images.service import rfc3339
from berth.runtime import hostconfig
from berth.runtime import spec as ocispec


def build(c: Container, rootfs: str, user_mounts: list[dict[str, Any]], netns: str | None = "") -> dict[str, Any]:
    """The OCI spec of a start (blocking: makes the working directory inside ``rootfs``). ``netns``: the
    network namespace to join (a path), a new one (""), or the host's (None)."""
    cfg = c.config
    try:
        ocispec.workdir_in_rootfs(rootfs, cfg.get("WorkingDir") or "")
    except (ValueError, OSError) as e:
        raise InvalidParameter(f"cannot create the working directory: {e}") from e
    try:
        spec = ocispec.build_spec(
            rootfs=rootfs, args=[c.path, *c.args], env=list(cfg.get("Env") or []),
            cwd=cfg.get("WorkingDir") or "/", user=cfg.get("User") or "", hostname=cfg["Hostname"],
            terminal=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
            cgroup_path=f"/berth/{c.id}",
            etc_files={"/etc/hostname": c.hostname_path, "/etc/hosts": c.hosts_path,
                       "/etc/resolv.conf": c.resolv_conf_path},
            readonly_rootfs=bool(c.host_config.get("ReadonlyRootfs")),
            shm_size=int(c.host_config.get("ShmSize") or 64 << 20),
            extra_mounts=user_mounts, console_size=initial_console_size(c.host_config),
        )
    except ValueError as e:
        raise InvalidParameter(str(e)) from e
    try:
        hostconfig.apply(spec, c.host_config)
    except OSError as e:
        raise InvalidParameter(f"error applying HostConfig: {e}") from e
    if netns is None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    elif netns:
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = netns
    return spec


def initial_console_size(hc: dict[str, Any]) -> list[int] | None:
    """HostConfig.ConsoleSize [height, width], if one was given: [0, 0] (the default) is none, as in Docker."""
    size = hc.get("ConsoleSize")
    if isinstance(size, list) and len(size) == 2 and any(size):
        return [int(size[0]), int(size[1])]
    return None


def write_bundle(c: Container, rootfs: str, user_mounts: list[dict[str, Any]], bundle_dir: str,
                 netns: str | None = "") -> None:
    """Write ``config.json`` into the bundle (blocking; the bundle is ephemeral: no fsync)."""
    write_file(os.path.join(bundle_dir, "config.json"), json.dumps(build(c, rootfs, user_mounts, netns)).encode())


def failed(c: Container, msg: str) -> tuple[State, str]:
    """The state after a failed start, and its message in the words Docker (and its CLI) use.

    The docker CLI maps "executable file not found" / "no such file or directory" to
    exit 127 and "permission denied" to 126, so the wording matters.
    """
    low = msg.lower()
    code = 127 if ("not found" in low or "no such file" in low) else 126 if "permission denied" in low else 128
    if code == 127:
        msg = f'OCI runtime create failed: {msg}: exec: "{c.path}": executable file not found in $PATH: unknown'
    elif code == 126:
        msg = f'OCI runtime create failed: {msg}: exec: "{c.path}": permission denied: unknown'
    now = time.time()
    return State(Status="created" if c.state.StartedTs == 0 else "exited", ExitCode=code, Error=msg,
                 StartedAt=c.state.StartedAt, StartedTs=c.state.StartedTs, FinishedAt=rfc3339(now),
                 FinishedTs=now), msg
