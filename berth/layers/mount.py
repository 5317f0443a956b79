"""Perform the mount specs the storage drivers return.

Overlay mounts use the new mount API (fsopen/fsconfig) where the kernel has it: each
lower directory is passed with its own ``lowerdir+`` call (Linux ≥ 6.8), so there is
no page-size limit on the option string and images of hundreds of layers mount. Older
kernels get classic mount(2) with the drivers' short link names.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from dataclasses import dataclass, field

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

# Syscall numbers of the new mount API are the same on every architecture.
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
MNT_DETACH = 2
PAGE_LIMIT = os.sysconf("SC_PAGE_SIZE") - 1

_lowerdir_plus: bool | None = None  # learned on first use


@dataclass
class Mount:
    """What to mount: ``overlay`` with lowers (top first), or a ``bind`` of ``source``."""

    type: str
    source: str = ""
    lowers: list[str] = field(default_factory=list)
    short_lowers: list[str] = field(default_factory=list)  # the same dirs through short links
    cwd: str = ""  # the directory short links are relative to
    upper: str = ""
    work: str = ""
    options: list[str] = field(default_factory=list)


def _err(what: str, target: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what} {target}: {os.strerror(e)}")


def _fsconfig(fd: int, key: str, value: str | None) -> None:
    """One option; ``value`` None: a flag (``volatile``), which the kernel refuses as a string."""
    kind, val = (_FSCONFIG_SET_FLAG, None) if value is None else (_FSCONFIG_SET_STRING, value.encode())
    r = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(kind),
                      ctypes.c_char_p(key.encode()), ctypes.c_char_p(val), ctypes.c_int(0))
    if r < 0:
        raise _err(f"fsconfig {key}", value or "")


def _mount_overlay_fsopen(m: Mount, target: str) -> None:
    fd = _libc.syscall(_SYS_FSOPEN, ctypes.c_char_p(b"overlay"), ctypes.c_uint(_FSOPEN_CLOEXEC))
    if fd < 0:
        raise _err("fsopen", "overlay")
    try:
        for lower in m.lowers:
            _fsconfig(fd, "lowerdir+", lower)
        if m.upper:
            _fsconfig(fd, "upperdir", m.upper)
            _fsconfig(fd, "workdir", m.work)
        for opt in m.options:
            k, eq, v = opt.partition("=")
            _fsconfig(fd, k, v if eq else None)
        r = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(_FSCONFIG_CMD_CREATE),
                          None, None, ctypes.c_int(0))
        if r < 0:
            raise _err("fsconfig create", target)
        mfd = _libc.syscall(_SYS_FSMOUNT, ctypes.c_int(fd), ctypes.c_uint(_FSMOUNT_CLOEXEC), ctypes.c_uint(0))
        if mfd < 0:
            raise _err("fsmount", target)
        try:
            r = _libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(mfd), ctypes.c_char_p(b""),
                              ctypes.c_int(_AT_FDCWD), ctypes.c_char_p(target.encode()),
                              ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH))
            if r < 0:
                raise _err("move_mount", target)
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


def _mount_overlay_classic(m: Mount, target: str) -> None:
    """mount(2) with one option string, which must fit in a page. Long lower lists use the
    short links relative to the driver root, mounted from a child whose cwd is that root
    (as Docker does), since the daemon's own cwd is shared by all its threads."""
    extra = ("," + ",".join(m.options)) if m.options else ""
    opts = f"lowerdir={':'.join(m.lowers)}"
    if m.upper:
        opts += f",upperdir={m.upper},workdir={m.work}"
    opts += extra
    if len(opts) <= PAGE_LIMIT:
        if _libc.mount(b"overlay", target.encode(), b"overlay", 0, opts.encode()) != 0:
            raise _err("mount overlay on", target)
        return
    if not m.short_lowers or not m.cwd:
        raise OSError(f"overlay mount options for {target} exceed a page and this kernel lacks lowerdir+")
    rel = [os.path.relpath(p, m.cwd) for p in m.short_lowers]
    opts = f"lowerdir={':'.join(rel)}"
    if m.upper:
        opts += f",upperdir={os.path.relpath(m.upper, m.cwd)},workdir={os.path.relpath(m.work, m.cwd)}"
    opts += extra
    if len(opts) > PAGE_LIMIT:
        raise OSError(f"overlay mount options for {target} exceed a page even with short links ({len(rel)} layers)")
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, target], cwd=m.cwd,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"mount overlay on {target}: {r.stderr.strip()}")


def mount(m: Mount, target: str) -> None:
    global _lowerdir_plus
    if m.type == "overlay":
        if _lowerdir_plus is not False:
            try:
                _mount_overlay_fsopen(m, target)
                _lowerdir_plus = True
                return
            except OSError:
                if _lowerdir_plus:
                    raise
                _lowerdir_plus = False
        _mount_overlay_classic(m, target)
    elif m.type == "bind":
        if _libc.mount(m.source.encode(), target.encode(), None, 4096 | 16384, None) != 0:  # MS_BIND|MS_REC
            raise _err("bind mount on", target)
    else:
        raise ValueError(f"unknown mount type {m.type}")


def bind_fd(fd: int, target: str) -> None:
    """Bind-mount the object open as ``fd`` (an ``O_PATH`` fd is enough) on ``target``, private.

    Mounting by descriptor means the source is the inode we resolved, whatever its path has
    become since.
    """
    if _libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, 4096 | 16384, None) != 0:
        raise _err("bind mount on", target)
    if _libc.mount(None, target.encode(), None, 1 << 18, None) != 0:  # MS_PRIVATE
        err = _err("make private", target)
        unmount(target)
        raise err


def unmount(target: str) -> None:
    """Detach ``target``; a path that is not mounted is fine."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(e, f"umount {target}: {os.strerror(e)}")


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == target:
                return True
    return False
