"""Starting a container: its rootfs mounted, volumes and network attached, the spec written and
the runtime run under its monitor, every step undone if a later one fails; apart from the rest of
the lifecycle because it is the latency-critical path, timed phase by phase."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from berth import crashpoint
from berth.containers import etcfiles, startspec
from berth.containers.config import log_max_file, log_size_max
from berth.containers.mounts import unstage
from berth.containers.store import Container, State
from berth.errors import InvalidParameter
from berth.images.service import rfc3339
from berth.runtime.interface import Created, RuntimeFailure

if TYPE_CHECKING:
    from berth.containers.service import ContainerService

log = logging.getLogger("berth.containers")
MONITOR_ANSWER_TIMEOUT = 10.0  # seconds a failed start waits for its early monitor's answer


async def start(svc: ContainerService, c: Container) -> None:
    """Mount, plug, write the spec, run: everything undone if a step fails (the caller holds the
    container's lock). Each phase is timed in the debug log."""
    await svc.quiesce(c.id)
    b = svc.bundle(c)
    t0 = time.perf_counter()
    rootfs = await asyncio.to_thread(svc.files.mount, c)  # also makes the bundle directory
    t_mount = time.perf_counter()
    cfg = c.config

    def runtime_create() -> Awaitable[Created]:
        return svc.runtime.create(b, terminal=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                   log_size_max=log_size_max(c.host_config),
                                   log_max_file=log_max_file(c.host_config))

    # A monitor that reads the spec only at start is launched now, beside the volume, network
    # and spec work below (its fork, exec and set-up took 3-8 ms of the start path).
    early = asyncio.ensure_future(runtime_create()) if svc.runtime.spec_at_start else None
    acquired: list[str] = []
    networked = False
    try:
        user_mounts = await svc.mounts.prepare(c, rootfs, acquired)
        t_net = time.perf_counter()
        sandbox = await svc.network.attach(c.id, c.name, c.host_config, cfg.get("ExposedPorts"))
        networked = True
        t_net = time.perf_counter() - t_net
        gateway = svc.network.host_gateway() if sandbox.addresses else ""

        def write_files() -> None:  # file system work off the event loop, in one hop
            if sandbox.addresses:
                etcfiles.write_hosts(c, sandbox.addresses, gateway)
                etcfiles.write_resolv(c, sandbox.embedded_dns)
            startspec.write_bundle(c, rootfs, user_mounts, b.dir, sandbox.path)

        await asyncio.to_thread(write_files)
        t_spec = time.perf_counter()
        try:
            created = await (early if early is not None else runtime_create())
        except RuntimeFailure as e:
            early = None  # it failed: nothing of it is left to undo
            msg = _fail(svc, c, str(e))
            raise InvalidParameter(f"failed to create task for container: {msg}") from e
    except BaseException:
        if early is not None:  # launched, but the start failed on our side: the monitor goes.
            # Not cancelled (shielded, bounded): its answer is awaited so that delete can wait for
            # it to be gone before anything removes the bundle it is still writing in.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(early), MONITOR_ANSWER_TIMEOUT)
            await svc.runtime.delete(b)
        if networked:
            await svc.network.detach(c.id)
        unstage(svc.files.staging_dir(c))
        for name in acquired:
            svc.volumes.release(name)
        svc.layers.unmount_rw(c.id)
        svc.waiters.start_failed(c.id)
        raise
    svc.waiters.started(c.id, lambda: svc.runtime.attach(b))
    t_create = time.perf_counter()
    crashpoint.hit("after-runtime-create")
    try:
        pid = await svc.runtime.start(b) or created.pid
    except RuntimeFailure as e:
        if created.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                svc.runtime.kill(created.pid, signal.SIGKILL)
        await svc.runtime.delete(b)
        await svc.network.detach(c.id)
        svc.mounts.release(c)
        svc.layers.unmount_rw(c.id)
        msg = _fail(svc, c, str(e))
        raise InvalidParameter(f"failed to start container: {msg}") from e
    crashpoint.hit("after-runtime-start")
    now = time.time()
    c.state = State(Status="running", Pid=pid, StartedAt=rfc3339(now), StartedTs=now,
                    MonitorPid=created.monitor_pid, FinishedAt=c.state.FinishedAt, FinishedTs=c.state.FinishedTs)
    svc.store.save(c)
    svc.health.start(c)
    svc.event(c, "start")
    if not svc.watch_exit(b, created.monitor_pid):
        svc.tasks.spawn(svc._exited(c.id))
    t_end = time.perf_counter()
    log.debug("start %s: mount %.1f ms, network %.1f ms, spec %.1f ms, monitor+create %.1f ms, start %.1f ms",
              c.id[:12], (t_mount - t0) * 1e3, t_net * 1e3, (t_spec - t_mount - t_net) * 1e3,
              (t_create - t_spec) * 1e3, (t_end - t_create) * 1e3)


def _fail(svc: ContainerService, c: Container, msg: str) -> str:
    """Record a failed start; return the message to report (berth/containers/startspec.py)."""
    c.state, msg = startspec.failed(c, msg)
    svc.store.save(c)
    svc.waiters.exited(c.id)
    return msg
