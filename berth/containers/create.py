"""Creating a container: the request checked, then its record, /etc files, volumes and
writable layer made, all undone if a step fails."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Set
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from berth.containers import etcfiles, health
from berth.containers.config import DEFAULT_LOG_DRIVER, merge_config, validate_host_config
from berth.containers.mounts import MountPoint, parse_volumes_from, resolve
from berth.containers.store import Container
from berth.errors import Conflict, InvalidParameter
from berth.fsutil import remove_tree
from berth.images.service import rfc3339
from berth.runtime import hostconfig

log = logging.getLogger("berth.containers")

if TYPE_CHECKING:
    from berth.containers.service import ContainerService

NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ADJ = ["admiring", "brave", "calm", "eager", "festive", "gallant", "happy", "jolly", "keen", "lucid", "modest",
        "nifty", "quirky", "serene", "tender", "vibrant", "wizardly", "zealous"]
_NOUN = ["babbage", "curie", "darwin", "euler", "fermi", "hopper", "lamarr", "lovelace", "noether", "pascal",
         "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath"]


async def create(svc: ContainerService, body: dict[str, Any], name: str | None) -> tuple[Container, list[str]]:
    """Check a create request, then make the container: record, /etc files, volumes, writable layer.

    The writable layer is made in a thread (vfs copies the image's tree); the name is held in
    ``svc.pending_names`` meanwhile, so a second create cannot take it."""
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: container config must be an object")
    image_name = body.get("Image") or ""
    if not image_name:
        raise InvalidParameter("Config.Image: no image specified")
    if name:
        if not NAME.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.lstrip("/")
        if name in svc.by_name or name in svc.pending_names:
            other = svc.by_name.get(name, "")
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
    else:
        name = _random_name(svc.by_name.keys() | svc.pending_names)
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
    etcfiles.validate(hc)
    cid = secrets.token_hex(32)
    if not cfg.get("Hostname"):
        cfg["Hostname"] = cid[:12]
    cfg["Image"] = image_name
    argv = list(cfg["Entrypoint"] or []) + list(cfg["Cmd"] or [])
    now = time.time()
    cdir = os.path.join(svc.files.dir, cid)
    hc = dict(hc)
    hc.setdefault("NetworkMode", "default")
    hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    # an empty Type (the CLI always sends one) is the default driver, reported by name as dockerd does
    log_cfg = hc.get("LogConfig") or {}
    hc["LogConfig"] = {"Type": log_cfg.get("Type") or DEFAULT_LOG_DRIVER, "Config": log_cfg.get("Config") or {}}
    runtime = hc.get("Runtime") or svc.runtime.name
    if runtime not in svc.runtime.runtimes:
        raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
    hc["Runtime"] = runtime  # kept, so the container stays with its runtime whatever the daemon's default
    if hc.get("Memory") and not hc.get("MemorySwap"):
        hc["MemorySwap"] = hc["Memory"] * 2  # dockerd's default swap limit, as it reports it
    c = Container(
        id=cid, name=name, created=rfc3339(now), created_ts=now, image=image_name, image_id=image.id,
        path=argv[0], args=argv[1:], config=cfg, host_config=hc, log_path=os.path.join(cdir, "container.log"),
        hostname_path=os.path.join(cdir, "hostname"), hosts_path=os.path.join(cdir, "hosts"),
        resolv_conf_path=os.path.join(cdir, "resolv.conf"),
    )
    svc.pending_names.add(name)
    try:
        svc.network.plan(cid, hc, body.get("NetworkingConfig"), cfg.get("ExposedPorts"))  # 400/404 before anything
        try:
            return await _make(svc, c, cdir, mount_points, image.top_layer), warnings
        except BaseException:
            svc.network.forget(cid)
            raise
    finally:
        svc.pending_names.discard(name)


async def _make(svc: ContainerService, c: Container, cdir: str, mount_points: list[MountPoint],
                top_layer: str | None) -> Container:
    t0 = time.perf_counter()
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
        etcfiles.write(c, svc.network.host_gateway())
        t_files = time.perf_counter()
        try:
            await asyncio.to_thread(svc.layers.make_rw, c.id, top_layer)
            t_rw = time.perf_counter()
            svc.layers.record_rw(c.id, top_layer)
            svc.store.add(c)
        except BaseException:
            svc.layers.remove_rw(c.id)
            raise
    except BaseException:
        remove_tree(cdir)
        for name in created_volumes:
            svc.volumes.remove(name, [], force=True)
        raise
    t_end = time.perf_counter()
    log.debug("create %s: files %.1f ms, writable layer %.1f ms, records %.1f ms", c.id[:12],
              (t_files - t0) * 1e3, (t_rw - t_files) * 1e3, (t_end - t_rw) * 1e3)
    return c


async def rename(svc: ContainerService, name: str, new_name: str) -> None:
    c = svc.get(name)
    if not new_name or not NAME.match(new_name):
        raise InvalidParameter(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    new_name = new_name.lstrip("/")
    if new_name == c.name:
        raise InvalidParameter("Renaming a container with the same name as its current name")
    async with svc.lock(c.id):
        if new_name in svc.by_name:
            raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                           f'"{svc.by_name[new_name]}". You have to remove (or rename) that container to be '
                           "able to reuse that name.")
        old = c.name
        c.name = new_name
        try:
            svc.store.save(c)
        except BaseException:
            c.name = old
            raise
        del svc.by_name[old]
        svc.by_name[new_name] = c.id
    svc.event(c, "rename", oldName="/" + old)


def _random_name(taken: Set[str]) -> str:
    while True:
        n = f"{random.choice(_ADJ)}_{random.choice(_NOUN)}"
        if n in taken:
            n += str(random.randint(1, 999))
        if n not in taken:
            return n
