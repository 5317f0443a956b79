"""Warm the kernel's cgroup migration lock ahead of a container start.

Every runtime start moves the container's first process into its cgroup (a write of its pid to
``cgroup.procs``). That takes the kernel's global cgroup threadgroup lock for writing, a per-cpu
rwsem whose writer must first wait for an RCU grace period, unless another writer held it within
the last grace period. On this 2-core VM that wait is 10-20 ms: `crun run --detach` of Docker's
default spec took 27 ms after an idle gap and 13 ms right after another migration (20 alternating
rounds). So when a container is about to start, berthd makes a migration of its own that changes
nothing (berthd's pid written to the cgroup it is already in), in a thread of its own: the grace
period then passes while berthd does the create and the start's mount, spec and monitor work, and
the runtime's migration finds the lock already warm. (The kernel's ``favordynmods`` cgroup option
would do this for good, host-wide, at a cost to every fork; that is not berthd's to set.)
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("berth.runtime")


def own_procs_file(proc_cgroup: str, root: str = "/sys/fs/cgroup") -> str | None:
    """The ``cgroup.procs`` of the cgroup this process is in (``proc_cgroup``: the text of
    /proc/self/cgroup), in one hierarchy that is mounted: v2's, or a v1 one. None if none is."""
    for line in proc_cgroup.splitlines():
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if not path.startswith("/"):
            continue
        if hid == "0" and ctrls == "":
            candidates = [root, os.path.join(root, "unified")]  # v2, or a hybrid host's v2 part
        else:
            candidates = [os.path.join(root, c.removeprefix("name=")) for c in ctrls.split(",") if c]
        for base in candidates:
            procs = os.path.join(base + path.rstrip("/"), "cgroup.procs")
            if os.path.exists(procs):
                return procs
    return None


class MigrationWarmer:
    """Coalesces requests: while one warm-up waits in the kernel, more requests add nothing."""

    def __init__(self) -> None:
        self._busy = threading.Lock()

    def warm(self) -> None:
        if not self._busy.acquire(blocking=False):
            return
        threading.Thread(target=self._run, name="berth-cgroup-warm", daemon=True).start()

    def _run(self) -> None:
        try:
            with open("/proc/self/cgroup") as f:  # read now: berthd is never moved by this write
                procs = own_procs_file(f.read())
            if procs is not None:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))
        except OSError as e:  # an internal-process rule, a read-only cgroupfs: only the speed-up is lost
            log.debug("cgroup warm-up: %s", e)
        finally:
            self._busy.release()


warmer = MigrationWarmer()
