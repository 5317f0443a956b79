"""What one build was asked for: the ``POST /build`` parameters, decoded by the API layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.distribution.client import Credentials

FIXED_EPOCH = 0  # reproducible builds without SOURCE_DATE_EPOCH: 1970-01-01T00:00:00Z
# build args every build accepts without an ARG (Docker's predefined proxy args)
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
# build args the builder itself reads; never reported as unconsumed
BUILDER_ARGS = ("BERTH_REPRODUCIBLE", "SOURCE_DATE_EPOCH")


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    cache_from: list[str] = field(default_factory=list)
    network_mode: str = "default"
    platform: str = ""
    shm_size: int = 0
    memory: int = 0
    memswap: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    extra_hosts: list[str] = field(default_factory=list)
    timestamps_now: bool = False  # ``timestamps=now``: Docker's wall-clock times, not reproducible ones
    registry_auth: dict[str, Credentials] = field(default_factory=dict)  # X-Registry-Config, by registry
    source_date_epoch: str = ""  # the daemon's SOURCE_DATE_EPOCH, for builds that give none

    @property
    def reproducible(self) -> bool:
        return not self.timestamps_now and (self.build_args.get("BERTH_REPRODUCIBLE") or "1") != "0"

    @property
    def epoch(self) -> int:
        """The time every created field and layer mtime is clamped to (reproducible builds)."""
        raw = self.build_args.get("SOURCE_DATE_EPOCH") or self.source_date_epoch
        if raw and raw.strip().isdigit():
            return int(raw.strip())
        return FIXED_EPOCH

    def host_config(self) -> dict[str, object]:
        """The HostConfig of every RUN container."""
        hc: dict[str, object] = {"NetworkMode": self.network_mode or "default"}
        if self.shm_size:
            hc["ShmSize"] = self.shm_size
        if self.memory:
            hc["Memory"] = self.memory
        if self.memswap:
            hc["MemorySwap"] = self.memswap
        if self.cpu_shares:
            hc["CpuShares"] = self.cpu_shares
        if self.cpuset_cpus:
            hc["CpusetCpus"] = self.cpuset_cpus
        if self.extra_hosts:
            hc["ExtraHosts"] = list(self.extra_hosts)
        return hc
