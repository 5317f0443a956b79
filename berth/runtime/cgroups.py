"""Host cgroup set-up the OCI runtimes need.

On a v1+v2 hybrid host (v1 controllers plus a v2 hierarchy at /sys/fs/cgroup/unified),
crun refuses to run while the v2 hierarchy still owns any controller ("cgroups in hybrid
mode not supported, drop all controllers from cgroupv2"). Mounting a v1 hierarchy for
each such controller moves it to v1; after that crun runs. runc works either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("berth.cgroups")
UNIFIED = "/sys/fs/cgroup/unified"


def v2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def hybrid_v2_controllers() -> list[str]:
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def fix_hybrid() -> list[str]:
    """Move controllers owned by the hybrid v2 hierarchy to v1; return what was mounted.

    Raises OSError when a controller cannot be moved (the caller then falls back to runc).
    """
    if v2_only():
        return []
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    done = []
    for ctrl in hybrid_v2_controllers():
        target = f"/sys/fs/cgroup/{ctrl}"
        os.makedirs(target, exist_ok=True)
        if libc.mount(b"cgroup", target.encode(), b"cgroup", 0, ctrl.encode()) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount cgroup v1 {ctrl} on {target}: {os.strerror(e)}")
        done.append(target)
        log.info("moved cgroup controller %s from the hybrid v2 hierarchy to v1 at %s (crun needs this)",
                 ctrl, target)
    return done
