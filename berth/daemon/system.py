"""The system backend: what ``/version``, ``/info`` and ``/system/df`` report about the engine as a
whole, gathered from the services, the storage driver and the host."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import berth
from berth.containers.config import LOG_DRIVERS
from berth.containers.store import Container
from berth.daemon.config import Config
from berth.runtime import seccomp


class Containers(Protocol):
    @property
    def by_id(self) -> Mapping[str, Container]: ...
    async def df_items(self) -> list[dict[str, Any]]: ...


class Images(Protocol):
    def df_items(self) -> tuple[int, list[dict[str, Any]]]: ...


class Volumes(Protocol):
    async def df_items(self) -> list[dict[str, Any]]: ...


class Driver(Protocol):
    def status(self) -> list[list[str]]: ...


class SystemService:
    def __init__(self, cfg: Config, containers: Containers, images: Images, image_count: Callable[[], int],
                 volumes: Volumes, driver: Driver, event_listeners: Callable[[], int] = lambda: 0) -> None:
        self.cfg = cfg
        self.event_listeners = event_listeners  # for /info's NEventsListener
        self.containers = containers
        self.images = images
        self.image_count = image_count
        self.volumes = volumes
        self.driver = driver

    def version(self) -> dict[str, Any]:
        uname = os.uname()
        return {
            "Platform": {"Name": "Berth"},
            "Components": [{"Name": "Engine", "Version": berth.__version__,
                            "Details": {"ApiVersion": berth.API_VERSION, "MinAPIVersion": berth.MIN_API_VERSION,
                                        "Os": "linux", "Arch": "amd64", "KernelVersion": uname.release,
                                        "OCIRuntime": self.cfg.runtime}}],
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

    def info(self) -> dict[str, Any]:
        cfg = self.cfg
        states = [c.state.Status for c in self.containers.by_id.values()]
        uname = os.uname()
        return {
            "ID": cfg.engine_id,
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": self.image_count(),
            "Driver": cfg.storage_driver,
            "DriverStatus": self.driver.status(),
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                        "Log": sorted(LOG_DRIVERS)},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
            "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": _ip_forward(), "Debug": cfg.log_level == "debug",
            "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False, "NGoroutines": 0,
            "SystemTime": datetime.datetime.now().astimezone().isoformat(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1" if not os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "2",
            "KernelVersion": uname.release,
            "OperatingSystem": os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": uname.machine,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem_total(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": [],
                               "AllowNondistributableArtifactsCIDRs": [],
                               "AllowNondistributableArtifactsHostnames": []},
            "DockerRootDir": cfg.data_root,
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": uname.nodename,
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": berth.__version__,
            "Runtimes": {name: {"path": name} for name in (cfg.runtimes or [cfg.runtime])},
            "DefaultRuntime": cfg.runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": seccomp.security_options(),
            "Warnings": cfg.warnings + ([f"WARNING: {problem}"] if (problem := seccomp.default_problem()) else []),
            **_INFO_CONSTANT,
            "NEventsListener": self.event_listeners(),
            "BridgeNfIptables": _sysctl_on("net/bridge/bridge-nf-call-iptables"),
            "BridgeNfIp6tables": _sysctl_on("net/bridge/bridge-nf-call-ip6tables"),
        }

    async def disk_usage(self) -> dict[str, Any]:
        layers_size, images = self.images.df_items()
        return {
            "LayersSize": layers_size,
            "Images": images,
            "Containers": await self.containers.df_items(),
            "Volumes": await self.volumes.df_items(),
            "BuildCache": [],
        }


# /info fields Docker always has, which have one value here (no containerd; init and runtime
# commits unknown), so clients that read them find them
_INFO_CONSTANT: dict[str, Any] = {
    "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
    "InitCommit": {"ID": "", "Expected": ""}, "CDISpecDirs": [], "GenericResources": None,
}


def _sysctl_on(name: str) -> bool:
    try:
        with open("/proc/sys/" + name) as f:
            return f.read().strip() == "1"
    except OSError:  # br_netfilter not loaded
        return False


def mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _ip_forward() -> bool:
    """Whether the host forwards IPv4 (berthd turns it on for bridge networks unless --ip-forward=false)."""
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
