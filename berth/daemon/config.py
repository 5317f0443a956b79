"""berthd's configuration, from dockerd-style flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.network.config import NetConfig


@dataclass
class Config:
    hosts: list[str] = field(default_factory=lambda: ["unix:///var/run/berth.sock"])
    data_root: str = "/var/lib/berth"
    exec_root: str = "/var/run/berth"
    pidfile: str = ""
    storage_driver: str = "overlay"
    runtime: str = "crun"  # the default OCI runtime
    runtimes: list[str] = field(default_factory=list)  # every OCI runtime a container may choose
    monitor: str = "auto"  # berth (berth-monitor), conmon, or auto: berth when it builds, else conmon
    log_level: str = "info"
    tls: bool = False
    tlsverify: bool = False
    tls_explicit: bool = False  # --tls or --tlsverify given with any value: an unauthenticated TCP API is intended
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    registry_addr: str = ""  # HOST:PORT: serve the registry API from the engine's content store
    registry_tlscert: str = ""
    registry_tlskey: str = ""
    registry_auth: str = ""  # htpasswd:FILE or token:FILE, as `berth registry serve --auth`
    registry_auth_policy: str = ""  # per-repository rules (TOML), as `berth registry serve --auth-policy`
    registry_gc_interval: str = "24h"  # how often the registry's GC runs ("0": never)
    registry_gc_grace: str = "1h"  # what was written this recently is kept (a push in flight)
    network: NetConfig = field(default_factory=NetConfig)
    network_cleanup: bool = False  # --network-cleanup: remove every bridge, veth, rule Berth made, then exit
    engine_id: str = ""
    warnings: list[str] = field(default_factory=list)
