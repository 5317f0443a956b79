"""Run containers under berth-monitor, Berth's own per-container monitor (a small C program).

The C source is ``monitor_c/berth-monitor.c``; its header documents the command line, the sync
messages, the log format and the attach protocol. scripts/setup.sh builds it at install time and
``binary()`` builds it on first use when missing (an editable install), into a cache directory
keyed by the source's hash, so a changed source is never run as a stale binary.

Start path (one runtime exec, no polling):
- ``create`` spawns the monitor. It detaches (double fork, setsid), prepares the stdio pipes or the
  pty's console socket, the attach socket and the control fifo, and answers ``ready <pid>`` on the
  sync pipe. No runtime state exists yet, so the API's create/start split costs nothing.
- Attach clients connect to the monitor's socket between ``create`` and ``start``, so they see all
  the output from the first byte.
- ``start`` writes one byte on the go pipe; the monitor execs ``<runtime> run --detach``, which
  creates and starts the container, and answers the container's pid (or the runtime's error).
- The monitor writes ``exits/<id>`` atomically when the container ends and exits; berthd notices
  through a pidfd on the monitor.

Exec sessions keep using ``<runtime> exec`` directly (berth/containers/execs.py), as with conmon.
The attach framing and the control fifo are conmon's, so ``attach_socket`` and ``resize`` serve both
monitors, and a berthd restarted with the other ``--monitor`` still adopts running containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from importlib import resources

from berth.runtime.conmon import ConmonRuntime, Paths, clean_runtime_error, is_conmon, is_live_monitor
from berth.runtime.interface import Bundle, Created, Live, RuntimeFailure

log = logging.getLogger("berth.runtime")

NAME = "berth-monitor"
VERSION = "berth-monitor 1"
CACHE_DIR = os.environ.get("BERTH_MONITOR_CACHE", "/var/cache/berth")


def source() -> bytes:
    return resources.files("berth.runtime").joinpath("monitor_c", "berth-monitor.c").read_bytes()


def binary_path(cache_dir: str = CACHE_DIR) -> str:
    digest = hashlib.sha256(source()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{NAME}-{digest}")


def build(cache_dir: str = CACHE_DIR) -> str:
    """Compile the monitor into ``cache_dir`` unless this source's binary is already there."""
    path = binary_path(cache_dir)
    if os.access(path, os.X_OK):
        return path
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeFailure("no C compiler (apt-get install gcc) to build berth-monitor")
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    src = os.path.join(cache_dir, f".{NAME}-{os.getpid()}.c")
    tmp = path + f".tmp-{os.getpid()}"
    try:
        with open(src, "wb") as f:
            f.write(source())
        r = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeFailure(f"building berth-monitor failed: {r.stderr.strip()[-500:]}")
        os.rename(tmp, path)
    finally:
        for p in (src, tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
    return path


def self_check(path: str) -> None:
    r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0 or r.stdout.strip() != VERSION:
        raise RuntimeFailure(f"{path} --version answered {r.stdout.strip()!r} (exit {r.returncode})")


def is_berth_monitor(pid: int, cid: str) -> bool:
    """Whether ``pid`` is a live berth-monitor for container ``cid`` (not a recycled pid, not a zombie)."""
    return is_live_monitor(pid, cid, lambda prog: prog.startswith(NAME.encode()))


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _read_line(fd: int) -> bytes:
    """One line from a pipe, read on the event loop (no thread hop)."""
    loop = asyncio.get_running_loop()
    buf = b""
    while b"\n" not in buf:
        fut: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, fut)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


async def _gone(pid: int, cid: str, timeout: float) -> None:
    """Wait (pidfd, no polling) for this container's monitor to exit; SIGKILL it past ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not is_berth_monitor(pid, cid):  # the pid was reused: not ours to wait for
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            log.warning("berth-monitor %d of %s did not exit when its start was abandoned", pid, cid[:12])
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


class BerthRuntime(ConmonRuntime):
    """A ``Runtime`` with berth-monitor holding each container (see the module doc). Everything
    after start (pause, exec, attach, resize, exit status, runtime state) is shared with conmon's."""

    spec_at_start = True  # the monitor runs the runtime (which reads the spec) only at ``start``

    def __init__(self, exec_root: str, runtime: str, others: Sequence[str] = (), binary: str = "") -> None:
        self._setup(exec_root, runtime, others)
        self.binary = binary or build()
        # created but not started: id -> (go pipe's write end, sync pipe's read end)
        self._pending: dict[str, tuple[int, int, int]] = {}  # id -> go pipe, sync pipe, monitor pid

    async def create(self, b: Bundle, *, terminal: bool, stdin: bool, log_size_max: int = -1,
                     log_max_file: int = 1) -> Created:
        """Launch the monitor, ready to run the container. ``Created.pid`` is 0: the container's
        pid is known once ``start`` has run it."""
        self._forget(b.id)
        paths = Paths(b.dir, b.log)
        for stale in (paths.oom_file, os.path.join(b.dir, "conmon.pid")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        oci_binary, oci_root = self._oci(b)
        # no log file (log driver "none"): the monitor writes to /dev/null, attach still gets everything
        args = [self.binary, "-r", oci_binary, "-R", oci_root, "-b", b.dir, "-c", b.id,
                "-l", b.log or os.devnull, "-x", self._exit_file(b.id), "-p", paths.pidfile]
        if log_size_max > 0:
            args += ["-S", str(log_size_max), "-F", str(max(1, log_max_file))]
        if terminal:
            args.append("-t")
        if stdin:
            args.append("-i")
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        try:
            args += ["-s", str(sync_w), "-g", str(go_r)]
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
            proc = subprocess.Popen(args, pass_fds=(sync_w, go_r), env=env, cwd=b.dir, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            for fd in (sync_r, sync_w, go_r, go_w):
                os.close(fd)
            raise RuntimeFailure(f"cannot start berth-monitor: {e}") from e
        os.close(sync_w)
        os.close(go_r)
        try:
            line = await _read_line(sync_r)
        except BaseException:
            os.close(sync_r)
            os.close(go_w)
            raise
        finally:
            proc.wait()  # the first process exits as soon as it has forked the monitor: no wait here
        text = line.decode(errors="replace")
        word, _, rest = text.partition(" ")
        if word != "ready" or not rest.isdigit():
            os.close(sync_r)
            os.close(go_w)
            raise RuntimeFailure(rest if word == "-1" else (text or "berth-monitor exited without a word"))
        self._pending[b.id] = (go_w, sync_r, int(rest))
        return Created(pid=0, monitor_pid=int(rest))

    async def start(self, b: Bundle) -> int:
        """Tell the monitor to run the container (``<runtime> run --detach``); return its pid."""
        entry = self._pending.pop(b.id, None)
        if entry is None:
            raise RuntimeFailure("the container's monitor is not waiting to start it")
        go_w, sync_r, _mpid = entry
        try:
            os.write(go_w, b"g")
            line = await _read_line(sync_r)
        finally:
            os.close(go_w)
            os.close(sync_r)
        text = line.decode(errors="replace")
        if text.isdigit() and int(text) > 0:
            return int(text)
        raise RuntimeFailure(clean_runtime_error(text.removeprefix("-1 ") or "berth-monitor exited"))

    def _forget(self, cid: str) -> int:
        """A monitor created but never started: closing its go pipe makes it remove its files from
        the bundle and exit. Returns its pid (0 if none was waiting)."""
        entry = self._pending.pop(cid, None)
        if entry is None:
            return 0
        go_w, sync_r, mpid = entry
        for fd in (go_w, sync_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        return mpid

    async def delete(self, b: Bundle) -> None:
        mpid = self._forget(b.id)
        if mpid:
            # it is still unlinking its sockets and fifo in the bundle: a removal of the bundle
            # that raced it failed on a vanished file and left the container stuck in removal
            await _gone(mpid, b.id, timeout=2.0)
        await super().delete(b)

    def live(self, b: Bundle, recorded_monitor: int = 0) -> Live | None:
        mpid = live_monitor(Paths(b.dir), b.id, recorded_monitor)
        if not mpid:
            return None
        try:
            with open(Paths(b.dir).pidfile) as f:
                pid = int(f.read().strip())
            started = os.path.getmtime(Paths(b.dir).pidfile)
        except (OSError, ValueError):
            pid, started = 0, 0.0
        return Live(pid=pid, monitor_pid=mpid, started=started)

    async def reap(self, b: Bundle, recorded_monitor: int = 0) -> None:
        self._forget(b.id)
        await self._delete_everywhere(b)
        pid = live_monitor(Paths(b.dir), b.id, recorded_monitor)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def live_monitor(paths: Paths, cid: str, recorded: int = 0) -> int:
    """The pid of this container's monitor if it still runs: berth-monitor, or a conmon left by a
    berthd that ran with ``--monitor conmon`` (the two share the attach and control protocols)."""
    candidates = [recorded] if recorded else []
    for name in ("monitor.pid", "conmon.pid"):
        try:
            with open(os.path.join(paths.bundle, name)) as f:
                candidates.insert(0, int(f.read().strip()))
        except (OSError, ValueError):
            pass
    for pid in candidates:
        if is_berth_monitor(pid, cid) or is_conmon(pid, cid):
            return pid
    return 0


def usable(log_warning: bool = True) -> str:
    """The path of a built, self-checked berth-monitor, or "" (with the reason logged)."""
    try:
        path = build()
        self_check(path)
        return path
    except (RuntimeFailure, OSError, subprocess.SubprocessError) as e:
        if log_warning:
            log.warning("berth-monitor is unavailable (%s); containers run under conmon", e)
        return ""
