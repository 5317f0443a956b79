"""``POST /containers/{id}/update``: new resource limits and restart policy for a container.

As dockerd: the request's values are checked alone first (400, in dockerd's words), then merged
into the container's HostConfig, where a value of 0 (or "") means "leave as it is" and conflicts
with what is already set are a 409 ("Cannot update container ID: ..."). A running (or paused)
container gets the merged limits through ``<runtime> update``; only once that succeeded is the
HostConfig saved, so a refused update changes nothing, and later starts use what was saved.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from berth.containers.config import validate_restart_policy
from berth.errors import BerthError, Conflict, InvalidParameter
from berth.runtime import hostconfig
from berth.runtime.interface import RuntimeFailure

if TYPE_CHECKING:
    from berth.containers.service import ContainerService

# the Resources fields ``docker update`` may change; 0 / "" / absent means unchanged
_NUMBERS = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "Memory", "MemorySwap",
            "MemoryReservation", "CpuRealtimePeriod", "CpuRealtimeRuntime")
_STRINGS = ("CpusetCpus", "CpusetMems")
BLKIO_DISCARDED = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."


def check(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The request alone, as dockerd's verifyContainerSettings(update=true): the changes (normalised)
    and the warnings; InvalidParameter with dockerd's words."""
    req: dict[str, Any] = {}
    for key in _NUMBERS:  # the API layer has checked the types (berth/api/bodies.py UPDATE_CONFIG)
        if body.get(key):
            req[key] = int(body[key])
    for key in _STRINGS:
        if body.get(key):
            req[key] = str(body[key])
    if body.get("PidsLimit") is not None:
        # dockerd: 0 and any negative value both mean "unlimited" in an update
        req["PidsLimit"] = max(int(body["PidsLimit"]), 0)
    warnings: list[str] = []
    mem, swap = req.get("Memory", 0), req.get("MemorySwap", 0)
    if mem and mem < hostconfig.MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if mem > 0 and swap > 0 and swap < mem:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    reservation = req.get("MemoryReservation", 0)
    if reservation and reservation < hostconfig.MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if mem > 0 and reservation > 0 and mem < reservation:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
    try:
        # the checks shared with create; their answers there name the field, dockerd's do not
        hostconfig.validate({k: v for k, v in req.items() if k not in ("Memory", "MemorySwap", "MemoryReservation")})
    except InvalidParameter as e:
        raise InvalidParameter(e.message.split(": ", 1)[1] if e.message.startswith("HostConfig.") else e.message) \
            from e
    if "CpuShares" in req:
        req["CpuShares"] = min(max(req["CpuShares"], 2), 262144)
    if req.get("BlkioWeight") and not hostconfig.blkio_weight_supported():
        warnings.append(BLKIO_DISCARDED)
        del req["BlkioWeight"]
    rp = body.get("RestartPolicy") or {}
    if rp.get("Name"):
        validate_restart_policy(rp)
        req["RestartPolicy"] = {"Name": rp["Name"], "MaximumRetryCount": rp.get("MaximumRetryCount") or 0}
    return req, warnings


def merged(cid: str, hc: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """``hc`` with the changes; Conflict (dockerd's words) when they clash with what is set."""
    def conflict(msg: str) -> Conflict:
        return Conflict(f"Cannot update container {cid}: {msg}")

    if req.get("NanoCpus") and hc.get("CpuPeriod"):
        raise conflict("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
    if req.get("NanoCpus") and hc.get("CpuQuota"):
        raise conflict("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
    if req.get("CpuPeriod") and hc.get("NanoCpus"):
        raise conflict("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
    if req.get("CpuQuota") and hc.get("NanoCpus"):
        raise conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    if req.get("Memory") and req["Memory"] > (hc.get("MemorySwap") or 0) and not req.get("MemorySwap"):
        raise conflict("Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
                       "at the same time")
    if "RestartPolicy" in req and req["RestartPolicy"]["Name"] != "no" and hc.get("AutoRemove"):
        raise conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
    out = copy.deepcopy(hc)
    out.update(req)
    return out


async def update(svc: ContainerService, name: str, body: dict[str, Any]) -> list[str]:
    """Apply an update request (the API's ``UpdateConfig``); return dockerd's warnings."""
    c = svc.get(name)
    req, warnings = check(body)
    async with svc.lock(c.id):
        if c.state.Status in ("removing", "dead"):
            raise Conflict(f'Cannot update container {c.id}: container is marked for removal and cannot be "update"')
        hc = merged(c.id, c.host_config, req)
        if c.state.running and c.state.Status != "restarting":
            try:
                await svc.runtime.update(svc.bundle(c), hostconfig.resources(hc))
            except RuntimeFailure as e:  # dockerd: errdefs.System, a 500
                raise BerthError(f"Cannot update container {c.id}: {e}") from e
        c.host_config = hc
        svc.store.save(c)
    svc.event(c, "update")
    return warnings
