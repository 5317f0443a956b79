"""Exec sessions: extra processes in a running container (``docker exec``).

Each session runs ``<runtime> exec --process <spec>`` as a child of berthd: its stdio are
pipes we read, or, with a TTY, a pseudo-terminal whose master end the runtime hands us
over a console socket. The runtime exits with the process's status, which becomes the
session's ExitCode before the client's stream is closed (the docker CLI reads it next).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import socket
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from berth.errors import BerthError, Conflict, InvalidParameter, NotFound
from berth.runtime import spec as ocispec

STDOUT, STDERR = 1, 2


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
    master_fd: int = -1
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.args[0], "arguments": self.args[1:],
                              "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.stdin, "OpenStderr": self.stderr, "OpenStdout": self.stdout,
            "CanRemove": False, "ContainerID": self.container_id, "DetachKeys": "", "Pid": self.pid,
        }


class ExecIO:
    """What the API layer pumps: output chunks tagged with their stream, and a stdin sink."""

    def __init__(self, session: ExecSession) -> None:
        self.session = session
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._stdin_writer: asyncio.StreamWriter | None = None

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    async def write_stdin(self, data: bytes) -> None:
        s = self.session
        if s.tty and s.master_fd >= 0:
            view = memoryview(data)
            while view and s.master_fd >= 0:
                try:
                    view = view[os.write(s.master_fd, view):]
                except BlockingIOError:  # the terminal's input buffer is full: let it drain
                    await asyncio.sleep(0.01)
        elif self._stdin_writer is not None:
            self._stdin_writer.write(data)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await self._stdin_writer.drain()

    def close_stdin(self) -> None:
        if self._stdin_writer is not None:
            self._stdin_writer.close()
            self._stdin_writer = None


class ExecService:
    def __init__(self, runtime_cmd: Any) -> None:
        self.runtime_cmd = runtime_cmd  # (*args) -> argv of the OCI runtime with its state root
        self.sessions: dict[str, ExecSession] = {}

    def get(self, eid: str) -> ExecSession:
        s = self.sessions.get(eid)
        if s is None:
            raise ExecNotFound(eid)
        return s

    def create(self, container: Any, body: dict[str, Any]) -> ExecSession:
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
        s = ExecSession(id=secrets.token_hex(32), container_id=container.id, args=list(cmd),
                        tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")),
                        stdout=bool(body.get("AttachStdout")), stderr=bool(body.get("AttachStderr")),
                        user=body.get("User") or container.config.get("User") or "",
                        env=_merge_env(container.config.get("Env") or [], env),
                        workdir=body.get("WorkingDir") or container.config.get("WorkingDir") or "/",
                        privileged=bool(body.get("Privileged")))
        self.sessions[s.id] = s
        return s

    def ids_of(self, cid: str) -> list[str]:
        return [s.id for s in self.sessions.values() if s.container_id == cid]

    def forget_container(self, cid: str) -> None:
        for eid in self.ids_of(cid):
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
        return {"terminal": s.tty, "user": {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})},
                "args": s.args, "env": env, "cwd": s.workdir,
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}}

    async def start(self, s: ExecSession, rootfs: str, hostname: str, detach: bool, run_dir: str) -> ExecIO:
        """Start the session's process; ``run_dir`` is the container's bundle directory."""
        if s.started:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        process_spec = self._process_spec(s, rootfs, hostname)  # may refuse (unknown user): not started yet
        s.started = True
        io = ExecIO(s)
        spec_path = os.path.join(run_dir, f"exec-{s.id[:16]}.json")
        with open(spec_path, "w") as f:
            json.dump(process_spec, f)
        pid_file = spec_path[:-5] + ".pid"
        argv = ["exec", "--process", spec_path, "--pid-file", pid_file]
        listener = None
        sock_path = ""
        dir_fd = -1
        proc: asyncio.subprocess.Process | None = None
        readers: list[asyncio.Future[None]] = []
        try:
            if s.tty:
                sock_path = os.path.join(run_dir, f"e{s.id[:12]}.sock")
                addr = sock_path
                if len(sock_path.encode()) > 100:
                    # AF_UNIX paths stop at 107 bytes: go through a directory fd that the runtime inherits
                    dir_fd = os.open(run_dir, os.O_PATH | os.O_DIRECTORY)
                    addr = f"/proc/self/fd/{dir_fd}/{os.path.basename(sock_path)}"
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(addr)
                listener.listen(1)
                listener.setblocking(False)
                argv += ["--tty", "--console-socket", addr]
            argv.append(s.container_id)
            piped = not s.tty and not detach
            proc = await asyncio.create_subprocess_exec(
                *self.runtime_cmd(*argv),
                stdin=asyncio.subprocess.PIPE if piped and s.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                pass_fds=(dir_fd,) if dir_fd >= 0 else ())
            s.running = True
            if listener is not None:
                loop = asyncio.get_running_loop()
                try:
                    conn = await asyncio.wait_for(_accept(loop, listener, proc), 30)
                except TimeoutError as e:
                    raise BerthError("exec: the runtime did not hand over a terminal in time") from e
                if conn is not None:
                    with conn:
                        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                    if not fds:
                        raise BerthError("exec: the runtime did not hand over a terminal")
                    s.master_fd = fds[0]
                    readers.append(asyncio.ensure_future(_pump_fd(s.master_fd, STDOUT, io, detach)))
            elif piped:
                assert proc.stdout is not None and proc.stderr is not None
                io._stdin_writer = proc.stdin
                readers.append(asyncio.ensure_future(_pump_stream(proc.stdout, STDOUT, io)))
                readers.append(asyncio.ensure_future(_pump_stream(proc.stderr, STDERR, io)))
        except BaseException:
            # the session failed half-way: end its process, and leave no files or readers behind
            for r in readers:
                r.cancel()
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            _end_session(s, io, -1 if s.exit_code is None else s.exit_code, (spec_path, pid_file))
            raise
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
            if listener is not None:
                listener.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sock_path)
        with contextlib.suppress(OSError, ValueError):
            with open(pid_file) as f:
                s.pid = int(f.read().strip())

        async def finish() -> None:
            assert proc is not None
            code = await proc.wait()
            if s.tty and readers:
                # the terminal's output may still be buffered: read it until EIO, then stop the
                # reader (it unregisters the fd) before the fd is closed
                await asyncio.wait(readers, timeout=2)
                for r in readers:
                    r.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            else:
                await asyncio.gather(*readers, return_exceptions=True)
            _end_session(s, io, code if code >= 0 else 128 - code, (spec_path, pid_file))

        asyncio.ensure_future(finish())
        return io

    def resize(self, s: ExecSession, h: int, w: int) -> None:
        if not s.running:
            raise Conflict(f"Exec {s.id} is not running")
        if s.master_fd >= 0:
            fcntl.ioctl(s.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))


def _end_session(s: ExecSession, io: ExecIO, exit_code: int, files: tuple[str, ...]) -> None:
    """Record the end of a session (normal or failed start): exit code, terminal, files, waiters."""
    s.exit_code = exit_code
    s.running = False
    if s.master_fd >= 0:
        os.close(s.master_fd)
        s.master_fd = -1
    for p in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    io.queue.put_nowait(None)
    s.done.set()


async def _accept(loop: asyncio.AbstractEventLoop, listener: socket.socket,
                  proc: asyncio.subprocess.Process) -> socket.socket | None:
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    died = asyncio.ensure_future(proc.wait())
    done, _ = await asyncio.wait({accept, died}, return_when=asyncio.FIRST_COMPLETED)
    if accept in done:
        died.cancel()
        conn, _ = accept.result()
        conn.setblocking(True)
        return conn
    accept.cancel()
    return None


async def _pump_stream(reader: asyncio.StreamReader, stream: int, io: ExecIO) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            return
        io.queue.put_nowait((stream, data))


async def _pump_fd(fd: int, stream: int, io: ExecIO, discard: bool) -> None:
    """Read a pty master without a thread: non-blocking, woken by the event loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO once the last slave closes
                return
            if not data:
                return
            if not discard:
                io.queue.put_nowait((stream, data))
    finally:
        loop.remove_reader(fd)


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    env = list(base)
    for e in extra:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    return env
