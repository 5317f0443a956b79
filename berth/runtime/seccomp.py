"""Seccomp profiles in Docker's format, turned into one container's ``linux.seccomp``.

Berth's default policy ships inside the package (``seccomp_default.json``: the same rules as
Docker's default profile). Rules may be conditional on the container's capabilities, the machine's
architecture and the kernel version (``includes``/``excludes``); so the filter a container gets
depends on its final capability set, as in Docker: without CAP_SYS_ADMIN, ``unshare``, ``setns``
and namespace-creating ``clone`` are refused. Each distinct effective rule set is translated and
compiled to BPF once and cached, keyed by the profile and the capabilities its rules mention, so the
common default container reuses one precompiled filter.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
from collections import OrderedDict
from importlib import resources
from typing import Any

from berth.errors import BerthError
from berth.runtime.seccomp_bpf import BPF_ANNOTATION, compile_bpf

__all__ = ["BPF_ANNOTATION", "SeccompUnavailable", "check_profile", "default_problem", "for_container",
           "security_options", "to_oci"]

BUILTIN = "builtin"
UNCONFINED = "unconfined"
PROFILE_FILE = "seccomp_default.json"
# Packagers (and the tests) may point the default at another file; a missing or broken one makes
# berthd refuse containers rather than run them without a filter.
PROFILE_ENV = "BERTH_SECCOMP_PROFILE"
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64", "i686": "386"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
              "386": "SCMP_ARCH_X86"}
_MAX_VARIANTS = 32


class SeccompUnavailable(BerthError):
    status = 500


@functools.cache
def _packaged_path() -> str:
    return str(resources.files(__package__ or "berth.runtime").joinpath(PROFILE_FILE))


def default_profile_path() -> str:
    return os.environ.get(PROFILE_ENV) or _packaged_path()


_default: tuple[str, dict[str, Any], frozenset[str]] | None = None


def _load_default() -> tuple[str, dict[str, Any], frozenset[str]]:
    """(path, profile, its relevant caps); read once. A failure is not remembered, so a repaired
    file is picked up."""
    global _default
    path = default_profile_path()
    if _default is not None and _default[0] == path:
        return _default
    try:
        with open(path, "rb") as f:
            profile = json.loads(f.read())
        check_profile(profile)
    except (OSError, ValueError) as e:
        raise SeccompUnavailable(
            f"the default seccomp profile cannot be loaded from {path}: {e}; refusing to start a container "
            "without a seccomp filter (use --security-opt seccomp=unconfined to run it unconfined)") from e
    _default = (path, profile, relevant_caps(profile))
    return _default


def default_problem() -> str | None:
    """Why the default profile is unusable, or None when it loads."""
    try:
        _load_default()
    except SeccompUnavailable as e:
        return e.message
    return None


def security_options() -> list[str]:
    """``docker info``'s seccomp entry, as Docker reports its built-in profile."""
    return [f"name=seccomp,profile={BUILTIN}"] if default_problem() is None else []


def check_profile(profile: Any) -> None:
    """Raise ValueError, in Docker's words where Docker has them, for a profile that cannot be used."""
    if not isinstance(profile, dict):
        raise ValueError("the seccomp profile is not a JSON object")
    if profile.get("architectures") and profile.get("archMap"):
        raise ValueError("both 'architectures' and 'archMap' are specified in the seccomp profile, "
                         "use either 'architectures' or 'archMap'")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise ValueError("the seccomp profile's syscalls must be a list")
    for sc in syscalls:
        if not isinstance(sc, dict):
            raise ValueError("a seccomp rule must be a JSON object")
        if sc.get("name") and sc.get("names"):
            raise ValueError("'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'")
        for cond in ("includes", "excludes"):
            c = sc.get(cond) or {}
            if not isinstance(c, dict):
                raise ValueError(f"a seccomp rule's {cond} must be a JSON object")
            if c.get("minKernel") is not None:
                _parse_kernel(str(c["minKernel"]))


def _parse_kernel(s: str) -> tuple[int, int]:
    m = re.match(r"^(\d+)\.(\d+)", s)
    if not m:
        raise ValueError(f"invalid kernel version: {s}")
    return int(m.group(1)), int(m.group(2))


def _host_kernel() -> tuple[int, int]:
    return _parse_kernel(platform.release())


def _caps_of(names: Any) -> set[str]:
    return {c if c.startswith("CAP_") else "CAP_" + c for c in (names or [])}


def relevant_caps(profile: dict[str, Any]) -> frozenset[str]:
    """The capabilities the profile's rules are conditional on."""
    out: set[str] = set()
    for sc in profile.get("syscalls") or []:
        for cond in ("includes", "excludes"):
            out |= _caps_of((sc.get(cond) or {}).get("caps"))
    return frozenset(out)


def to_oci(profile: dict[str, Any], caps: list[str], arch: str | None = None,
           kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """Docker-format profile → ``linux.seccomp`` for a process whose bounding set is ``caps``.

    A rule applies when every ``includes`` condition holds (all its caps held, the arch listed,
    the kernel at least minKernel) and no ``excludes`` condition does (any of its caps held, the
    arch listed, the kernel at least minKernel)."""
    arch = arch or _GO_ARCH.get(platform.machine(), platform.machine())
    kernel = kernel or _host_kernel()
    capset = _caps_of(caps)
    main = _SCMP_ARCH.get(arch)
    archs: list[str] = []
    for arch_entry in profile.get("archMap") or []:
        if main and arch_entry.get("architecture") == main:
            archs = [main, *(arch_entry.get("subArchitectures") or [])]
    if not archs:
        archs = list(profile.get("architectures") or ([main] if main else []))
    syscalls = []
    for sc in profile.get("syscalls") or []:
        inc, exc = sc.get("includes") or {}, sc.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not _caps_of(inc["caps"]) <= capset:
            continue
        if inc.get("minKernel") and kernel < _parse_kernel(str(inc["minKernel"])):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if exc.get("caps") and _caps_of(exc["caps"]) & capset:
            continue
        if exc.get("minKernel") and kernel >= _parse_kernel(str(exc["minKernel"])):
            continue
        names = sc.get("names") or ([sc["name"]] if sc.get("name") else [])
        entry: dict[str, Any] = {"names": list(names), "action": sc["action"]}
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
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    return out


# (profile id, the relevant capabilities held) -> (linux.seccomp, base64 BPF or None)
_variants: OrderedDict[tuple[str, frozenset[str]], tuple[dict[str, Any], str | None]] = OrderedDict()


def for_container(setting: str, caps: list[str]) -> tuple[dict[str, Any], str | None] | None:
    """The filter for a container: ``setting`` is its ``seccomp=`` security option ("" or
    "builtin" for the default, "unconfined", or a JSON profile). Returns None for no filter, else
    (``linux.seccomp``, precompiled BPF or None). The result is shared: do not modify it."""
    if setting == UNCONFINED:
        return None
    if setting in ("", BUILTIN):
        path, profile, relevant = _load_default()
        pid = "builtin:" + path
    else:
        profile = json.loads(setting)
        pid, relevant = "json:" + hashlib.sha256(setting.encode()).hexdigest(), relevant_caps(profile)
    key = (pid, relevant & _caps_of(caps))
    hit = _variants.get(key)
    if hit is not None:
        _variants.move_to_end(key)
        return hit
    oci = to_oci(profile, caps)
    result = (oci, compile_bpf(oci))
    _variants[key] = result
    while len(_variants) > _MAX_VARIANTS:
        _variants.popitem(last=False)
    return result
