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
    validate_restart_policy(rp)
    if (rp.get("Name") or "no") != "no" and hc.get("AutoRemove"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    validate_log_config(hc.get("LogConfig") or {})
    shm = hc.get("ShmSize")
    if shm is not None and (not isinstance(shm, int) or shm < 0):
        raise InvalidParameter("HostConfig.ShmSize: SHM size can not be less than 0")


def validate_restart_policy(rp: Any) -> None:
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


# Log drivers, as dockerd names them, with the options each accepts (moby's validators). Every driver
# that keeps a log keeps it in the monitor's store (CRI "k8s-file" lines, berth/containers/logs.py):
# "local" differs from "json-file" only in its defaults (20 MB × 5 files; its files are not
# compressed here). "none" keeps nothing: the monitor writes to /dev/null and attach still works.
DEFAULT_LOG_DRIVER = "json-file"
_COMMON_LOG_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")
LOG_DRIVERS: dict[str, tuple[str, ...]] = {
    "json-file": ("max-file", "max-size", "compress", *_COMMON_LOG_OPTS),
    "local": ("max-file", "max-size", "compress", *_COMMON_LOG_OPTS),
    "none": (),
}
_LOCAL_DEFAULTS = {"max-size": "20m", "max-file": "5"}
_BUILTIN_LOG_OPTS = ("mode", "max-buffer-size")  # every driver's (moby's logger.ValidateLogOpts)


def log_driver(host_config: dict[str, Any]) -> str:
    return str((host_config.get("LogConfig") or {}).get("Type") or DEFAULT_LOG_DRIVER)


def validate_log_config(log_cfg: Any) -> None:
    """Docker's checks and words for HostConfig.LogConfig (a 400 at create)."""
    if not isinstance(log_cfg, dict):
        raise InvalidParameter("HostConfig.LogConfig: must be an object")
    driver = str(log_cfg.get("Type") or DEFAULT_LOG_DRIVER)
    opts = log_cfg.get("Config") or {}
    if driver == "none":
        return  # dockerd accepts any option for "none"
    mode = str(opts.get("mode") or "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidParameter(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise InvalidParameter("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
        parse_size(str(opts["max-buffer-size"]), "max-buffer-size")
    if driver not in LOG_DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{driver}' is registered")
    for key in opts:
        if key not in LOG_DRIVERS[driver] and key not in _BUILTIN_LOG_OPTS:
            raise InvalidParameter(f"unknown log opt '{key}' for json-file log driver" if driver == "json-file"
                                   else f"unknown log opt '{key}' for log driver {driver}")
    if opts.get("max-size"):
        if parse_size(str(opts["max-size"]), "max-size") <= 0:
            raise InvalidParameter(f"invalid value for max-size: '{opts['max-size']}': must be a positive size")
    if opts.get("max-file") not in (None, ""):
        raw = str(opts["max-file"])
        if not raw.isdigit():
            raise InvalidParameter(f"invalid value for max-file: '{raw}': must be a whole number")
        if int(raw) < 1:
            raise InvalidParameter("max-file cannot be less than 1")
        if int(raw) > 1 and not opts.get("max-size") and driver == "json-file":
            raise InvalidParameter("max-file can only be set with max-size")
    if str(opts.get("compress", "false")).lower() not in ("1", "t", "true", "0", "f", "false"):
        raise InvalidParameter(f"invalid value for compress: '{opts['compress']}'")


def _log_opt(host_config: dict[str, Any], key: str) -> str:
    opts = (host_config.get("LogConfig") or {}).get("Config") or {}
    raw = str(opts.get(key) or "")
    if not raw and log_driver(host_config) == "local":
        raw = _LOCAL_DEFAULTS[key]
    return raw


def log_size_max(host_config: dict[str, Any]) -> int:
    """LogConfig max-size ("10m", "1g", bytes) → the monitor's log cap; -1 for no cap."""
    raw = _log_opt(host_config, "max-size")
    return parse_size(raw) if raw else -1


def log_max_file(host_config: dict[str, Any]) -> int:
    """LogConfig max-file: how many log files (the current one and rotated ones) to keep."""
    raw = _log_opt(host_config, "max-file") or "1"
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def parse_size(raw: str, what: str = "") -> int:
    units = {"k": 1000, "m": 1000**2, "g": 1000**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    m = re.match(r"^([0-9.]+)\s*([a-zA-Z]*)$", raw.strip())
    if not m or (m.group(2) and m.group(2).lower() not in units):
        raise InvalidParameter(f"invalid value for {what}: invalid size: '{raw}'" if what else f"invalid size: '{raw}'")
    return int(float(m.group(1)) * units.get(m.group(2).lower(), 1))
