"""How containers look through the API: list summaries, inspect details, status text, filters."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from berth.containers.mounts import MountPoint
from berth.containers.store import Container


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def status_text(c: Container) -> str:
    st = c.state
    if st.Status == "running":
        up = f"Up {human_duration(time.time() - st.StartedTs)}"
        if st.Health:
            h = st.Health.get("Status", "starting")
            up += " (health: starting)" if h == "starting" else f" ({h})"
        return up
    if st.Status == "paused":
        return f"Up {human_duration(time.time() - st.StartedTs)} (Paused)"
    if st.Status == "exited":
        if st.FinishedTs == 0:
            return "Created"
        return f"Exited ({st.ExitCode}) {human_duration(time.time() - st.FinishedTs)} ago"
    if st.Status == "removing":
        return "Removal In Progress"
    if st.Status == "restarting":
        return f"Restarting ({st.ExitCode}) {human_duration(time.time() - st.FinishedTs)} ago"
    return st.Status.capitalize()


def summary(c: Container, volume_root: str) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    return {
        "Id": c.id, "Names": ["/" + c.name], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join([c.path, *c.args]), "Created": int(c.created_ts), "Ports": [],
        "Labels": c.config.get("Labels") or {}, "State": c.state.Status, "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [MountPoint(**m).to_api(volume_root) for m in c.mounts],
    }


def detail(c: Container, driver: Any, exec_ids: list[str], volume_root: str) -> dict[str, Any]:
    """``GET /containers/{id}/json``."""
    st = c.state
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": st.Status, "Running": st.running, "Paused": st.Status == "paused",
            "Restarting": st.Status == "restarting", "OOMKilled": st.OOMKilled, "Dead": st.Status == "dead",
            "Pid": st.Pid if st.running else 0, "ExitCode": st.ExitCode, "Error": st.Error,
            "StartedAt": st.StartedAt, "FinishedAt": st.FinishedAt,
            **({"Health": st.Health} if st.Health else {}),
        },
        "Image": c.image_id,
        "ResolvConfPath": c.resolv_conf_path,
        "HostnamePath": c.hostname_path,
        "HostsPath": c.hosts_path,
        "LogPath": c.log_path,
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": driver.name,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": driver.name,
                        "Data": {"UpperDir": driver.rw_path(c.id), "MergedDir": driver.rootfs_path(c.id)}},
        "Mounts": [MountPoint(**m).to_api(volume_root) for m in c.mounts],
        "Config": c.config,
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}},
    }


def matches(c: Container, filters: dict[str, list[str]], image_id_of: Callable[[str], str | None]) -> bool:
    if filters.get("id") and not any(c.id.startswith(v) for v in filters["id"]):
        return False
    if filters.get("name") and not any(re.search(v, "/" + c.name) for v in filters["name"]):
        return False
    if filters.get("status") and c.state.Status not in filters["status"]:
        return False
    if filters.get("exited"):
        if c.state.Status != "exited" or str(c.state.ExitCode) not in filters["exited"]:
            return False
    labels = c.config.get("Labels") or {}
    for want in filters.get("label", []):
        k, sep, v = want.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    if filters.get("ancestor"):
        if not any(image_id_of(a) == c.image_id for a in filters["ancestor"]):
            return False
    return True
