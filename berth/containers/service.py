"""The lifecycle of containers: create, start, exit, stop, kill, pause, restart, rename, remove.

State changes are written to SQLite before they are announced; the monitor holds the container's
stdio and exit code, so berthd can be restarted at any time and ``restore`` picks every container up
where it was. The concerns around the lifecycle (queries, stdio, snapshots, exec, health, restart
policies, volumes, files) are modules of their own, built here and reached by the API directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from berth.containers import create as creation
from berth.containers import restart, starting, views
from berth.containers import update as updates
from berth.containers.execs import ExecService
from berth.containers.files import ContainerFiles
from berth.containers.healthsup import HealthSupervisor
from berth.containers.networking import ContainerNetworking, NoNetworking
from berth.containers.procs import Processes
from berth.containers.queries import ContainerQueries
from berth.containers.restart import RestartPolicies
from berth.containers.restore import restore_all
from berth.containers.snapshots import Snapshots
from berth.containers.stdio import Stdio
from berth.containers.store import Container, ContainerNotFound, ContainerStore, State
from berth.containers.tasks import TaskGroup
from berth.containers.volumeuse import VolumeUse
from berth.containers.waiters import Waiters
from berth.errors import BerthError, Conflict, InvalidParameter, NotModified
from berth.filters import Filters
from berth.images.service import ImageService, rfc3339
from berth.layers.store import LayerStore
from berth.runtime import cgroupwarm
from berth.runtime.interface import Bundle, Runtime
from berth.runtime.signals import parse_signal
from berth.volumes.store import VolumeStore

log = logging.getLogger("berth.containers")


class ContainerService:
    def __init__(self, store: ContainerStore, images: ImageService, layers: LayerStore, runtime: Runtime,
                 volumes: VolumeStore, data_root: str, exec_root: str) -> None:
        self.store = store
        self.volumes = volumes
        self.images = images
        self.layers = layers
        self.runtime = runtime
        self.files = ContainerFiles(layers, runtime, data_root, exec_root)
        self.bundle = self.files.bundle
        self.by_id: dict[str, Container] = {}
        self.by_name: dict[str, str] = {}
        self._exiting: set[str] = set()  # exits being recorded (their unmounts run in a thread)
        self._restarting: set[str] = set()  # stopped by docker restart: a --rm container is kept
        self.pending_names: set[str] = set()  # taken by a create still making its container
        self.waiters = Waiters()
        self._locks: dict[str, asyncio.Lock] = {}
        self.tasks = TaskGroup()  # background work, cancelled at shutdown
        self._runtime_cleanup: dict[str, asyncio.Task[None]] = {}
        # (type, action, actor id, attributes) -> None; the daemon plugs in its event bus
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None
        # the concerns around the lifecycle, each behind its own narrow interface
        self.execs = ExecService(runtime, self.tasks, self.get, self.bundle, layers.driver.rootfs_path, self.event)
        self.queries = ContainerQueries(self.by_id, self.get, images, layers, volumes.root, self.execs.ids_of)
        self.restarts = RestartPolicies(store.save, self._restart_now, self.tasks)
        self.health = HealthSupervisor(self.queries.image_config, self.execs.probe, self._health_changed)
        self.mounts = VolumeUse(volumes, self.by_id, self.files.staging_dir)
        self.snapshots = Snapshots(self)
        self.processes = Processes(self.get)
        self.stdio = Stdio(self.get, runtime, self.bundle, self.waiters)
        self.network: ContainerNetworking = NoNetworking()

    def use_network(self, network: ContainerNetworking) -> None:
        """Networking is wired in by the daemon (berth.network); without it, only none and host."""
        self.network = network
        self.queries.network = network

    # -- what networking needs to know of containers (berth.network.service.Directory) ----------------
    def find(self, ref: str) -> tuple[str, str, int]:
        c = self.get(ref)
        return c.id, c.name, c.state.Pid if c.state.running else 0

    def name_of(self, cid: str) -> str | None:
        c = self.by_id.get(cid)
        return c.name if c is not None else None

    def state(self, cid: str) -> tuple[str, bool]:
        c = self.by_id[cid]
        return str(c.host_config.get("NetworkMode") or "default"), c.state.running

    def host_config(self, cid: str) -> dict[str, Any]:
        c = self.by_id.get(cid)
        return dict(c.host_config) if c is not None else {}

    def event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image, name=c.name, **extra)
        self.publish("container", action, c.id, attrs)

    def get(self, name: str) -> Container:
        cid = self.by_name.get(name.lstrip("/"))
        if cid is not None:
            return self.by_id[cid]
        if name in self.by_id:
            return self.by_id[name]
        if name:
            matches = [c for c in self.by_id if c.startswith(name)]
            if len(matches) == 1:
                return self.by_id[matches[0]]
            if len(matches) > 1:
                raise InvalidParameter(f"multiple containers found with provided prefix: {name}")
        raise ContainerNotFound(name)

    def lock(self, cid: str) -> asyncio.Lock:
        lock = self._locks.get(cid)
        if lock is None:
            lock = self._locks[cid] = asyncio.Lock()
        return lock

    async def quiesce(self, cid: str) -> None:
        """Wait for the runtime's cleanup after an exit: before a start or a removal."""
        cleanup = self._runtime_cleanup.pop(cid, None)
        if cleanup is not None:
            await cleanup

    def watch_exit(self, b: Bundle, monitor_pid: int) -> bool:
        """Record the container's exit when its monitor reports it; False if it has already exited."""
        def on_exit() -> None:
            self.tasks.spawn(self._exited(b.id))
        return self.runtime.watch(b, monitor_pid, on_exit)

    async def create(self, body: dict[str, Any], name: str | None) -> tuple[Container, list[str]]:
        cgroupwarm.warmer.warm()  # a start most likely follows: see berth/runtime/cgroupwarm.py
        c, warnings = await creation.create(self, body, name)
        self.by_id[c.id] = c
        self.by_name[c.name] = c.id
        self.event(c, "create")
        return c, warnings

    # -- start ---------------------------------------------------------------------------------------
    async def start(self, name: str) -> None:
        c = self.get(name)
        async with self.lock(c.id):
            if c.state.running:
                raise NotModified("container already started")
            if c.state.Status in ("removing", "dead"):
                raise Conflict(f"cannot start container {c.id[:12]}: container is marked for removal")
            cgroupwarm.warmer.warm()  # a no-op when the create's warm-up is still fresh or under way
            try:
                await starting.start(self, c)
            except BerthError:
                if c.host_config.get("AutoRemove"):
                    # as Docker: a --rm container that cannot start is removed, which is what
                    # `docker run --rm` waits for (condition=removed) after a failed start
                    self.tasks.spawn(self.remove(c.id, force=True, volumes=True))
                raise

    async def _exited(self, cid: str, finished: float | None = None) -> None:
        c = self.by_id.get(cid)
        if c is None or not c.state.running or cid in self._exiting:
            return
        b = self.bundle(c)
        t0 = time.perf_counter()
        status = self.runtime.exit_status(b)
        lag = time.time() - status.at if status.at else 0.0  # from the monitor's exit record to here
        code, oom = status.code, status.oom_killed
        if finished is None:
            finished = time.time()
        self.health.stop(cid)
        # The runtime's leftover state (its state directory, the cgroup) is cleared in the
        # background, alongside our own cleanup: it touches neither the rootfs nor the bundle,
        # and nobody waits for it but a later start of this container (``quiesce``).
        self._runtime_cleanup[cid] = self.tasks.spawn(self.runtime.delete(b))
        self._exiting.add(cid)
        try:  # unmounting waits on the kernel (tens of ms on a busy host): not on the event loop
            if not c.host_config.get("AutoRemove"):  # else the removal below unmounts, in one thread hop
                await asyncio.to_thread(self.files.unmount, c)
        finally:
            self._exiting.discard(cid)
        t_unmount = time.perf_counter()
        await self.network.detach(cid)
        t_net = time.perf_counter()
        self.mounts.release(c)
        c.state = State(Status="exited", ExitCode=255 if code is None else code, StartedAt=c.state.StartedAt,
                        StartedTs=c.state.StartedTs, FinishedAt=rfc3339(finished), FinishedTs=finished,
                        OOMKilled=oom, ManuallyStopped=c.state.ManuallyStopped, Health=c.state.Health)
        self.store.save(c)
        if oom:
            self.event(c, "oom")
        self.event(c, "die", exitCode=str(c.state.ExitCode))
        self.waiters.exited(cid)
        t_end = time.perf_counter()
        log.debug("exit %s: seen %.1f ms after the exit record, unmount %.1f ms, network %.1f ms, record %.1f ms",
                  cid[:12], lag * 1e3, (t_unmount - t0) * 1e3, (t_net - t_unmount) * 1e3, (t_end - t_net) * 1e3)
        if restart.wanted(c):
            self.restarts.schedule(c)
            return
        if c.host_config.get("AutoRemove") and cid not in self._restarting:
            try:
                await self.remove(cid, force=True, volumes=True)
            except BerthError as e:
                log.warning("auto-remove %s: %s", cid[:12], e)

    async def _restart_now(self, cid: str) -> None:
        """A restart policy's timer fired (berth/containers/restart.py)."""
        c = self.by_id.get(cid)
        if c is None or c.state.Status != "restarting":
            return
        async with self.lock(cid):
            if c.state.Status != "restarting":
                return
            if c.state.ManuallyStopped:
                self.restarts.cancel(c)
                return
            c.restart_count += 1
            try:
                await starting.start(self, c)
            except BerthError as e:
                log.warning("restart of %s failed: %s", cid[:12], e)

    def _health_changed(self, c: Container, status: str) -> None:
        if c.id in self.by_id:
            self.store.save(c)
            self.event(c, f"health_status: {status}")

    async def close(self) -> None:
        """Daemon shutdown: stop timers and probes, cancel and await background work. The containers
        keep running; a pending policy restart stays recorded and resumes at the next start."""
        self.restarts.close()
        self.health.close()
        await self.tasks.close()

    async def restore(self) -> None:
        """After a daemon restart: records agree with the runtime, restart policies resume."""
        await restore_all(self)

    # -- wait -------------------------------------------------------------------------------------------
    async def wait(self, name: str, condition: str) -> dict[str, Any]:
        return await self.waiters.wait(self.get(name), condition)

    async def stop(self, name: str, timeout: int | None, sig: str | None) -> None:
        c = self.get(name)
        try:
            stop_sig = parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
        except ValueError as e:
            raise InvalidParameter(str(e)) from e
        if timeout is None:
            timeout = c.config.get("StopTimeout") or 10
        if not await self._stopping(c, NotModified("container already stopped")):
            return
        await self._thaw(c)
        self._signal(c, stop_sig)
        if timeout < 0 or await self.waiters.exit(c, timeout):
            if timeout < 0:
                await self.waiters.exit(c, None)
        else:
            self._signal(c, signal.SIGKILL)
            await self.waiters.exit(c, None)
        self.restarts.cancel(c)  # it may have exited on its own just before, and been scheduled
        self.event(c, "stop")

    async def _stopping(self, c: Container, not_running: BerthError) -> bool:
        """Record a manual stop; False when it only cancelled a pending policy restart."""
        async with self.lock(c.id):  # not while a policy restart is half-way through its start
            cancelled = self.restarts.cancel(c)
            if not cancelled and not c.state.running:
                raise not_running
            c.state.ManuallyStopped = True
            self.store.save(c)
        return not cancelled

    async def restart(self, name: str, timeout: int | None, sig: str | None) -> None:
        """Stop (when running), then start: ``docker restart``. As Docker, the stop of a restart is
        not the end of a ``--rm`` container: it is not removed in between."""
        c = self.get(name)
        if c.state.running:
            self._restarting.add(c.id)
            try:
                await self.stop(c.id, timeout, sig)
            finally:  # the exit path has looked at it by now: stop returns once the exit is recorded
                self._restarting.discard(c.id)
        await self.start(c.id)

    def _signal(self, c: Container, sig: int) -> None:
        try:
            self.runtime.kill(c.state.Pid, sig)
        except ProcessLookupError:
            pass

    async def pause(self, name: str) -> None:
        c = self.get(name)
        async with self.lock(c.id):
            if c.state.Status == "paused":
                raise Conflict(f"Container {c.id} is already paused")
            if not c.state.running:
                raise Conflict(f"Container {c.id} is not running")
            await self.runtime.pause(self.bundle(c))
            c.state.Status = "paused"
            self.store.save(c)
        self.event(c, "pause")

    async def unpause(self, name: str) -> None:
        c = self.get(name)
        async with self.lock(c.id):
            if c.state.Status != "paused":
                raise Conflict(f"Container {c.id} is not paused")
            await self.runtime.resume(self.bundle(c))
            c.state.Status = "running"
            self.store.save(c)
        self.event(c, "unpause")

    async def _thaw(self, c: Container) -> None:
        """A frozen process cannot act on signals: thaw it before stop/kill, as Docker does."""
        if c.state.Status == "paused":
            await self.unpause(c.id)

    async def kill(self, name: str, sig: str | None) -> None:
        c = self.get(name)
        try:
            s = parse_signal(sig or "SIGKILL")
        except ValueError as e:
            raise InvalidParameter(str(e)) from e
        if not await self._stopping(c, Conflict(f"Cannot kill container: {name}: Container {c.id} is not running")):
            return
        await self._thaw(c)
        self.event(c, "kill", signal=str(s))
        self._signal(c, s)
        if s == signal.SIGKILL:
            await self.waiters.exit(c, None)

    async def remove(self, name: str, force: bool, volumes: bool) -> None:
        c = self.get(name)
        if c.state.Status == "restarting":
            if not force:
                raise Conflict(f"You cannot remove a restarting container {c.id}. "
                               "Stop the container before attempting removal or force remove")
            self.restarts.cancel(c)
        if c.state.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. "
                               "Stop the container before attempting removal or force remove")
            await self._thaw(c)
            self.event(c, "kill", signal=str(int(signal.SIGKILL)))
            self._signal(c, signal.SIGKILL)
            await self.waiters.exit(c, None)
        if c.state.Status == "removing" and c.id not in self.by_id:
            return
        async with self.lock(c.id):
            if c.id not in self.by_id:
                return
            t0 = time.perf_counter()
            c.state.Status = "removing"
            self.store.save(c)
            t_save = time.perf_counter()
            # The runtime's cleanup after the exit may still run: it goes on in the background (it
            # needs neither the bundle nor the rootfs), and a crash before it ends leaves runtime
            # state of no container, which the next start-up reaps (restore.py).
            self._runtime_cleanup.pop(c.id, None)
            try:  # files first, then the rows: as a crash would leave it
                await asyncio.to_thread(self.files.discard, c)
            except OSError as e:  # as Docker: the container is left dead, and can be removed again
                c.state.Status = "dead"
                self.store.save(c)
                msg = f"unable to remove filesystem for {c.id}: {e}"
                self.waiters.removal_failed(c.id, msg)
                raise BerthError(msg) from e
            t_files = time.perf_counter()
            self.layers.forget_rw(c.id)
            self.store.delete(c.id)
            self.network.forget(c.id)
            self.execs.forget_container(c.id)
            self.restarts.forget(c.id)
            del self.by_id[c.id]
            self.by_name.pop(c.name, None)
            self._locks.pop(c.id, None)
        if volumes:
            self.mounts.remove_anonymous(c)
        self.event(c, "destroy")
        self.waiters.removed(c.id)
        t_end = time.perf_counter()
        log.debug("remove %s: save %.1f ms, files %.1f ms, rows %.1f ms", c.id[:12],
                  (t_save - t0) * 1e3, (t_files - t_save) * 1e3, (t_end - t_files) * 1e3)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        f = Filters.of(filters).validate(views.PRUNE_FILTERS)
        until = f.until()  # a bad value is a 400 before anything is removed
        deleted, reclaimed = [], 0
        for c in list(self.by_id.values()):
            if not views.prunable(c, f, until):
                continue
            size = await asyncio.to_thread(self.layers.rw_size, c.id)
            try:
                await self.remove(c.id, force=False, volumes=False)
            except BerthError as e:  # as Docker: one container left (dead) does not fail the prune
                log.warning("failed to prune container %s: %s", c.id, e)
                continue
            await asyncio.sleep(0)  # one removal at a time between other requests: /_ping stays prompt
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}

    async def rename(self, name: str, new_name: str) -> None:
        await creation.rename(self, name, new_name)  # names are checked and taken there

    async def update(self, name: str, body: dict[str, Any]) -> list[str]:
        return await updates.update(self, name, body)  # berth/containers/update.py
