"""Exec sessions: extra processes in a running container (``docker exec``).

A session is created (checked, recorded), then started once through the runtime's ``exec``
(berth.runtime.interface), which hands back the process: its pid, its output as
``(stream, bytes)`` with back-pressure, its stdin. The process's exit status becomes the
session's ExitCode before the client's stream is closed (the docker CLI reads it next).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from berth import detachkeys
from berth.containers import health
from berth.containers.store import Container
from berth.containers.tasks import TaskGroup
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound
from berth.runtime import spec as ocispec
from berth.runtime.interface import Bundle, ExecProcess, Runtime, RuntimeFailure


class ExecNotFound(NotFound):
    def __init__(self, eid: str) -> None:
        super().__init__(f"No such exec instance: {eid}")


@dataclass
class ExecSession:
    id: str
    container_id: str
    args: list[str]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    user: str
    env: list[str]
    workdir: str
    privileged: bool
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    started: bool = False
    process: ExecProcess | None = None
    probe: bool = False  # a healthcheck's: never listed in the container's ExecIDs
    detach_keys: bytes = b""  # the body's DetachKeys, parsed
    console_size: list[int] | None = None  # [height, width] of the terminal when the process starts
    error: str = ""  # why the process could not be started, in Docker's words
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.args[0], "arguments": self.args[1:],
                              "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.stdin, "OpenStderr": self.stderr, "OpenStdout": self.stdout,
            # Docker's field is a byte slice, so JSON has it in base64
            "CanRemove": False, "ContainerID": self.container_id,
            "DetachKeys": base64.b64encode(self.detach_keys).decode(),
            "Pid": self.process.pid if self.process is not None else self.pid,
        }


class ExecService:
    """The exec backend: sessions of the containers that ``get`` finds, run through ``runtime``."""

    def __init__(self, runtime: Runtime, tasks: TaskGroup, get: Callable[[str], Container],
                 bundle: Callable[[Container], Bundle], rootfs: Callable[[str], str],
                 event: Callable[..., None]) -> None:
        self.runtime = runtime
        self.tasks = tasks
        self._get = get
        self._bundle = bundle
        self._rootfs = rootfs  # container id -> its root filesystem on the host (users are looked up there)
        self._event = event  # (container, action, **attributes)
        self.sessions: dict[str, ExecSession] = {}

    def get(self, eid: str) -> ExecSession:
        s = self.sessions.get(eid)
        if s is None:
            raise ExecNotFound(eid)
        return s

    def create(self, name: str, body: dict[str, Any]) -> ExecSession:
        c = self._get(name)
        s = self._new(c, body)
        self._event(c, "exec_create: " + " ".join(s.args), execID=s.id)
        return s

    async def start(self, eid: str, detach: bool, console_size: list[int] | None = None) -> ExecProcess:
        """Start a created session; with ``detach`` its output is dropped. ``console_size``, if given,
        replaces the one the session was created with."""
        s = self.get(eid)
        c = self._get(s.container_id)
        if c.state.Status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        if console_size is not None and not s.started:
            s.console_size = list(console_size)
        proc = await self._run(s, self._bundle(c), self._rootfs(c.id), c.config["Hostname"], detach)
        self._event(c, "exec_start: " + " ".join(s.args), execID=s.id)

        async def died() -> None:
            await s.done.wait()
            self._event(c, "exec_die", execID=s.id, exitCode=str(s.exit_code))

        self.tasks.spawn(died())
        return proc

    async def probe(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        """A healthcheck probe: an exec session that is not listed in ExecIDs."""
        session = self._new(c, {"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
        session.probe = True
        try:
            proc = await self.start(session.id, detach=False)
            out = health.ProbeOutput()  # keeps 4 KiB; reads (and drops) the rest until the pipes close
            reader = self.tasks.spawn(out.consume(proc.output()))
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.gather(reader, session.done.wait())), timeout)
                if session.error:  # could not run at all: Docker logs the error, exit code -1
                    raise BerthError(session.error)
                return session.exit_code or 0, out.text()
            except TimeoutError:
                proc.kill(signal.SIGKILL)
                with contextlib.suppress(TimeoutError):  # no pile-up of dying probes
                    await asyncio.wait_for(session.done.wait(), health.SETTLE)
                raise
        finally:
            self.sessions.pop(session.id, None)

    def _new(self, container: Container, body: dict[str, Any]) -> ExecSession:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: exec config must be an object")
        if container.state.Status == "paused":
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        if not container.state.running:
            raise Conflict(f"Container {container.id} is not running")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not all(isinstance(x, str) for x in cmd):
            raise InvalidParameter("No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list):
            raise InvalidParameter("Env: must be a list of strings")
        keys = body.get("DetachKeys") or ""
        try:
            detach_keys = detachkeys.parse(keys) if isinstance(keys, str) and keys else b""
        except ValueError as e:
            raise InvalidParameter(f"Invalid escape keys ({keys}) provided") from e
        s = ExecSession(id=secrets.token_hex(32), container_id=container.id, args=list(cmd),
                        tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")),
                        stdout=bool(body.get("AttachStdout")), stderr=bool(body.get("AttachStderr")),
                        user=body.get("User") or container.config.get("User") or "",
                        env=_merge_env(container.config.get("Env") or [], env),
                        workdir=body.get("WorkingDir") or container.config.get("WorkingDir") or "/",
                        privileged=bool(body.get("Privileged")), detach_keys=detach_keys,
                        console_size=_console_size(body.get("ConsoleSize")))
        self.sessions[s.id] = s
        return s

    def ids_of(self, cid: str) -> list[str]:
        return [s.id for s in self.sessions.values() if s.container_id == cid and not s.probe]

    def forget_container(self, cid: str) -> None:
        for eid in [s.id for s in self.sessions.values() if s.container_id == cid]:
            del self.sessions[eid]

    def _process_spec(self, s: ExecSession, rootfs: str, hostname: str) -> dict[str, Any]:
        try:
            uid, gid, extra = ocispec.lookup_user(rootfs, s.user)
        except ValueError as e:
            raise InvalidParameter(str(e)) from e
        env = list(s.env)
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, f"PATH={ocispec.DEFAULT_PATH}")
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.append(f"HOSTNAME={hostname}")
        if s.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        caps = ocispec.host_caps() if s.privileged else ocispec.DEFAULT_CAPS
        process = {"terminal": s.tty, "user": {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})},
                   "args": s.args, "env": env, "cwd": s.workdir,
                   "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}}
        if s.tty and s.console_size is not None:
            process["consoleSize"] = ocispec.console_box(s.console_size)
        return process

    async def _run(self, s: ExecSession, b: Bundle, rootfs: str, hostname: str, detach: bool) -> ExecProcess:
        if s.started:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        process_spec = self._process_spec(s, rootfs, hostname)  # may refuse (unknown user): not started yet
        s.started = True
        s.running = True
        try:
            proc = await self.runtime.exec(b, s.id, process_spec, stdin=s.stdin, attach=not detach)
        except BaseException as e:
            _end_session(s, -1)
            if isinstance(e, RuntimeFailure):
                raise BerthError(str(e)) from e
            raise
        s.process = proc
        self.tasks.spawn(self._finish(s, proc))
        return proc

    async def _finish(self, s: ExecSession, proc: ExecProcess) -> None:
        code = -1
        try:
            code = await proc.wait()
            if proc.start_error:
                code, s.error = start_failure(s.args[0], proc.start_error)
        finally:
            s.pid = proc.pid
            _end_session(s, code)

    def resize(self, eid: str, h: int, w: int) -> None:
        s = self.get(eid)
        if not s.running:
            raise Conflict(f"Exec {s.id} is not running")
        if s.process is not None:
            s.process.resize(h, w)


def _end_session(s: ExecSession, exit_code: int) -> None:
    """Record the end of a session (normal or failed start): exit code, waiters."""
    s.exit_code = exit_code
    s.running = False
    s.process = None
    s.done.set()


def start_failure(cmd: str, runtime_msg: str) -> tuple[int, str]:
    """An exec that could not start: Docker's exit code (127 not found, 126 cannot execute) and
    message, which it writes to the exec's stdout and the docker CLI prints."""
    low = runtime_msg.lower()
    prefix = "OCI runtime exec failed: exec failed: unable to start container process: "
    if "permission denied" in low:
        return 126, f'{prefix}exec: "{cmd}": permission denied: unknown'
    if "not found" in low or "no such file" in low:
        if "/" in cmd:
            return 127, f'{prefix}exec: "{cmd}": stat {cmd}: no such file or directory: unknown'
        return 127, f'{prefix}exec: "{cmd}": executable file not found in $PATH: unknown'
    return 126, f"{prefix}{runtime_msg}: unknown"


def _console_size(v: Any) -> list[int] | None:
    """A body's ConsoleSize (decoded as Go's [2]uint), or None when it has none."""
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= 0 for x in v):
        return [v[0], v[1]]
    return None


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    env = list(base)
    for e in extra:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    return env
