"""Dockerfile-style ``changes`` for import and commit (CMD, ENTRYPOINT, ENV, …)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from berth.errors import InvalidParameter

ALLOWED = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR", "STOPSIGNAL"}


class ChangeError(InvalidParameter):
    pass


def _words(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            val = json.loads(rest)
        except json.JSONDecodeError:
            val = None
        if isinstance(val, list) and all(isinstance(x, str) for x in val):
            return val
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if len(words) >= 1 and "=" not in words[0]:
        # legacy form: ``ENV KEY value with spaces``
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise ChangeError(f"invalid key=value pair {w!r}")
        out.append((k, v))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply each change line to an image's ``config`` section (returns the same dict)."""
    for line in changes:
        if not line.strip():
            continue
        instr, _, rest = line.strip().partition(" ")
        instr = instr.upper()
        if instr not in ALLOWED:
            raise ChangeError(f"{instr} is not a valid change command")
        if instr == "CMD":
            config["Cmd"] = _words(rest)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _words(rest)
        elif instr == "ENV":
            env = [e for e in config.get("Env") or []]
            for k, v in _pairs(rest):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif instr == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(rest))
            config["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            config["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in _words(rest) if rest.strip().startswith("[") else rest.split():
                vols[v] = {}
            config["Volumes"] = vols
        elif instr == "USER":
            config["User"] = rest.strip()
        elif instr == "WORKDIR":
            config["WorkingDir"] = rest.strip()
        elif instr == "STOPSIGNAL":
            config["StopSignal"] = rest.strip()
        elif instr == "ONBUILD":
            config["OnBuild"] = (config.get("OnBuild") or []) + [rest.strip()]
    return config
