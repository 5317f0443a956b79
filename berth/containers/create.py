"""Creating a container: the request checked, then its record, /etc files, volumes and
writable layer made, all undone if a step fails."""

from __future__ import annotations

import os
import random
import re
import secrets
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from berth.containers import etcfiles, health
from berth.containers.config import merge_config, validate_host_config
from berth.containers.mounts import MountPoint, parse_volumes_from, resolve
from berth.containers.store import Container
from berth.errors import Conflict, InvalidParameter
from berth.fsutil import remove_tree
from berth.images.service import rfc3339
from berth.runtime import hostconfig

if TYPE_CHECKING:
    from berth.containers.service import ContainerService

NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ADJ = ["admiring", "brave", "calm", "eager", "festive", "gallant", "happy", "jolly", "keen", "lucid", "modest",
        "nifty", "quirky", "serene", "tender", "vibrant", "wizardly", "zealous"]
_NOUN = ["babbage", "curie", "darwin", "euler", "fermi", "hopper", "lamarr", "lovelace", "noether", "pascal",
         "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath"]


def create(svc: ContainerService, body: dict[str, Any], name: str | None) -> tuple[Container, list[str]]:
    """Check a create request, then make the container: record, /etc files, volumes, writable layer."""
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: container config must be an object")
    image_name = body.get("Image") or ""
    if not image_name:
        raise InvalidParameter("Config.Image: no image specified")
    if name:
        if not NAME.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.lstrip("/")
        if name in svc.by_name:
            other = svc.by_name[name]
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
    else:
        name = _random_name(svc.by_name)
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise InvalidParameter("HostConfig: must be an object")
    validate_host_config(hc)
    warnings = hostconfig.validate(hc)
    image = svc.images.get(image_name)
    icfg = image.config.get("config") or {}
    cfg = merge_config(body, icfg)
    volumes_from = []
    for spec in hc.get("VolumesFrom") or []:
        src_name, ro = parse_volumes_from(str(spec))
        volumes_from.append(([MountPoint(**m) for m in svc.get(src_name).mounts], ro))
    mount_points = resolve(body, hc, icfg.get("Volumes"), volumes_from)
    if not cfg["Entrypoint"] and not cfg["Cmd"]:
        raise InvalidParameter("No command specified")
    health.validate(body.get("Healthcheck"))
    cid = secrets.token_hex(32)
    if not cfg.get("Hostname"):
        cfg["Hostname"] = cid[:12]
    cfg["Image"] = image_name
    argv = list(cfg["Entrypoint"] or []) + list(cfg["Cmd"] or [])
    now = time.time()
    cdir = os.path.join(svc.dir, cid)
    hc = dict(hc)
    hc.setdefault("NetworkMode", "default")
    hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    # conmon writes k8s-file on disk; through the API it reads as json-file does (docker-py checks this)
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    c = Container(
        id=cid, name=name, created=rfc3339(now), created_ts=now, image=image_name, image_id=image.id,
        path=argv[0], args=argv[1:], config=cfg, host_config=hc, log_path=os.path.join(cdir, "container.log"),
        hostname_path=os.path.join(cdir, "hostname"), hosts_path=os.path.join(cdir, "hosts"),
        resolv_conf_path=os.path.join(cdir, "resolv.conf"),
    )
    os.makedirs(cdir, mode=0o710)
    created_volumes: list[str] = []
    try:
        for mp in mount_points:
            if mp.Type == "volume" and (not mp.Name or not svc.volumes.exists(mp.Name)):
                vol = svc.volumes.create(mp.Name or None, anonymous=mp.Anonymous)
                mp.Name = vol.name
                created_volumes.append(vol.name)
            elif mp.Type == "bind" and mp.CreateSource and not os.path.exists(mp.Source):
                os.makedirs(mp.Source, mode=0o755)  # as ``docker run -v`` does
        c.mounts = [asdict(mp) for mp in mount_points]
        etcfiles.write(c)
        svc.layers.create_rw(cid, image.top_layer)
        try:
            svc.store.add(c)
        except BaseException:
            svc.layers.remove_rw(cid)
            raise
    except BaseException:
        remove_tree(cdir)
        for name in created_volumes:
            svc.volumes.remove(name, [], force=True)
        raise
    return c, warnings


def _random_name(taken: dict[str, str]) -> str:
    while True:
        n = f"{random.choice(_ADJ)}_{random.choice(_NOUN)}"
        if n in taken:
            n += str(random.randint(1, 999))
        if n not in taken:
            return n
