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


# -- precompiled filters -------------------------------------------------------------------------------
# crun compiles the profile with libseccomp at every container start (~20 ms here for the default
# profile). We compile it once per (profile, capabilities) with the same library and hand crun the
# BPF through its ``run.oci.seccomp_bpf_data`` annotation; ``linux.seccomp`` stays in the spec for
# runtimes that ignore the annotation.
BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
            "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
           "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_ARM": 0x40000028}
_bpf_cache: dict[str, str | None] = {}


def _action(name: str, errno_ret: int | None) -> int:
    base = _ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        return base | ((1 if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return base | ((errno_ret or 0) & 0xFFFF)
    return base


def compile_bpf(oci: dict[str, Any]) -> str | None:
    """Base64 BPF for an OCI ``linux.seccomp``, or None when libseccomp is unavailable or the
    profile uses something we do not translate (the runtime then compiles it itself)."""
    key = json.dumps(oci, sort_keys=True)
    if key in _bpf_cache:
        return _bpf_cache[key]
    try:
        result = _compile(oci)
    except (OSError, KeyError, ValueError):
        result = None
    _bpf_cache[key] = result
    return result


def _compile(oci: dict[str, Any]) -> str | None:
    import base64
    import ctypes
    import ctypes.util
    import tempfile

    name = ctypes.util.find_library("seccomp")
    if not name:
        return None
    lib = ctypes.CDLL(name, use_errno=True)

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]

    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]

    default = _action(oci["defaultAction"], oci.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        return None
    try:
        lib.seccomp_attr_set(ctx, 3, 0)  # SCMP_FLTATR_CTL_NNP off: the runtime decides no_new_privs
        native = lib.seccomp_arch_native()
        wanted = [_ARCHES[a] for a in oci.get("architectures") or []]
        for arch in wanted:
            if arch != native and lib.seccomp_arch_add(ctx, arch) != 0:
                return None
        for rule in oci.get("syscalls") or []:
            action = _action(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue  # libseccomp refuses rules equal to the default action
            args = rule.get("args") or []
            arr = (ArgCmp * max(1, len(args)))()
            for i, a in enumerate(args):
                arr[i] = ArgCmp(a["index"], _OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
            for sc in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(sc.encode())
                if nr == -1:  # __NR_SCMP_ERROR: a syscall this libseccomp does not know
                    continue
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), arr)
                if rc != 0 and rc != -17:  # EEXIST: the same rule twice is fine
                    return None
        with tempfile.TemporaryFile() as f:
            if lib.seccomp_export_bpf(ctx, f.fileno()) != 0:
                return None
            f.seek(0)
            return base64.b64encode(f.read()).decode()
    finally:
        lib.seccomp_release(ctx)
