"""The containers backend the API calls: create, start, wait, stop, kill, remove, logs, attach.

State changes are written to SQLite before they are announced; the monitor (conmon)
holds the container's stdio and exit code, so this service can be restarted at any time
and ``restore`` picks every container up where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from berth import crashpoint
from berth.containers import health, views
from berth.containers import logs as logfile
from berth.containers import stats as container_stats
from berth.containers.config import log_size_max, merge_config, validate_host_config
from berth.containers.execs import ExecService, ExecSession
from berth.containers.mounts import MountPoint, copy_up, parse_volumes_from, resolve, stage_subpath, unstage
from berth.containers.restore import reconcile
from berth.containers.store import Container, ContainerStore, State
from berth.containers.tasks import TaskGroup
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound, NotModified
from berth.filters import Filters
from berth.fsutil import discard_tree, empty_trash, remove_tree, write_file
from berth.images import reference
from berth.images.changes import apply_changes
from berth.images.service import ImageService, rfc3339
from berth.layers.store import LayerStore
from berth.runtime import hostconfig
from berth.runtime import spec as ocispec
from berth.runtime.interface import Attachment, Bundle, ExecProcess, Runtime, RuntimeFailure
from berth.runtime.signals import parse_signal
from berth.volumes.store import VolumeStore

log = logging.getLogger("berth.containers")

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ADJ = ["admiring", "brave", "calm", "eager", "festive", "gallant", "happy", "jolly", "keen", "lucid", "modest",
        "nifty", "quirky", "serene", "tender", "vibrant", "wizardly", "zealous"]
_NOUN = ["babbage", "curie", "darwin", "euler", "fermi", "hopper", "lamarr", "lovelace", "noether", "pascal",
         "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath"]
ZERO_TIME = "0001-01-01T00:00:00Z"


class ContainerNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such container: {name}")


class ContainerService:
    def __init__(self, store: ContainerStore, images: ImageService, layers: LayerStore, runtime: Runtime,
                 volumes: VolumeStore, data_root: str, exec_root: str) -> None:
        self.store = store
        self.volumes = volumes
        self.images = images
        self.layers = layers
        self.runtime = runtime
        self.dir = os.path.join(data_root, "containers")
        self.run_dir = os.path.join(exec_root, "c")
        self.trash = os.path.join(self.dir, ".trash")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.run_dir, exist_ok=True)
        empty_trash(self.trash)
        self.by_id: dict[str, Container] = {}
        self.by_name: dict[str, str] = {}
        self._exit_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._remove_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._attachers: dict[str, list[asyncio.Future[Attachment | None]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.tasks = TaskGroup()
        self._runtime_cleanup: dict[str, asyncio.Task[None]] = {}
        self.execs = ExecService(runtime, self.tasks)
        self._restart_timers: dict[str, asyncio.TimerHandle] = {}
        self._health: dict[str, health.Monitor] = {}
        # (type, action, actor id, attributes) -> None; the daemon plugs in its event bus
        self.publish: Callable[[str, str, str, dict[str, str]], None] = lambda *_a: None
        self._backoff: dict[str, float] = {}

    def _event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image, name=c.name, **extra)
        self.publish("container", action, c.id, attrs)

    # -- lookup -----------------------------------------------------------------------------
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

    def using_image(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.state.running) for c in self.by_id.values() if c.image_id == image_id]

    def bundle(self, c: Container) -> Bundle:
        return Bundle(id=c.id, dir=os.path.join(self.run_dir, c.id), name=c.name, log=c.log_path)

    def _lock(self, cid: str) -> asyncio.Lock:
        lock = self._locks.get(cid)
        if lock is None:
            lock = self._locks[cid] = asyncio.Lock()
        return lock

    def _spawn(self, coro: Any) -> None:
        self.tasks.spawn(coro)

    # -- create -------------------------------------------------------------------------------
    def create(self, body: dict[str, Any], name: str | None) -> tuple[Container, list[str]]:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: container config must be an object")
        image_name = body.get("Image") or ""
        if not image_name:
            raise InvalidParameter("Config.Image: no image specified")
        if name:
            if not _NAME.match(name):
                raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            if name in self.by_name:
                other = self.by_name[name]
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                               "You have to remove (or rename) that container to be able to reuse that name.")
        else:
            name = self._random_name()
        hc = body.get("HostConfig") or {}
        if not isinstance(hc, dict):
            raise InvalidParameter("HostConfig: must be an object")
        validate_host_config(hc)
        warnings = hostconfig.validate(hc)
        image = self.images.get(image_name)
        icfg = image.config.get("config") or {}
        cfg = merge_config(body, icfg)
        volumes_from = []
        for spec in hc.get("VolumesFrom") or []:
            src_name, ro = parse_volumes_from(str(spec))
            volumes_from.append(([MountPoint(**m) for m in self.get(src_name).mounts], ro))
        mount_points = resolve(body, hc, icfg.get("Volumes"), volumes_from)
        if not cfg["Entrypoint"] and not cfg["Cmd"]:
            raise InvalidParameter("No command specified")
        health.validate(body.get("Healthcheck"))
        cid = secrets.token_hex(32)
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        cfg["Image"] = image_name
        argv = list(cfg["Entrypoint"] or []) + list(cfg["Cmd"] or [])
        now = time.time()
        cdir = os.path.join(self.dir, cid)
        hc = dict(hc)
        hc.setdefault("NetworkMode", "default")
        hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        # conmon writes k8s-file on disk; through the API it reads as json-file does (docker-py checks this)
        hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        c = Container(
            id=cid, name=name, created=rfc3339(now), created_ts=now, image=image_name, image_id=image.id,
            path=argv[0], args=argv[1:], config=cfg, host_config=hc, log_path=os.path.join(cdir, "container.log"),
            hostname_path=os.path.join(cdir, "hostname"), hosts_path=os.path.join(cdir, "hosts"),
            resolv_conf_path=os.path.join(cdir, "resolv.conf"),
        )
        os.makedirs(cdir, mode=0o710)
        created_volumes: list[str] = []
        try:
            for mp in mount_points:
                if mp.Type == "volume" and (not mp.Name or not self.volumes.exists(mp.Name)):
                    vol = self.volumes.create(mp.Name or None, anonymous=mp.Anonymous)
                    mp.Name = vol.name
                    created_volumes.append(vol.name)
                elif mp.Type == "bind" and mp.CreateSource and not os.path.exists(mp.Source):
                    os.makedirs(mp.Source, mode=0o755)  # as ``docker run -v`` does
            c.mounts = [asdict(mp) for mp in mount_points]
            self._write_etc(c)
            self.layers.create_rw(cid, image.top_layer)
            try:
                self.store.add(c)
            except BaseException:
                self.layers.remove_rw(cid)
                raise
        except BaseException:
            remove_tree(cdir)
            for name in created_volumes:
                self.volumes.remove(name, [], force=True)
            raise
        self.by_id[cid] = c
        self.by_name[name] = cid
        self._event(c, "create")
        return c, warnings

    def _random_name(self) -> str:
        while True:
            n = f"{random.choice(_ADJ)}_{random.choice(_NOUN)}"
            if n in self.by_name:
                n += str(random.randint(1, 999))
            if n not in self.by_name:
                return n

    def _write_etc(self, c: Container) -> None:
        hostname = c.config["Hostname"]
        write_file(c.hostname_path, (hostname + "\n").encode())
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
        if c.host_config.get("NetworkMode") == "host":
            try:
                with open("/etc/hosts") as f:
                    hosts = f.read()
            except OSError:
                pass
        else:
            hosts += f"127.0.1.1\t{hostname}\n"
        write_file(c.hosts_path, hosts.encode())
        try:
            with open("/etc/resolv.conf") as f:
                lines = [ln for ln in f.read().splitlines()
                         if not (ln.startswith("nameserver") and ln.split()[1:2] and
                                 ln.split()[1].startswith(("127.", "::1")))]
        except OSError:
            lines = []
        if not any(ln.startswith("nameserver") for ln in lines):
            lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
        write_file(c.resolv_conf_path, ("\n".join(lines) + "\n").encode())

    # -- start ---------------------------------------------------------------------------------------
    async def start(self, name: str) -> None:
        c = self.get(name)
        async with self._lock(c.id):
            if c.state.running:
                raise NotModified("container already started")
            if c.state.Status in ("removing", "dead"):
                raise Conflict(f"cannot start container {c.id[:12]}: container is marked for removal")
            try:
                await self._start(c)
            except BerthError:
                if c.host_config.get("AutoRemove"):
                    # as Docker: a --rm container that cannot start is removed, which is what
                    # `docker run --rm` waits for (condition=removed) after a failed start
                    self._spawn(self.remove(c.id, force=True, volumes=True))
                raise

    async def _start(self, c: Container) -> None:
        cleanup = self._runtime_cleanup.pop(c.id, None)
        if cleanup is not None:
            await cleanup
        b = self.bundle(c)
        t0 = time.perf_counter()
        os.makedirs(b.dir, exist_ok=True)
        rootfs = self.layers.mount_rw(c.id)
        t_mount = time.perf_counter()
        acquired: list[str] = []
        try:
            user_mounts = await self._prepare_mounts(c, rootfs, acquired)
            cfg = c.config
            try:
                ocispec.workdir_in_rootfs(rootfs, cfg.get("WorkingDir") or "")
            except (ValueError, OSError) as e:
                raise InvalidParameter(f"cannot create the working directory: {e}") from e
            try:
                spec = ocispec.build_spec(
                    rootfs=rootfs, args=[c.path, *c.args], env=list(cfg.get("Env") or []),
                    cwd=cfg.get("WorkingDir") or "/", user=cfg.get("User") or "", hostname=cfg["Hostname"],
                    terminal=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                    cgroup_path=f"/berth/{c.id}",
                    etc_files={"/etc/hostname": c.hostname_path, "/etc/hosts": c.hosts_path,
                               "/etc/resolv.conf": c.resolv_conf_path},
                    readonly_rootfs=bool(c.host_config.get("ReadonlyRootfs")),
                    shm_size=int(c.host_config.get("ShmSize") or 64 << 20),
                    extra_mounts=user_mounts,
                )
            except ValueError as e:
                raise InvalidParameter(str(e)) from e
            try:
                hostconfig.apply(spec, c.host_config)
            except OSError as e:
                raise InvalidParameter(f"error applying HostConfig: {e}") from e
            if c.host_config.get("NetworkMode") == "host":
                spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
            # the bundle is ephemeral: no fsync
            write_file(os.path.join(b.dir, "config.json"), json.dumps(spec).encode())
            t_spec = time.perf_counter()
            try:
                created = await self.runtime.create(b, terminal=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                                    log_size_max=log_size_max(c.host_config))
            except RuntimeFailure as e:
                msg = self._fail_start(c, str(e))
                raise InvalidParameter(f"failed to create task for container: {msg}") from e
        except BaseException:
            unstage(self._staging_dir(c))
            for name in acquired:
                self.volumes.release(name)
            self.layers.unmount_rw(c.id)
            self._notify(self._attachers, c.id, None)
            raise
        for fut in self._attachers.pop(c.id, []):
            if not fut.done():
                try:
                    fut.set_result(self.runtime.attach(b))
                except OSError as e:
                    fut.set_exception(e)
        t_create = time.perf_counter()
        crashpoint.hit("after-runtime-create")
        try:
            await self.runtime.start(b)
        except RuntimeFailure as e:
            with contextlib.suppress(ProcessLookupError):
                self.runtime.kill(created.pid, signal.SIGKILL)
            await self.runtime.delete(b)
            self._release_mounts(c)
            self.layers.unmount_rw(c.id)
            msg = self._fail_start(c, str(e))
            raise InvalidParameter(f"failed to start container: {msg}") from e
        now = time.time()
        c.state = State(Status="running", Pid=created.pid, StartedAt=rfc3339(now), StartedTs=now,
                        MonitorPid=created.monitor_pid, FinishedAt=c.state.FinishedAt, FinishedTs=c.state.FinishedTs)
        self.store.save(c)
        self._start_health(c)
        self._event(c, "start")
        if not self.runtime.watch(b, created.monitor_pid, lambda: self._spawn(self._exited(c.id))):
            self._spawn(self._exited(c.id))
        t_end = time.perf_counter()
        log.debug("start %s: mount %.1f ms, spec %.1f ms, monitor+create %.1f ms, start %.1f ms", c.id[:12],
                  (t_mount - t0) * 1e3, (t_spec - t_mount) * 1e3, (t_create - t_spec) * 1e3, (t_end - t_create) * 1e3)

    def _fail_start(self, c: Container, msg: str) -> str:
        """Record a failed start; return the message in the words Docker (and its CLI) use.

        The docker CLI maps "executable file not found" / "no such file or directory" to
        exit 127 and "permission denied" to 126, so the wording matters.
        """
        low = msg.lower()
        code = 127 if ("not found" in low or "no such file" in low) else 126 if "permission denied" in low else 128
        if code == 127:
            msg = f'OCI runtime create failed: {msg}: exec: "{c.path}": executable file not found in $PATH: unknown'
        elif code == 126:
            msg = f'OCI runtime create failed: {msg}: exec: "{c.path}": permission denied: unknown'
        now = time.time()
        c.state = State(Status="created" if c.state.StartedTs == 0 else "exited", ExitCode=code, Error=msg,
                        StartedAt=c.state.StartedAt, StartedTs=c.state.StartedTs, FinishedAt=rfc3339(now),
                        FinishedTs=now)
        self.store.save(c)
        self._notify(self._exit_waiters, c.id)
        return msg

    async def _exited(self, cid: str, finished: float | None = None) -> None:
        c = self.by_id.get(cid)
        if c is None or not c.state.running:
            return
        b = self.bundle(c)
        status = self.runtime.exit_status(b)
        code, oom = status.code, status.oom_killed
        if finished is None:
            finished = time.time()
        monitor = self._health.pop(cid, None)
        if monitor is not None:
            monitor.stop()
        self._release_mounts(c)
        self.layers.unmount_rw(cid)
        # The runtime's leftover state is cleared in the background: nobody needs to wait for
        # it except a later start of this container, which awaits it.
        self._runtime_cleanup[cid] = self.tasks.spawn(self.runtime.delete(b))
        c.state = State(Status="exited", ExitCode=255 if code is None else code, StartedAt=c.state.StartedAt,
                        StartedTs=c.state.StartedTs, FinishedAt=rfc3339(finished), FinishedTs=finished,
                        OOMKilled=oom, ManuallyStopped=c.state.ManuallyStopped, Health=c.state.Health)
        self.store.save(c)
        if oom:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(c.state.ExitCode))
        self._notify(self._exit_waiters, cid)
        if self._should_restart(c):
            self._schedule_restart(c)
            return
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(cid, force=True, volumes=True)
            except BerthError as e:
                log.warning("auto-remove %s: %s", cid[:12], e)

    def _notify(self, table: dict[str, list[asyncio.Future[Any]]], cid: str, result: Any = None) -> None:
        for fut in table.pop(cid, []):
            if not fut.done():
                fut.set_result(result)

    # -- mounts ----------------------------------------------------------------------------------------------
    async def _prepare_mounts(self, c: Container, rootfs: str, acquired: list[str]) -> list[dict[str, Any]]:
        """OCI mount entries for the container's volumes, binds and tmpfs; copies image content
        into empty volumes first (Docker's copy-up). ``acquired`` collects volumes to release."""
        out: list[dict[str, Any]] = []
        for m in c.mounts:
            mp = MountPoint(**m)
            if mp.Type == "tmpfs":
                opts = ["nosuid", "nodev", "noexec"]
                if mp.TmpfsSize:
                    opts.append(f"size={mp.TmpfsSize}")
                if mp.TmpfsMode:
                    opts.append(f"mode={mp.TmpfsMode:o}")
                opts += [o for o in mp.Mode.split(",") if o and o not in opts]
                if not mp.RW:
                    opts.append("ro")
                out.append({"destination": mp.Destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
                continue
            if mp.Type == "volume":
                src = self.volumes.acquire(mp.Name)
                acquired.append(mp.Name)
                if mp.Subpath:
                    staging = os.path.join(self._staging_dir(c), str(len(out)))
                    src = await asyncio.to_thread(stage_subpath, src, mp.Subpath, staging)
                elif not mp.NoCopy:
                    await asyncio.to_thread(copy_up, rootfs, mp.Destination, src)
            else:
                src = mp.Source
                if not os.path.exists(src):
                    raise InvalidParameter(f"invalid mount config for type \"bind\": bind source path does not "
                                           f"exist: {src}")
            opts = ["rbind", mp.Propagation if mp.Type == "bind" and mp.Propagation else "rprivate"]
            if not mp.RW:
                opts.append("ro")
            out.append({"destination": mp.Destination, "type": "bind", "source": src, "options": opts})
        return out

    def _staging_dir(self, c: Container) -> str:
        """Where a container's volume subpaths are bind-mounted for the runtime (daemon-only)."""
        return os.path.join(self.bundle(c).dir, "subpaths")

    def _release_mounts(self, c: Container) -> None:
        unstage(self._staging_dir(c))
        for m in c.mounts:
            if m["Type"] == "volume":
                self.volumes.release(m["Name"])

    def volume_users(self, name: str) -> list[str]:
        return [c.id for c in self.by_id.values() if any(m["Type"] == "volume" and m["Name"] == name
                                                         for m in c.mounts)]

    def running_volume_users(self, name: str) -> list[str]:
        return [cid for cid in self.volume_users(name) if self.by_id[cid].state.running]

    # -- healthchecks --------------------------------------------------------------------------------------
    def _start_health(self, c: Container) -> None:
        try:
            image_cfg = self.images.images.get(c.image_id).config.get("config") or {}
        except BerthError:
            image_cfg = {}
        cfg = health.effective(c.config, image_cfg)
        if cfg is None:
            return
        old = self._health.pop(c.id, None)
        if old is not None:
            old.stop()
        c.state.Health = {}

        def changed(status: str) -> None:
            if c.id in self.by_id:
                self.store.save(c)
                self._event(c, f"health_status: {status}")

        mon = health.Monitor(cfg, lambda argv, timeout: self._probe(c, argv, timeout), c.state.Health, changed,
                             c.state.StartedTs)
        self._health[c.id] = mon
        mon.start()

    async def _probe(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        session = self.execs.create(c, {"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
        try:
            io = await self.exec_start(session.id, detach=False)
            out = health.ProbeOutput()  # keeps 4 KiB; reads (and drops) the rest until the pipes close
            reader = asyncio.ensure_future(out.consume(io.output()))
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.gather(reader, session.done.wait())), timeout)
                return session.exit_code or 0, out.text()
            except TimeoutError:
                io.kill(signal.SIGKILL)
                with contextlib.suppress(TimeoutError):  # no pile-up of dying probes
                    await asyncio.wait_for(session.done.wait(), health.SETTLE)
                raise
        finally:
            self.execs.sessions.pop(session.id, None)  # probes are not listed in ExecIDs

    # -- restart policies ------------------------------------------------------------------------------------
    def _should_restart(self, c: Container) -> bool:
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.state.ManuallyStopped or name == "no":
            return False
        if name == "on-failure":
            limit = policy.get("MaximumRetryCount") or 0
            return c.state.ExitCode != 0 and (limit <= 0 or c.restart_count < limit)
        return name in ("always", "unless-stopped")

    def _schedule_restart(self, c: Container) -> None:
        """Docker's back-off: 100 ms, doubling up to a minute; back to 100 ms after a run of 10 s or more."""
        ran = c.state.FinishedTs - c.state.StartedTs
        delay = 0.1 if ran >= 10 else min(self._backoff.get(c.id, 0.05) * 2, 60.0)
        self._backoff[c.id] = delay
        c.state.Status = "restarting"
        self.store.save(c)
        loop = asyncio.get_running_loop()
        self._restart_timers[c.id] = loop.call_later(delay, lambda: self._spawn(self._restart_now(c.id)))

    async def _restart_now(self, cid: str) -> None:
        self._restart_timers.pop(cid, None)
        c = self.by_id.get(cid)
        if c is None or c.state.Status != "restarting":
            return
        async with self._lock(cid):
            if c.state.Status != "restarting":
                return
            if c.state.ManuallyStopped:
                self._cancel_restart(c)
                return
            c.restart_count += 1
            try:
                await self._start(c)
            except BerthError as e:
                log.warning("restart of %s failed: %s", cid[:12], e)

    def _cancel_restart(self, c: Container) -> bool:
        timer = self._restart_timers.pop(c.id, None)
        if timer is not None:
            timer.cancel()
        if c.state.Status == "restarting":
            c.state.Status = "exited"
            self.store.save(c)
            return True
        return False

    async def close(self) -> None:
        """Daemon shutdown: stop timers and probes, cancel and await background work. The containers
        keep running; a pending policy restart stays recorded and resumes at the next start."""
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()
        for mon in self._health.values():
            mon.stop()
        await self.tasks.close()

    # -- restore after a daemon restart ------------------------------------------------------------------
    async def restore(self) -> None:
        await reconcile(self)  # records agree with the runtime: berth/containers/restore.py
        # restart policies at daemon start: "always" restarts even after a manual stop,
        # "unless-stopped" unless stopped by hand; interrupted back-offs resume
        for c in list(self.by_id.values()):
            policy = (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            if c.state.Status == "restarting" and c.id not in self._restart_timers:
                self._schedule_restart(c)
            elif c.state.Status == "exited" and c.state.StartedTs and (
                    policy == "always" or (policy == "unless-stopped" and not c.state.ManuallyStopped)):
                try:
                    await self.start(c.id)
                except BerthError as e:
                    log.warning("restart policy: starting %s failed: %s", c.id[:12], e)

    # -- wait -------------------------------------------------------------------------------------------
    async def wait(self, name: str, condition: str) -> dict[str, Any]:
        c = self.get(name)
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        cid = c.id
        loop = asyncio.get_running_loop()
        if condition == "removed":
            fut: asyncio.Future[None] = loop.create_future()
            self._remove_waiters.setdefault(cid, []).append(fut)
            await fut
        elif condition == "next-exit" or c.state.running:
            fut = loop.create_future()
            self._exit_waiters.setdefault(cid, []).append(fut)
            await fut
        return {"StatusCode": c.state.ExitCode, "Error": {"Message": c.state.Error} if c.state.Error else None}

    # -- stop / kill / remove -------------------------------------------------------------------------------
    async def _wait_exit(self, c: Container, timeout: float | None) -> bool:
        if not c.state.running:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(c.id, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False

    async def settle(self, name: str, timeout: float = 5.0) -> None:
        """After a container's stdio closed: give its exit a moment to be recorded, so a client
        that saw the stream end and acts next (inspect, rm) sees the container stopped."""
        try:
            c = self.get(name)
        except NotFound:
            return
        await self._wait_exit(c, timeout)

    async def stop(self, name: str, timeout: int | None, sig: str | None) -> None:
        c = self.get(name)
        try:
            stop_sig = parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
        except ValueError as e:
            raise InvalidParameter(str(e)) from e
        if timeout is None:
            timeout = c.config.get("StopTimeout") or 10
        async with self._lock(c.id):  # not while a policy restart is half-way through _start
            if self._cancel_restart(c):
                c.state.ManuallyStopped = True
                self.store.save(c)
                return
            if not c.state.running:
                raise NotModified("container already stopped")
            c.state.ManuallyStopped = True
            self.store.save(c)
        await self._thaw(c)
        self._signal(c, stop_sig)
        if timeout < 0 or await self._wait_exit(c, timeout):
            if timeout < 0:
                await self._wait_exit(c, None)
        else:
            self._signal(c, signal.SIGKILL)
            await self._wait_exit(c, None)
        self._cancel_restart(c)  # it may have exited on its own just before, and been scheduled
        self._event(c, "stop")

    async def restart(self, name: str, timeout: int | None, sig: str | None) -> None:
        """Stop (when running), then start: ``docker restart``."""
        c = self.get(name)
        if c.state.running:
            await self.stop(c.id, timeout, sig)
        await self.start(c.id)

    def _signal(self, c: Container, sig: int) -> None:
        try:
            self.runtime.kill(c.state.Pid, sig)
        except ProcessLookupError:
            pass

    async def pause(self, name: str) -> None:
        c = self.get(name)
        async with self._lock(c.id):
            if c.state.Status == "paused":
                raise Conflict(f"Container {c.id} is already paused")
            if not c.state.running:
                raise Conflict(f"Container {c.id} is not running")
            await self.runtime.pause(self.bundle(c))
            c.state.Status = "paused"
            self.store.save(c)
        self._event(c, "pause")

    async def unpause(self, name: str) -> None:
        c = self.get(name)
        async with self._lock(c.id):
            if c.state.Status != "paused":
                raise Conflict(f"Container {c.id} is not paused")
            await self.runtime.resume(self.bundle(c))
            c.state.Status = "running"
            self.store.save(c)
        self._event(c, "unpause")

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
        async with self._lock(c.id):
            if self._cancel_restart(c):
                c.state.ManuallyStopped = True
                self.store.save(c)
                return
            if not c.state.running:
                raise Conflict(f"Cannot kill container: {name}: Container {c.id} is not running")
            c.state.ManuallyStopped = True
            self.store.save(c)
        await self._thaw(c)
        self._event(c, "kill", signal=str(s))
        self._signal(c, s)
        if s == signal.SIGKILL:
            await self._wait_exit(c, None)

    async def remove(self, name: str, force: bool, volumes: bool) -> None:
        c = self.get(name)
        if c.state.Status == "restarting":
            if not force:
                raise Conflict(f"You cannot remove a restarting container {c.id}. "
                               "Stop the container before attempting removal or force remove")
            self._cancel_restart(c)
        if c.state.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. "
                               "Stop the container before attempting removal or force remove")
            await self._thaw(c)
            self._event(c, "kill", signal=str(int(signal.SIGKILL)))
            self._signal(c, signal.SIGKILL)
            await self._wait_exit(c, None)
        if c.state.Status == "removing" and c.id not in self.by_id:
            return
        async with self._lock(c.id):
            if c.id not in self.by_id:
                return
            c.state.Status = "removing"
            self.store.save(c)
            self.layers.remove_rw(c.id)
            unstage(self._staging_dir(c))  # never let a tree removal reach into a mounted volume
            remove_tree(self.bundle(c).dir)
            discard_tree(os.path.join(self.dir, c.id), self.trash)
            self.runtime.clear_exit(self.bundle(c))
            self.store.delete(c.id)
            self._runtime_cleanup.pop(c.id, None)
            self.execs.forget_container(c.id)
            self._backoff.pop(c.id, None)
            del self.by_id[c.id]
            self.by_name.pop(c.name, None)
            self._locks.pop(c.id, None)
        if volumes:
            for m in c.mounts:
                if m["Type"] == "volume" and m.get("Anonymous") and not self.volume_users(m["Name"]):
                    try:
                        self.volumes.remove(m["Name"], [], force=True)
                    except BerthError as e:
                        log.warning("removing volume %s of %s: %s", m["Name"], c.id[:12], e)
        self._event(c, "destroy")
        self._notify(self._exit_waiters, c.id)
        self._notify(self._remove_waiters, c.id)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        f = Filters.of(filters).validate(views.PRUNE_FILTERS)
        until = f.until()  # a bad value is a 400 before anything is removed
        deleted, reclaimed = [], 0
        for c in list(self.by_id.values()):
            if not views.prunable(c, f, until):
                continue
            size = await asyncio.to_thread(self.layers.rw_size, c.id)
            await self.remove(c.id, force=False, volumes=False)
            await asyncio.sleep(0)  # one removal at a time between other requests: /_ping stays prompt
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def df_items(self) -> list[dict[str, Any]]:
        out = await self.list_sized(True, -1, {})
        for item in out:
            image = self.images.images.get(item["ImageID"]) if item["ImageID"] else None
            item["SizeRootFs"] = item["SizeRw"] + (self.images.image_size(image) if image else 0)
        return out

    def stats(self, name: str, previous: dict[str, Any] | None) -> dict[str, Any]:
        c = self.get(name)
        running = c.state.Status in ("running", "paused")
        return container_stats.read_stats(f"/berth/{c.id}" if running else "/berth/nonexistent",
                                          c.state.Pid if running else 0, c.name, c.id, previous)

    # -- diff / commit / export / archive -----------------------------------------------------------------
    async def changes(self, name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.layers.changes, self.get(name).id)

    def write_rw_tar(self, cid: str, out: Any) -> None:
        """The container layer as an image layer tar, whiteouts as ``.wh.`` entries (blocking)."""
        self.layers.write_diff(cid, out)

    async def commit(self, name: str, repo: str | None, tag: str | None, comment: str, author: str,
                     changes: list[str], pause: bool, overrides: dict[str, Any] | None) -> str:
        c = self.get(name)
        # everything the request says is checked before any work: a bad --change or tag leaves nothing
        if repo:
            reference.parse_repo_tag(repo, tag)
        section = {k: v for k, v in copy.deepcopy(c.config).items() if k not in ("Hostname", "Domainname")}
        section.update({k: v for k, v in (overrides or {}).items() if v is not None})
        apply_changes(section, changes)
        paused_here = False
        if pause and c.state.Status == "running":
            await self.pause(c.id)
            paused_here = True
        try:
            tmp = self.images.scratch_path(".tar")
            with open(tmp, "wb") as f:
                await asyncio.to_thread(self.write_rw_tar, c.id, f)
        finally:
            if paused_here and c.id in self.by_id and c.state.Status == "paused":
                await self.unpause(c.id)
        try:
            cmd = " ".join([c.path, *c.args])
            iid = await self.images.commit_layer(tmp, c.image_id, c.id, c.config, overrides or {}, changes, repo, tag,
                                                 comment, author, created_by=cmd)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._event(c, "commit", comment=comment)
        return iid

    @contextlib.asynccontextmanager
    async def rootfs_view(self, c: Container, with_mounts: bool = True) -> AsyncIterator[str]:
        """A host path showing the container's filesystem: while it runs, /proc/<pid>/root (its
        volumes and binds included) or, ``with_mounts=False``, the rootfs alone; when stopped, the
        rootfs mounted for the duration under the container's lock."""
        if c.state.running and c.state.Pid:
            yield f"/proc/{c.state.Pid}/root" if with_mounts else self.layers.driver.rootfs_path(c.id)
            return
        async with self._lock(c.id):
            if c.id not in self.by_id:
                raise ContainerNotFound(c.id)
            path = self.layers.mount_rw(c.id)
            try:
                yield path
            finally:
                if not c.state.running:
                    self.layers.unmount_rw(c.id)

    # -- rename / top --------------------------------------------------------------------------------------
    async def rename(self, name: str, new_name: str) -> None:
        c = self.get(name)
        if not new_name or not _NAME.match(new_name):
            raise InvalidParameter(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        if new_name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        async with self._lock(c.id):
            if new_name in self.by_name:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                               f'"{self.by_name[new_name]}". You have to remove (or rename) that container to be '
                               "able to reuse that name.")
            old = c.name
            c.name = new_name
            try:
                self.store.save(c)
            except BaseException:
                c.name = old
                raise
            del self.by_name[old]
            self.by_name[new_name] = c.id
        self._event(c, "rename", oldName="/" + old)

    def container_pids(self, c: Container) -> list[int]:
        """Every process in the container, from its cgroup (v1 pids hierarchy, or v2)."""
        for base in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
            path = os.path.join(base, "berth", c.id, "cgroup.procs")
            try:
                with open(path) as f:
                    return [int(x) for x in f.read().split()]
            except FileNotFoundError:
                continue
        return [c.state.Pid] if c.state.Pid else []

    async def top(self, name: str, ps_args: str) -> dict[str, Any]:
        """``ps`` on the host, keeping only the container's processes, as Docker does."""
        c = self.get(name)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        args = ps_args.split() if ps_args else ["-ef"]
        proc = await asyncio.create_subprocess_exec(shutil.which("ps") or "ps", *args, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidParameter(f"ps: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        if not lines:
            raise InvalidParameter("ps: no output")
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        pid_col = titles.index("PID")
        pids = set(self.container_pids(c))
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    # -- exec ------------------------------------------------------------------------------------------------
    def exec_create(self, name: str, body: dict[str, Any]) -> ExecSession:
        c = self.get(name)
        s = self.execs.create(c, body)
        self._event(c, "exec_create: " + " ".join(s.args), execID=s.id)
        return s

    async def exec_start(self, eid: str, detach: bool) -> ExecProcess:
        s = self.execs.get(eid)
        c = self.get(s.container_id)
        if c.state.Status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        io = await self.execs.start(s, self.bundle(c), self.layers.driver.rootfs_path(c.id), c.config["Hostname"],
                                    detach)
        self._event(c, "exec_start: " + " ".join(s.args), execID=s.id)

        async def died() -> None:
            await s.done.wait()
            self._event(c, "exec_die", execID=s.id, exitCode=str(s.exit_code))

        self._spawn(died())
        return io

    # -- attach / logs / resize -------------------------------------------------------------------------------
    async def attach(self, name: str) -> Attachment | None:
        """The container's stdio; waits for ``start`` if the container is only created."""
        c = self.get(name)
        if c.state.running:
            return self.runtime.attach(self.bundle(c))
        if c.state.Status != "created" and c.state.Status != "exited":
            raise Conflict("You cannot attach to a stopped container, start it first")
        fut: asyncio.Future[Attachment | None] = asyncio.get_running_loop().create_future()
        self._attachers.setdefault(c.id, []).append(fut)
        try:
            return await fut
        finally:
            lst = self._attachers.get(c.id)
            if lst and fut in lst:
                lst.remove(fut)

    def resize(self, name: str, h: int, w: int) -> None:
        c = self.get(name)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        self.runtime.resize(self.bundle(c), h, w)

    async def logs(self, name: str, *, stdout: bool, stderr: bool, follow: bool, tail: int, since: float,
                   until: float) -> AsyncIterator[list[logfile.Record]]:
        """Batches of log records: tailed from the file's end, read and parsed off the event loop."""
        c = self.get(name)
        reader = logfile.LogReader(c.log_path)  # an open file: removal cannot cut a follower short

        def wanted(r: logfile.Record) -> bool:
            if (r.stream == logfile.STDOUT and not stdout) or (r.stream == logfile.STDERR and not stderr):
                return False
            if since and r.epoch < since:
                return False
            return not (until and r.epoch > until)

        try:
            async for batch in logfile.existing(reader, tail):
                yield [r for r in batch if wanted(r)]
            if follow and c.state.running:
                async for batch in logfile.follow(reader, lambda: c.state.running and c.id in self.by_id):
                    yield [r for r in batch if wanted(r)]
        finally:
            reader.close()

    # -- list / inspect -------------------------------------------------------------------------------------
    async def list_sized(self, all_: bool, limit: int, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``ps --size``: the listing plus each writable layer's size, walked off the event loop."""
        out = self.list(all_, limit, filters)
        for entry in out:
            entry["SizeRw"] = await asyncio.to_thread(self.layers.rw_size, entry["Id"])
        return out

    def list(self, all_: bool, limit: int, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        items = sorted(self.by_id.values(), key=lambda x: x.created_ts, reverse=True)
        return views.listing(items, all_, limit, filters, self.get, lambda refs: views.image_family(self.images, refs),
                             self.volumes.root)

    async def inspect(self, name: str, size: bool = False) -> dict[str, Any]:
        c = self.get(name)
        d = views.detail(c, self.layers.driver, self.execs.ids_of(c.id), self.volumes.root)
        if size:
            d["SizeRw"] = await asyncio.to_thread(self.layers.rw_size, c.id)
        return d

