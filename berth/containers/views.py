"""How containers look through the API: list summaries, inspect details, status text, filters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from berth.containers.config import log_driver
from berth.containers.mounts import MountPoint
from berth.containers.store import Container
from berth.errors import BerthError, InvalidParameter
from berth.filters import Filters, go_list
from berth.gotime import human_duration
from berth.runtime import spec as ocispec

# the predefined networks' IDs (berth/api/absent.py lists them)
NONE_NETWORK_ID = "0" * 63 + "1"
HOST_NETWORK_ID = "0" * 63 + "2"


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


def summary(c: Container, volume_root: str, network: Any = None) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    ports, networks = (network.summary(c.id, c.host_config, c.config.get("ExposedPorts"), c.state.running)
                       if network is not None else ([], {}))
    return {
        "Id": c.id, "Names": ["/" + c.name], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join([c.path, *c.args]), "Created": int(c.created_ts), "Ports": ports,
        "Labels": c.config.get("Labels") or {}, "State": c.state.Status, "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": networks},
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
        "LogPath": log_path_shown(c),
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": driver.name,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": inspect_host_config(c.host_config),
        "GraphDriver": {"Name": driver.name,
                        "Data": {"UpperDir": driver.rw_path(c.id), "MergedDir": driver.rootfs_path(c.id)}},
        "Mounts": [MountPoint(**m).to_api(volume_root) for m in c.mounts],
        "Config": c.config,
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "Ports": {}, "Networks": {}},
    }


NEVER = "0001-01-01T00:00:00Z"  # Go's zero time: State.StartedAt of a container never started


def log_path_shown(c: Container) -> str:
    """Inspect's LogPath, as dockerd: only the json-file driver has a path to show (none, local: ""),
    and only once the container has first started (its logger is made then; "" before)."""
    return c.log_path if log_driver(c.host_config) == "json-file" and c.state.StartedAt != NEVER else ""


# What Docker's inspect shows for a HostConfig field the client did not set (null where Docker's is a
# nil slice or pointer, [] where it makes an empty one): clients index these without checking.
_HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "NetworkMode": "default",
    "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
    "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 64 << 20, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
    "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
    "DeviceRequests": None, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "PidsLimit": None, "Ulimits": [], "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}


def inspect_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """The stored HostConfig with every field Docker's inspect has (those not set at their defaults)."""
    out = dict(_HOST_CONFIG_DEFAULTS)
    privileged = bool(hc.get("Privileged"))
    out["MaskedPaths"] = None if privileged else list(ocispec.MASKED_PATHS)
    out["ReadonlyPaths"] = None if privileged else list(ocispec.READONLY_PATHS)
    out.update({k: v for k, v in hc.items() if v is not None or out.get(k) is None})
    if not out.get("ShmSize"):
        out["ShmSize"] = 64 << 20
    return out


# the keys GET /containers/json accepts, and the values its enumerated keys take
LIST_FILTERS = ("ancestor", "before", "exited", "id", "isolation", "label", "name", "status", "health", "since",
                "volume", "network", "is-task", "publish", "expose")
PRUNE_FILTERS = ("label", "label!", "until")
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


def _ports(f: Filters, key: str) -> set[str]:
    """``publish``/``expose`` values ("80", "80/udp", "8000-8010/tcp") as the set of "port/proto" they name."""
    out: set[str] = set()
    for value in f.vals(key):
        if ":" in value:
            raise InvalidParameter(f"filter for '{key}' should not contain ':': {value}")
        port, _, proto = value.partition("/")
        lo, _, hi = port.partition("-")
        try:
            start, end = int(lo), int(hi or lo)
            if not (0 <= start <= 65535 and 0 <= end <= 65535) or not lo.isdigit() or (hi and not hi.isdigit()):
                raise ValueError(f"invalid port range: {port}")
        except ValueError as e:
            raise InvalidParameter(f"error while looking up for {key} {value}: {e}") from e
        out.update(f"{p}/{(proto or 'tcp').lower()}" for p in range(start, end + 1))
    return out


def image_family(images: Any, refs: list[str]) -> set[str]:
    """The IDs of the images ``refs`` name and of every image built on them (``ancestor``)."""
    out: set[str] = set()
    todo = []
    for ref in refs:
        try:
            todo.append(images.get(ref).id)
        except BerthError:
            continue  # an unknown image matches nothing, as in Docker
    while todo:
        iid = todo.pop()
        if iid not in out:
            out.add(iid)
            todo.extend(images.images.children(iid))
    return out


def health_of(c: Container) -> str:
    h = c.state.Health
    return h.get("Status", "starting") if h else "none"


def listing(items: list[Container], all_: bool, limit: int, filters: dict[str, list[str]],
            lookup: Callable[[str], Container], family: Callable[[list[str]], set[str]],
            volume_root: str, network: Any = None) -> list[dict[str, Any]]:
    """``GET /containers/json``: newest first, filtered with Docker's rules."""
    f = Filters.of(filters).validate(LIST_FILTERS, patterns=("name", "id"))
    for s in f.vals("status"):
        if s not in STATES:
            raise InvalidParameter(f"invalid filter 'status={s}'")
    for s in f.vals("health"):
        if s not in HEALTH:
            raise InvalidParameter(f"Unrecognised filter value for health: {s}")
    exited: set[int] = set()
    for v in f.vals("exited"):
        try:
            exited.add(int(v))
        except ValueError as e:
            raise InvalidParameter(f'strconv.Atoi: parsing "{v}": invalid syntax') from e
    is_task = None
    if "is-task" in f:
        if not {"true", "false"} & set(f["is-task"]):
            raise InvalidParameter(f"invalid filter 'is-task={go_list(f['is-task'])}'")
        is_task = "true" in f["is-task"]
    before = [lookup(v).id for v in f.vals("before")][-1:]
    since = [lookup(v).id for v in f.vals("since")][-1:]
    publish, expose = _ports(f, "publish"), _ports(f, "expose")
    images = family(f.vals("ancestor")) if "ancestor" in f else None
    all_ = all_ or bool(f.vals("status"))
    out: list[dict[str, Any]] = []
    for c in items:
        if before:
            if c.id == before[0]:
                before = []
            continue
        if since and c.id == since[0]:
            break
        if not c.state.running and not all_ and limit <= 0:
            continue
        if limit > 0 and len(out) >= limit:
            break
        if not _include(c, f, exited, is_task, images, network):
            continue
        entry = summary(c, volume_root, network)
        if publish or expose:
            ports = entry["Ports"]
            if not any(f"{p.get('PublicPort')}/{p.get('Type')}" in publish or
                       f"{p.get('PrivatePort')}/{p.get('Type')}" in expose for p in ports):
                continue
        out.append(entry)
    return out


def _include(c: Container, f: Filters, exited: set[int], is_task: bool | None, images: set[str] | None,
             network: Any = None) -> bool:
    if not (f.match("name", "/" + c.name) or f.match("name", c.name)) or not f.match("id", c.id):
        return False
    if is_task:  # no container of this engine is a swarm task
        return False
    if not f.match_kv("label", c.config.get("Labels")):
        return False
    if exited and (c.state.running or c.state.StartedTs == 0 or c.state.ExitCode not in exited):
        return False
    if not f.exact("status", c.state.Status) or not f.exact("health", health_of(c)):
        return False
    if "volume" in f:
        names = {m.get("Name") or m.get("Source") for m in c.mounts}
        dests = {m.get("Destination") for m in c.mounts}
        if not any(v in names or v in dests for v in f.vals("volume")):
            return False
    if images is not None and c.image_id not in images:
        return False
    if "network" in f:
        mode = c.host_config.get("NetworkMode") or "default"
        ids: dict[str, str] = {"none": NONE_NETWORK_ID, "host": HOST_NETWORK_ID}
        netnames: set[str] = network.network_ids(c.id, c.host_config) if network is not None else set()
        if not any(v == mode or (mode in ids and ids[mode].startswith(v)) or v in netnames or
                   any(len(v) >= 3 and n.startswith(v) for n in netnames) for v in f.vals("network")):
            return False
    return True


def prunable(c: Container, f: Filters, until: float | None) -> bool:
    """``POST /containers/prune``: a stopped container, old enough, with the labels asked for."""
    if c.state.Status in ("running", "paused", "restarting", "removing"):
        return False
    if until is not None and c.created_ts > until:
        return False
    return f.match_labels(c.config.get("Labels"))
