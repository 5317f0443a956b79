"""The default seccomp profile: containers/common's (Debian ships it in
golang-github-containers-common), in Docker's profile format, turned into the OCI form
for one container's capabilities and this machine's architecture."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

PROFILE_PATHS = ["/usr/share/containers/seccomp.json", "/usr/local/share/berth/seccomp.json"]
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


def find_default_profile() -> str | None:
    for p in PROFILE_PATHS:
        if os.path.exists(p):
            return p
    return None


def _kernel_at_least(want: str) -> bool:
    have = [int(x) for x in platform.release().split("-")[0].split(".")[:2]]
    need = [int(x) for x in want.split(".")[:2]]
    return have >= need


def to_oci(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """Docker-format profile → ``linux.seccomp`` for a process holding ``caps``."""
    arch = _GO_ARCH.get(platform.machine(), platform.machine())
    capset = {c if c.startswith("CAP_") else "CAP_" + c for c in caps}
    archs: list[str] = []
    main = _SCMP_ARCH.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == main:
            archs = [main, *(entry.get("subArchitectures") or [])]
    if not archs:
        archs = list(profile.get("architectures") or ([main] if main else []))
    syscalls = []
    for sc in profile.get("syscalls") or []:
        inc, exc = sc.get("includes") or {}, sc.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= capset:
            continue
        if exc.get("caps") and set(exc["caps"]) & capset:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        names = sc.get("names") or ([sc["name"]] if sc.get("name") else [])
        entry: dict[str, Any] = {"names": names, "action": sc["action"]}
        if sc.get("args"):
            entry["args"] = [{k: v for k, v in a.items() if k in ("index", "value", "valueTwo", "op")}
                             for a in sc["args"]]
        if sc.get("errnoRet") is not None:
            entry["errnoRet"] = sc["errnoRet"]
        syscalls.append(entry)
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"), "architectures": archs,
                           "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return out


_cache: dict[str, dict[str, Any]] = {}


def load(path: str) -> dict[str, Any]:
    if path not in _cache:
        with open(path) as f:
            _cache[path] = json.load(f)
    return _cache[path]
