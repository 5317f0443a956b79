"""System endpoints: ping, version, info; and how a Docker engine without a feature answers."""

from __future__ import annotations

import asyncio
import os
import platform
from typing import Any

from aiohttp import web

import berth
from berth.api.common import filters, json_response
from berth.runtime import seccomp

routes = web.RouteTableDef()


def _ping_headers() -> dict[str, str]:
    return {"API-Version": berth.API_VERSION, "OSType": "linux", "Server": f"Berth/{berth.__version__} (linux)",
            "Docker-Experimental": "false", "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


@routes.get("/_ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_ping_headers(), content_type="text/plain")


def version_info(request: web.Request) -> dict[str, Any]:
    uname = os.uname()
    return {
        "Platform": {"Name": "Berth"},
        "Components": [{"Name": "Engine", "Version": berth.__version__,
                        "Details": {"ApiVersion": berth.API_VERSION, "MinAPIVersion": berth.MIN_API_VERSION,
                                    "Os": "linux", "Arch": "amd64", "KernelVersion": uname.release,
                                    "OCIRuntime": request.app["config"].runtime}}],
        "Version": berth.__version__,
        "ApiVersion": berth.API_VERSION,
        "MinAPIVersion": berth.MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "python" + platform.python_version(),
        "Os": "linux",
        "Arch": "amd64" if uname.machine == "x86_64" else uname.machine,
        "KernelVersion": uname.release,
        "BuildTime": "",
    }


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return json_response(version_info(request))


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    cfg = request.app["config"]
    containers = request.app["containers"]
    images = request.app["images"]
    states = [c.state.Status for c in containers.by_id.values()]
    uname = os.uname()
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return json_response({
        "ID": cfg.engine_id,
        "Containers": len(states),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": len(images.images.list()),
        "Driver": cfg.storage_driver,
        "DriverStatus": images.layers.driver.status(),
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": False, "Debug": cfg.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False, "NGoroutines": 0,
        "SystemTime": __import__("datetime").datetime.now().astimezone().isoformat(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "1" if not os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "2",
        "KernelVersion": uname.release,
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": mem,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "DockerRootDir": cfg.data_root,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": uname.nodename,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": berth.__version__,
        "Runtimes": {name: {"path": name} for name in ("crun", "runc")},
        "DefaultRuntime": cfg.runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": seccomp.security_options(),
        "Warnings": cfg.warnings + ([f"WARNING: {problem}"] if (problem := seccomp.default_problem()) else []),
    })


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.Response:
    layers_size, images = request.app["images"].df_items()
    return json_response({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": await request.app["containers"].df_items(),
        "Volumes": await request.app["volumes"].df_items(),
        "BuildCache": [],
    })


@routes.post("/build/prune")
async def build_prune(request: web.Request) -> web.Response:
    f = filters(request).validate(("until", "unused-for", "id", "parent", "type", "description", "inuse", "shared",
                                   "private"))
    f.until()
    return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})  # no builder yet: no cache


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    from berth.api.common import dumps, qtime

    sub = request.app["events"].subscribe(qtime(request, "since"), qtime(request, "until"), filters(request))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        nxt = asyncio.ensure_future(anext(sub))
        while True:
            # wake up now and then to notice a client that hung up while no event came
            done, _ = await asyncio.wait({nxt}, timeout=1.0)
            transport = request.transport
            if transport is None or transport.is_closing():
                nxt.cancel()
                break
            if not done:
                continue
            try:
                ev = nxt.result()
            except StopAsyncIteration:
                break
            await resp.write((dumps(ev) + "\n").encode())
            nxt = asyncio.ensure_future(anext(sub))
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        await sub.aclose()
    return resp
