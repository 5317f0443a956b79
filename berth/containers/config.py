"""A container's configuration: the request merged with its image's, and HostConfig checks
that must answer 400 at create time, in Docker's words."""

from __future__ import annotations

import re
from typing import Any

from berth.errors import InvalidParameter


def merge_config(body: dict[str, Any], icfg: dict[str, Any]) -> dict[str, Any]:
    def strlist(key: str, v: Any) -> list[str] | None:
        if v is None:
            return None
        if isinstance(v, str):
            return [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise InvalidParameter(f"Config.{key}: must be a list of strings")
        return v

    entry = strlist("Entrypoint", body.get("Entrypoint"))
    cmd = strlist("Cmd", body.get("Cmd"))
    if entry is None:
        entry = icfg.get("Entrypoint")
        if not cmd:
            cmd = icfg.get("Cmd")
    elif entry == [""]:
        entry = None
    # by key, in order: a later entry replaces an earlier one and moves to the end (linear, not
    # quadratic: a create body may carry many thousand entries)
    merged: dict[str, str] = {}
    for e in [*(icfg.get("Env") or []), *(strlist("Env", body.get("Env")) or [])]:
        key = e.split("=", 1)[0]
        merged.pop(key, None)
        merged[key] = e
    env = list(merged.values())
    exposed = dict(icfg.get("ExposedPorts") or {})
    body_exposed = body.get("ExposedPorts") or {}
    if not isinstance(body_exposed, dict):
        raise InvalidParameter("Config.ExposedPorts: must be an object")
    exposed.update(body_exposed)
    labels = dict(icfg.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    return {
        "Hostname": body.get("Hostname") or "",
        "Domainname": body.get("Domainname") or "",
        "User": body.get("User") or icfg.get("User") or "",
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")),
        "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": env,
        "Cmd": cmd,
        "Image": body.get("Image"),
        "Volumes": body.get("Volumes") or icfg.get("Volumes"),
        "WorkingDir": body.get("WorkingDir") or icfg.get("WorkingDir") or "",
        "Entrypoint": entry,
        "OnBuild": icfg.get("OnBuild"),
        "Labels": labels,
        **({"ExposedPorts": exposed} if exposed else {}),
        **({"StopSignal": body.get("StopSignal") or icfg["StopSignal"]}
           if body.get("StopSignal") or icfg.get("StopSignal") else {}),
        **({"StopTimeout": body["StopTimeout"]} if body.get("StopTimeout") is not None else {}),
        **({"Healthcheck": body["Healthcheck"]} if body.get("Healthcheck") else {}),
    }


def validate_host_config(hc: dict[str, Any]) -> None:
    mode = hc.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise InvalidParameter("HostConfig.NetworkMode: must be a string")
    if mode == "container:" or mode.startswith("container:") and ":" in mode[len("container:"):]:
        raise InvalidParameter(f"HostConfig.NetworkMode: invalid container network mode {mode!r}")
    if "AutoRemove" in hc and not isinstance(hc["AutoRemove"], bool):
        raise InvalidParameter("HostConfig.AutoRemove: must be a boolean")
    rp = hc.get("RestartPolicy") or {}
    if not isinstance(rp, dict):
        raise InvalidParameter("HostConfig.RestartPolicy: must be an object")
    rp_name = rp.get("Name") or "no"
    if rp_name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidParameter(f"HostConfig.RestartPolicy: invalid restart policy '{rp_name}'")
    retries = rp.get("MaximumRetryCount") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidParameter("HostConfig.RestartPolicy: maximum retry count cannot be negative")
    if retries and rp_name != "on-failure":
        raise InvalidParameter(f"HostConfig.RestartPolicy: maximum retry count cannot be used with restart policy "
                               f"'{rp_name}'")
    if rp_name != "no" and hc.get("AutoRemove"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    log_cfg = hc.get("LogConfig") or {}
    if log_cfg.get("Type") not in (None, "", "json-file", "k8s-file", "local"):
        raise InvalidParameter(f"HostConfig.LogConfig: logging driver {log_cfg['Type']!r} is not supported "
                               "(json-file)")
    for key in (log_cfg.get("Config") or {}):
        if key not in ("max-size", "max-file", "compress", "labels", "env", "tag"):
            raise InvalidParameter(f"HostConfig.LogConfig: unknown log opt '{key}' for json-file log driver")
    opts = log_cfg.get("Config") or {}
    if opts.get("max-size"):
        if parse_size(str(opts["max-size"]), "max-size") <= 0:
            raise InvalidParameter(f"invalid value for max-size: '{opts['max-size']}': must be a positive size")
    if opts.get("max-file") not in (None, ""):
        raw = str(opts["max-file"])
        if not raw.isdigit():
            raise InvalidParameter(f"invalid value for max-file: '{raw}': must be a whole number")
        if int(raw) < 1:
            raise InvalidParameter("max-file cannot be less than 1")
        if int(raw) > 1 and not opts.get("max-size"):
            raise InvalidParameter("max-file can only be set with max-size")
    shm = hc.get("ShmSize")
    if shm is not None and (not isinstance(shm, int) or shm < 0):
        raise InvalidParameter("HostConfig.ShmSize: SHM size can not be less than 0")


def log_size_max(host_config: dict[str, Any]) -> int:
    """LogConfig max-size ("10m", "1g", bytes) → conmon's --log-size-max; -1 for no cap."""
    raw = str(((host_config.get("LogConfig") or {}).get("Config") or {}).get("max-size") or "")
    return parse_size(raw) if raw else -1


def log_max_file(host_config: dict[str, Any]) -> int:
    """LogConfig max-file: how many log files (the current one and rotated ones) to keep."""
    raw = str(((host_config.get("LogConfig") or {}).get("Config") or {}).get("max-file") or "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def parse_size(raw: str, what: str = "") -> int:
    units = {"k": 1000, "m": 1000**2, "g": 1000**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    m = re.match(r"^([0-9.]+)\s*([a-zA-Z]*)$", raw.strip())
    if not m or (m.group(2) and m.group(2).lower() not in units):
        raise InvalidParameter(f"invalid value for {what}: invalid size: '{raw}'" if what else f"invalid size: '{raw}'")
    return int(float(m.group(1)) * units.get(m.group(2).lower(), 1))
