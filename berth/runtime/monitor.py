"""Run containers under conmon, the per-container monitor Podman and CRI-O use.

conmon owns the container's stdio: it writes the log file, serves the attach socket and
records the exit code in ``exits/<id>``. It is not a child of berthd, so containers keep
running, logging and reporting their exit while berthd is down or restarting.

Start path: conmon forks, runs ``<runtime> create`` and reports the container's pid on
the sync pipe; we then run ``<runtime> start``. Exit is noticed through a pidfd on the
conmon process, so berthd never polls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("berth.runtime")

# conmon's attach socket frames start with the pipe they came from.
ATTACH_STDOUT = 2
ATTACH_STDERR = 3
ATTACH_BUF = 8192 + 1


class RuntimeError_(Exception):
    pass


@dataclass
class Paths:
    bundle: str
    log: str

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


class Monitor:
    def __init__(self, exec_root: str, runtime: str) -> None:
        self.runtime_name = runtime
        path = shutil.which(runtime)
        if path is None:
            raise RuntimeError_(f"OCI runtime {runtime!r} not found in PATH")
        self.runtime = path
        conmon = shutil.which("conmon")
        if conmon is None:
            raise RuntimeError_("conmon not found in PATH (apt-get install conmon)")
        self.conmon = conmon
        self.exit_dir = os.path.join(exec_root, "exits")
        self.state_root = os.path.join(exec_root, "runtime-" + runtime)
        os.makedirs(self.exit_dir, exist_ok=True)
        os.makedirs(self.state_root, exist_ok=True)

    def runtime_cmd(self, *args: str) -> list[str]:
        return [self.runtime, f"--root={self.state_root}", *args]

    async def create(self, cid: str, name: str, paths: Paths, terminal: bool, stdin: bool,
                     log_size_max: int = -1) -> tuple[int, int]:
        """Launch conmon, which runs ``runtime create``; return (container pid, conmon pid)."""
        exit_file = os.path.join(self.exit_dir, cid)
        if os.path.exists(exit_file):
            os.unlink(exit_file)
        for stale in (paths.oom_file, paths.attach, paths.ctl, os.path.join(paths.bundle, "winsz"),
                      os.path.join(paths.bundle, "exit")):
            if os.path.lexists(stale):
                os.unlink(stale)
        args = [
            self.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", name, "-r", self.runtime,
            "--runtime-arg", f"--root={self.state_root}", "-b", paths.bundle, "-p", paths.pidfile,
            "-P", paths.conmon_pidfile, "-l", f"k8s-file:{paths.log}", "--exit-dir", self.exit_dir,
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
            raise RuntimeError_(_clean_runtime_error(detail))
        with open(paths.conmon_pidfile) as f:
            conmon_pid = int(f.read().strip())
        return pid, conmon_pid

    async def start(self, cid: str) -> None:
        await self._run("start", cid)

    async def pause(self, cid: str) -> None:
        await self._run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._run("resume", cid)

    async def delete(self, cid: str) -> None:
        try:
            await self._run("delete", "--force", cid)
        except RuntimeError_ as e:
            log.debug("runtime delete %s: %s", cid[:12], e)

    async def states(self) -> dict[str, str]:
        """Every container the runtime knows, id -> created / running / paused / stopped."""
        proc = await asyncio.create_subprocess_exec(*self.runtime_cmd("list", "--format=json"),
                                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError_(_clean_runtime_error(err.decode(errors="replace").strip()))
        try:
            items = json.loads(out or b"null") or []
        except ValueError as e:
            raise RuntimeError_(f"{self.runtime_name} list: {e}") from e
        return {str(x["id"]): str(x.get("status") or "") for x in items if isinstance(x, dict) and "id" in x}

    @staticmethod
    def live_conmon(paths: Paths, cid: str, recorded: int = 0) -> int:
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

    async def reap(self, cid: str, paths: Paths, recorded_conmon: int = 0) -> None:
        """Kill whatever a crash left of a container: its init (``delete --force``) and its conmon."""
        await self.delete(cid)
        pid = self.live_conmon(paths, cid, recorded_conmon)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(*self.runtime_cmd(*args), stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError_(_clean_runtime_error(err.decode(errors="replace").strip()))

    def exit_code(self, cid: str) -> int | None:
        try:
            with open(os.path.join(self.exit_dir, cid)) as f:
                return int(f.read().strip() or "-1")
        except (OSError, ValueError):
            return None

    def clear_exit(self, cid: str) -> None:
        try:
            os.unlink(os.path.join(self.exit_dir, cid))
        except FileNotFoundError:
            pass

    def watch(self, conmon_pid: int, on_exit: Callable[[], None]) -> bool:
        """Call ``on_exit`` once conmon (and so the container) has exited. False if already gone."""
        try:
            fd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            return False
        loop = asyncio.get_running_loop()

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            on_exit()

        loop.add_reader(fd, ready)
        return True

    @staticmethod
    def kill(pid: int, sig: int) -> None:
        os.kill(pid, sig)

    @staticmethod
    def resize(paths: Paths, height: int, width: int) -> None:
        """Tell conmon the terminal size through its control fifo (message type 1)."""
        try:
            fd = os.open(paths.ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def is_conmon(pid: int, cid: str) -> bool:
    """Whether ``pid`` is a live conmon for container ``cid`` (not a recycled pid, not a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z" and bool(argv) and os.path.basename(argv[0]) == b"conmon" and cid.encode() in argv


def _read_sync(fd: int) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def _clean_runtime_error(s: str) -> str:
    # crun/runc errors arrive as "time=... level=error msg=..." or plain text; keep the message.
    if "msg=" in s:
        s = s.split("msg=", 1)[1].strip().strip('"')
    return s.replace("\\n", " ").strip()


def attach_socket(paths: Paths) -> socket.socket:
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


SIGNALS = {name[3:]: int(getattr(signal, name)) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


def parse_signal(s: str | int | None, default: int = signal.SIGKILL) -> int:
    if s is None or s == "":
        return default
    if isinstance(s, int):
        return s
    t = s.upper().removeprefix("SIG")
    if t.isdigit():
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    raise ValueError(f"Invalid signal: {s}")
