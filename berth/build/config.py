"""What the config-only instructions do to an image's config, and the history text each one leaves.

Pure functions on the ``config`` section of an image config (Env, Cmd, Labels, ...): the
executor calls them with the instruction's arguments already substituted. The comment each
returns is what Docker's classic builder writes after ``/bin/sh -c #(nop) `` in the history.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from berth.errors import InvalidParameter

Config = dict[str, Any]
DEFAULT_SHELL = ["/bin/sh", "-c"]


def go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(x, ensure_ascii=False) for x in items) + "]"


def env_map(cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in cfg.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_env(cfg: Config, pairs: list[tuple[str, str]]) -> str:
    env = list(cfg.get("Env") or [])
    for key, value in pairs:
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    cfg["Env"] = env
    return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)


def set_labels(cfg: Config, pairs: list[tuple[str, str]]) -> str:
    labels = dict(cfg.get("Labels") or {})
    labels.update(pairs)
    cfg["Labels"] = labels
    return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)


def command(cfg: Config, args: list[str], json_form: bool) -> list[str]:
    """CMD/ENTRYPOINT/RUN argv: exec form as given, shell form through the image's SHELL."""
    if json_form:
        return list(args)
    return [*(cfg.get("Shell") or DEFAULT_SHELL), " ".join(args)]


def set_cmd(cfg: Config, args: list[str], json_form: bool) -> str:
    cfg["Cmd"] = command(cfg, args, json_form)
    if not json_form:
        cfg["ArgsEscaped"] = True
    return "CMD " + go_quote_list(cfg["Cmd"])


def set_entrypoint(cfg: Config, args: list[str], json_form: bool, cmd_set: bool) -> str:
    cfg["Entrypoint"] = command(cfg, args, json_form) if args or json_form else None
    if not cmd_set:
        cfg["Cmd"] = None  # as Docker: an ENTRYPOINT drops the base image's CMD unless this stage set one
    return "ENTRYPOINT " + go_quote_list(cfg["Entrypoint"] or [])


def expose(cfg: Config, ports: list[str]) -> str:
    exposed = dict(cfg.get("ExposedPorts") or {})
    added: list[str] = []
    for p in ports:
        port, _, proto = p.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidParameter(f"invalid proto: {proto}")
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise InvalidParameter(f"invalid containerPort: {port}")
        for n in range(int(lo), int(hi or lo) + 1):
            key = f"{n}/{proto}"
            exposed[key] = {}
            added.append(key)
    cfg["ExposedPorts"] = exposed
    return "EXPOSE " + " ".join(sorted(set(added)))


def volume(cfg: Config, paths: list[str]) -> str:
    vols = dict(cfg.get("Volumes") or {})
    for p in paths:
        if not p.strip():
            raise InvalidParameter("VOLUME specified can not be an empty string")
        vols[p] = {}
    cfg["Volumes"] = vols
    return "VOLUME [" + " ".join(paths) + "]"


def workdir(cfg: Config, path: str) -> str:
    path = posixpath.join(cfg.get("WorkingDir") or "/", path)
    wd = posixpath.normpath(path) if path != "/" else "/"
    cfg["WorkingDir"] = wd
    return "WORKDIR " + wd


def user(cfg: Config, name: str) -> str:
    cfg["User"] = name
    return "USER " + name


def stopsignal(cfg: Config, sig: str) -> str:
    cfg["StopSignal"] = sig
    return "STOPSIGNAL " + sig


def shell(cfg: Config, args: list[str], json_form: bool) -> str:
    if not json_form:
        raise InvalidParameter("SHELL requires the arguments to be in JSON form")
    if not args:
        raise InvalidParameter("SHELL requires at least one argument")
    cfg["Shell"] = list(args)
    return "SHELL [" + " ".join(args) + "]"


def onbuild(cfg: Config, expression: str) -> str:
    cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), expression]
    return "ONBUILD " + expression


def set_healthcheck(cfg: Config, hc: dict[str, Any]) -> str:
    cfg["Healthcheck"] = hc
    return "HEALTHCHECK &{" + go_quote_list(list(hc.get("Test") or [])) + "}"
