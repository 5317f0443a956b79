"""Seccomp filters compiled once with libseccomp (through ctypes) and handed to crun as BPF.

crun compiles ``linux.seccomp`` with libseccomp at every container start (~20 ms here for the
default profile). Berth compiles each distinct rule set once with the same library and passes the
program through crun's ``run.oci.seccomp_bpf_data`` annotation; ``linux.seccomp`` stays in the
spec for runtimes that ignore the annotation."""

from __future__ import annotations

from typing import Any

BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
            "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
           "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_ARM": 0x40000028}


def _action(name: str, errno_ret: int | None) -> int:
    base = _ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        return base | ((1 if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return base | ((errno_ret or 0) & 0xFFFF)
    return base


def compile_bpf(oci: dict[str, Any]) -> str | None:
    """Base64 BPF for an OCI ``linux.seccomp``, or None when libseccomp is unavailable or the
    profile uses something not translated here (the runtime then compiles ``linux.seccomp`` itself)."""
    try:
        return _compile(oci)
    except (OSError, KeyError, ValueError, TypeError):
        return None


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
