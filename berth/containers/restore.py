"""Start-up reconciliation: make the container records agree with what the runtime holds.

berthd can die (SIGKILL, OOM, power cut) between any two steps of an operation. When it
starts again, every container is in one of these states, and each is settled here:

- running or paused in the runtime with its conmon alive: watched again (and the record
  corrected if the crash came between ``runtime start``/``pause``/``resume`` and the save);
- created in the runtime but never started (the crash came between ``runtime create`` and
  ``runtime start``): deleted in the runtime, its conmon killed by the pid it recorded, the
  rootfs unmounted; the record still says created (or exited, for a restart), so
  ``docker start`` works again, as after a failed start in Docker;
- stopped, or recorded as running but with neither runtime state nor conmon (the state
  files are gone, as after a reboot): recorded as exited, 255 when no exit code was left;
- runtime state, bundle, container directory or writable layer without any record (a
  create or rm cut short): removed.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from berth.containers import restart
from berth.containers.mounts import unstage
from berth.containers.store import Container, State
from berth.daemon.leftovers import mounts_under
from berth.errors import BerthError
from berth.fsutil import discard_tree, remove_tree
from berth.images.service import rfc3339
from berth.layers import mount as mnt
from berth.runtime.interface import Bundle, RuntimeFailure

if TYPE_CHECKING:
    from berth.containers.service import ContainerService

log = logging.getLogger("berth.containers")
_LIVE = ("running", "paused", "stopped")


async def restore_all(svc: ContainerService) -> None:
    """Reconcile, then apply restart policies at daemon start; interrupted back-offs resume."""
    await reconcile(svc)
    await svc.network.restore({c.id for c in svc.by_id.values() if c.state.running})
    for c in list(svc.by_id.values()):
        if c.state.Status == "restarting" and not svc.restarts.pending(c.id):
            svc.restarts.schedule(c)
        elif restart.start_with_daemon(c):
            try:
                await svc.start(c.id)
            except BerthError as e:
                log.warning("restart policy: starting %s failed: %s", c.id[:12], e)


async def reconcile(svc: ContainerService) -> None:
    for c in svc.store.load_all():
        svc.by_id[c.id] = c
        svc.by_name[c.name] = c.id
    try:
        runtime = await svc.runtime.states()
    except RuntimeFailure as e:
        log.warning("cannot list the runtime's containers: %s", e)
        runtime = {}
    await _orphans(svc, runtime)
    for c in list(svc.by_id.values()):
        if c.state.Status in ("removing", "dead"):  # an rm cut short, or one that failed: as Docker, finish it
            b = svc.bundle(c)
            if c.id in runtime or svc.runtime.live(b, c.state.MonitorPid):
                await svc.runtime.reap(b, c.state.MonitorPid)
            try:
                await svc.remove(c.id, force=True, volumes=True)
            except BerthError as e:  # still cannot go: it stays dead, and a later rm may try again
                log.warning("removing dead container %s: %s", c.id[:12], e)
            continue
        await _settle(svc, c, runtime.get(c.id))


async def _orphans(svc: ContainerService, runtime: dict[str, str]) -> None:
    known = set(svc.by_id)
    bundles = set(os.listdir(svc.files.run_dir)) if os.path.isdir(svc.files.run_dir) else set()
    for cid in sorted((set(runtime) | bundles) - known):
        b = Bundle(id=cid, dir=os.path.join(svc.files.run_dir, cid))
        log.info("removing runtime leftovers of unknown container %s", cid[:12])
        await svc.runtime.reap(b)
        for target in mounts_under(b.dir):  # staged volume subpaths: never delete through them
            mnt.unmount(target)
        remove_tree(b.dir)
        svc.runtime.clear_exit(b)
    for cid in bundles & known:  # config.json is written through a temporary
        for name in os.listdir(os.path.join(svc.files.run_dir, cid)):
            if ".tmp-" in name:
                os.unlink(os.path.join(svc.files.run_dir, cid, name))
    for (cid,) in svc.layers.conn.execute("SELECT cid FROM rw_layers").fetchall():
        if cid not in known:
            log.info("removing the writable layer of unknown container %s", cid[:12])
            svc.layers.remove_rw(cid)
    for name in os.listdir(svc.files.dir):
        if name not in known and name != ".trash":
            discard_tree(os.path.join(svc.files.dir, name), svc.files.trash)


async def _settle(svc: ContainerService, c: Container, rstate: str | None) -> None:
    b = svc.bundle(c)
    live = svc.runtime.live(b, c.state.MonitorPid)
    if live and (rstate in _LIVE or (rstate is None and c.state.running)) and (c.state.running or live.pid):
        if not c.state.running:  # killed between ``runtime start`` and saving the record
            c.state = State(Status="running", Pid=live.pid, MonitorPid=live.monitor_pid,
                            StartedAt=rfc3339(live.started), StartedTs=live.started, FinishedAt=c.state.FinishedAt,
                            FinishedTs=c.state.FinishedTs)
        if rstate in ("running", "paused") and c.state.Status != rstate:  # a pause or resume cut short
            c.state.Status = rstate
        svc.store.save(c)
        if svc.watch_exit(b, live.monitor_pid):
            log.info("container %s still running (pid %d); watching it again", c.id[:12], c.state.Pid)
            svc.health.start(c)
            for m in c.mounts:
                if m["Type"] == "volume":
                    svc.volumes.acquire(m["Name"])  # counts users; mounts are still in place
            return
    if rstate is not None or live:
        log.info("container %s: clearing runtime state %s left by a crash", c.id[:12], rstate or "(monitor only)")
        await svc.runtime.reap(b, c.state.MonitorPid)
    if c.state.running:
        await svc._exited(c.id, svc.runtime.exit_status(b).at)
    else:
        unstage(svc.files.staging_dir(c))  # mounted for a start that never finished
        svc.layers.unmount_rw(c.id)
        svc.runtime.clear_exit(b)
