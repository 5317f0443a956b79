"""The conmon runtime: containers run by an OCI runtime (crun, runc) under conmon, the
per-container monitor Podman and CRI-O use.

conmon owns the container's stdio: it writes the log file, serves the attach socket and
records the exit code in ``exits/<id>``. It is not a child of berthd, so containers keep
running, logging and reporting their exit while berthd is down or restarting.

Start path: conmon forks, runs ``<runtime> create`` and reports the container's pid on
the sync pipe; we then run ``<runtime> start``. Exit is noticed through a pidfd on the
conmon process, so berthd never polls. Everything conmon-specific (its files in the bundle,
the attach socket's framing, the control fifo) stays in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.runtime import ociexec
from berth.runtime.interface import STDERR, STDOUT, Bundle, Created, Exit, Live, RuntimeFailure

log = logging.getLogger("berth.runtime")

# conmon's attach socket frames start with the pipe they came from.
ATTACH_STDOUT = 2
ATTACH_STDERR = 3
ATTACH_BUF = 8192 + 1


@dataclass
class Paths:
    """conmon's and the runtime's files in a container's bundle directory."""

    bundle: str
    log: str = ""

    @property
    def config(self) -> str:
        return os.path.join(self.bundle, "config.json")

    @property
    def attach(self) -> str:
        return os.path.join(self.bundle, "attach")

    @property
    def ctl(self) -> str:
        return os.path.join(self.bundle, "ctl")

    @property
    def conmon_pidfile(self) -> str:
        return os.path.join(self.bundle, "conmon.pid")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.bundle, "pidfile")

    @property
    def oom_file(self) -> str:
        return os.path.join(self.bundle, "oom")


class ConmonRuntime:
    """A ``Runtime`` (berth.runtime.interface) made of conmon and an OCI runtime."""

    spec_at_start = False  # conmon runs ``<runtime> create``, which reads the spec

    def __init__(self, exec_root: str, runtime: str, others: Sequence[str] = ()) -> None:
        conmon = shutil.which("conmon")
        if conmon is None:
            raise RuntimeFailure("conmon not found in PATH (apt-get install conmon)")
        self.conmon = conmon
        self._setup(exec_root, runtime, others)

    def _setup(self, exec_root: str, runtime: str, others: Sequence[str]) -> None:
        """The default OCI runtime (required) and the others a container may choose (when installed).
        Each keeps its state under its own root, so a container's later calls (kill, exec, update,
        delete) go to the runtime that created it: the bundle names it (``Bundle.oci``)."""
        self.name = runtime
        self.runtimes: dict[str, str] = {}
        for name in (runtime, *others):
            path = shutil.which(name)
            if path is None and name == runtime:
                raise RuntimeFailure(f"OCI runtime {runtime!r} not found in PATH")
            if path is not None:
                self.runtimes[name] = path
        self.runtime = self.runtimes[runtime]
        self.exec_root = exec_root
        self.exit_dir = os.path.join(exec_root, "exits")
        self.state_root = self._state_root(runtime)
        os.makedirs(self.exit_dir, exist_ok=True)
        for name in self.runtimes:
            os.makedirs(self._state_root(name), exist_ok=True)

    def _state_root(self, name: str) -> str:
        return os.path.join(self.exec_root, "runtime-" + name)

    def _oci(self, b: Bundle) -> tuple[str, str]:
        """The binary and state root of the container's OCI runtime."""
        name = b.oci if b.oci in self.runtimes else self.name
        return self.runtimes[name], self._state_root(name)

    def _cmd(self, b: Bundle, *args: str) -> list[str]:
        binary, root = self._oci(b)
        return [binary, f"--root={root}", *args]

    def _exit_file(self, cid: str) -> str:
        return os.path.join(self.exit_dir, cid)

    # -- lifecycle -----------------------------------------------------------------------------
    async def create(self, b: Bundle, *, terminal: bool, stdin: bool, log_size_max: int = -1,
                     log_max_file: int = 1) -> Created:
        """Launch conmon, which runs ``runtime create``. conmon keeps one log file (it starts the
        file afresh at ``log_size_max``), so ``log_max_file`` is not honoured here."""
        paths = Paths(b.dir, b.log)
        binary, root = self._oci(b)
        self.clear_exit(b)
        for stale in (paths.oom_file, paths.attach, paths.ctl, os.path.join(paths.bundle, "winsz"),
                      os.path.join(paths.bundle, "exit")):
            if os.path.lexists(stale):
                os.unlink(stale)
        args = [
            self.conmon, "--api-version", "1", "-c", b.id, "-u", b.id, "-n", b.name or b.id, "-r", binary,
            "--runtime-arg", f"--root={root}", "-b", paths.bundle, "-p", paths.pidfile,
            "-P", paths.conmon_pidfile, "-l", f"k8s-file:{paths.log}" if paths.log else "none:", "--exit-dir",
            self.exit_dir,
            "--full-attach", "--socket-dir-path", paths.bundle, "--persist-dir", paths.bundle,
            "--log-level", "error",
        ]
        if log_size_max > 0:
            args += ["--log-size-max", str(log_size_max)]
        if terminal:
            args.append("-t")
        if stdin:
            args.append("-i")
        r, w = os.pipe()
        try:
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "_OCI_SYNCPIPE": str(w)}
            # cwd: conmon drops files (an "oom" marker) in its working directory
            proc = subprocess.Popen(args, pass_fds=(w,), env=env, cwd=paths.bundle, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            os.close(w)
            w = -1
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, _read_sync, r)
            # conmon's first process exits as soon as it has forked the monitor.
            await loop.run_in_executor(None, proc.wait)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        try:
            msg = json.loads(data)
            pid = int(msg["data"])
        except (ValueError, KeyError, TypeError):
            pid, msg = -1, {"message": data.decode(errors="replace")}
        if pid <= 0:
            detail = msg.get("message") or "runtime create failed"
            raise RuntimeFailure(clean_runtime_error(detail))
        with open(paths.conmon_pidfile) as f:
            conmon_pid = int(f.read().strip())
        return Created(pid=pid, monitor_pid=conmon_pid)

    async def start(self, b: Bundle) -> int | None:
        await self._run(b, "start", b.id)
        return None  # create reported the pid

    @staticmethod
    def kill(pid: int, sig: int) -> None:
        os.kill(pid, sig)

    async def pause(self, b: Bundle) -> None:
        await self._run(b, "pause", b.id)

    async def resume(self, b: Bundle) -> None:
        await self._run(b, "resume", b.id)

    async def delete(self, b: Bundle) -> None:
        try:
            await self._run(b, "delete", "--force", b.id)
        except RuntimeFailure as e:
            log.debug("runtime delete %s: %s", b.id[:12], e)

    async def update(self, b: Bundle, resources: dict[str, Any]) -> None:
        """``<runtime> update --resources FILE``: crun and runc both read an OCI resources object."""
        path = os.path.join(b.dir, "update-resources.json")
        with open(path, "w") as f:
            json.dump(resources, f)
        try:
            await self._run(b, "update", "--resources", path, b.id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _run(self, b: Bundle, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(*self._cmd(b, *args), stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeFailure(clean_runtime_error(err.decode(errors="replace").strip()))

    # -- stdio -----------------------------------------------------------------------------------
    def attach(self, b: Bundle) -> ConmonAttachment:
        return ConmonAttachment(_attach_socket(Paths(b.dir)))

    def resize(self, b: Bundle, height: int, width: int) -> None:
        """Tell conmon the terminal size through its control fifo (message type 1)."""
        try:
            fd = os.open(Paths(b.dir).ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    async def exec(self, b: Bundle, exec_id: str, process: dict[str, Any], *, stdin: bool,
                   attach: bool) -> ociexec.OciExec:
        return await ociexec.run(self._cmd(b), b.dir, b.id, exec_id, process, stdin=stdin, attach=attach)

    # -- exit ----------------------------------------------------------------------------------------
    def watch(self, b: Bundle, monitor_pid: int, on_exit: Callable[[], None]) -> bool:
        """Call ``on_exit`` once conmon (and so the container) has exited. False if already gone."""
        try:
            fd = os.pidfd_open(monitor_pid)
        except ProcessLookupError:
            return False
        loop = asyncio.get_running_loop()

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            on_exit()

        loop.add_reader(fd, ready)
        return True

    def exit_status(self, b: Bundle) -> Exit:
        path = self._exit_file(b.id)
        code: int | None
        try:
            with open(path) as f:
                code = int(f.read().strip() or "-1")
            at: float | None = os.path.getmtime(path)
        except (OSError, ValueError):
            code, at = None, None
        return Exit(code=code, at=at, oom_killed=os.path.exists(Paths(b.dir).oom_file))

    def clear_exit(self, b: Bundle) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._exit_file(b.id))

    # -- restore -----------------------------------------------------------------------------------
    async def states(self) -> dict[str, str]:
        """Every container the runtimes know, id -> created / running / paused / stopped."""
        found: dict[str, str] = {}
        for name in self.runtimes:
            argv = self._cmd(Bundle(id="", dir="", oci=name), "list", "--format=json")
            proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeFailure(clean_runtime_error(err.decode(errors="replace").strip()))
            try:
                items = json.loads(out or b"null") or []
            except ValueError as e:
                raise RuntimeFailure(f"{name} list: {e}") from e
            found.update({str(x["id"]): str(x.get("status") or "") for x in items
                          if isinstance(x, dict) and "id" in x})
        return found

    async def _delete_everywhere(self, b: Bundle) -> None:
        """A crash's leftovers: the record that named the runtime may be gone, so ask each one."""
        for name in self.runtimes:
            await self.delete(Bundle(id=b.id, dir=b.dir, oci=name))

    def live(self, b: Bundle, recorded_monitor: int = 0) -> Live | None:
        paths = Paths(b.dir)
        conmon = _live_conmon(paths, b.id, recorded_monitor)
        if not conmon:
            return None
        try:
            with open(paths.pidfile) as f:
                pid = int(f.read().strip())
            started = os.path.getmtime(paths.pidfile)
        except (OSError, ValueError):
            pid, started = 0, 0.0
        return Live(pid=pid, monitor_pid=conmon, started=started)

    async def reap(self, b: Bundle, recorded_monitor: int = 0) -> None:
        """Kill whatever a crash left of a container: its init (``delete --force``) and its conmon."""
        await self._delete_everywhere(b)
        pid = _live_conmon(Paths(b.dir), b.id, recorded_monitor)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class ConmonAttachment:
    """conmon's attach socket as an ``Attachment``: each packet is one byte naming the pipe, then data."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pkt = await loop.sock_recv(self.sock, ATTACH_BUF)
            except OSError:
                return
            if not pkt:
                return
            if len(pkt) > 1:
                yield (STDERR if pkt[0] == ATTACH_STDERR else STDOUT), pkt[1:]

    async def write_stdin(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def _live_conmon(paths: Paths, cid: str, recorded: int = 0) -> int:
    """The pid of this container's conmon if it still runs (its pidfile's, else ``recorded``), or 0."""
    candidates = [recorded] if recorded else []
    try:
        with open(paths.conmon_pidfile) as f:
            candidates.insert(0, int(f.read().strip()))
    except (OSError, ValueError):
        pass
    for pid in candidates:
        if is_conmon(pid, cid):
            return pid
    return 0


def is_conmon(pid: int, cid: str) -> bool:
    """Whether ``pid`` is a live conmon for container ``cid`` (not a recycled pid, not a zombie)."""
    return is_live_monitor(pid, cid, lambda prog: prog == b"conmon")


def is_live_monitor(pid: int, cid: str, is_prog: Callable[[bytes], bool]) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose program name passes ``is_prog`` and whose
    arguments name container ``cid``: a monitor, not a recycled pid."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z" and bool(argv) and is_prog(os.path.basename(argv[0])) and cid.encode() in argv


def _read_sync(fd: int) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def clean_runtime_error(s: str) -> str:
    # crun/runc errors arrive as "time=... level=error msg=..." or plain text; keep the message.
    if "msg=" in s:
        s = s.split("msg=", 1)[1].strip().strip('"')
    return s.replace("\\n", " ").strip()


def _attach_socket(paths: Paths) -> socket.socket:
    """Connect to conmon's attach socket. Its path can exceed the 107-byte sun_path limit
    (exec root + 64-hex id), so connect through /proc/self/fd of the bundle directory."""
    dfd = os.open(paths.bundle, os.O_PATH | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(f"/proc/self/fd/{dfd}/attach")
    except BaseException:
        s.close()
        raise
    finally:
        os.close(dfd)
    s.setblocking(False)
    return s
