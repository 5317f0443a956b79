"""``<runtime> exec``: an extra process in a running container, as a child of berthd.

Its stdio are pipes we read, or, with a terminal, a pseudo-terminal whose master end the
runtime hands over on a console socket. The runtime process lives as long as the exec'd
process and exits with its status. runc hands a terminal over only when it detaches (and then
exits at once), so a terminal exec under runc runs through berth/runtime/execreaper.py, which
stands in for it: it stays the process's parent and exits with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import struct
import sys
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from berth.runtime.interface import STDERR, STDOUT, RuntimeFailure
from berth.runtime.streams import CHUNK, OutputQueue

EXEC_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "execreaper.py")
PID_WAIT = 10.0  # seconds the runtime is given to write the exec'd process's pid
TTY_DRAIN = 2.0  # seconds a terminal's buffered output is read after the process ended


class OciExec:
    """An ``ExecProcess`` run by ``<runtime> exec`` (berth.runtime.interface)."""

    def __init__(self, proc: asyncio.subprocess.Process, tty: bool, files: tuple[str, ...]) -> None:
        self.proc = proc
        self.tty = tty
        self.pid = 0
        self.master_fd = -1
        self.queue = OutputQueue()
        self._files = files
        self._stdin: asyncio.StreamWriter | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._finished: asyncio.Task[int] | None = None
        self._pid_task: asyncio.Task[None] | None = None
        self._log = ""  # the runtime's own error log (JSON lines)
        self.start_error = ""  # the runtime's message when the process could not be started

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        return self.queue.items()

    def discard_output(self) -> None:
        self.queue.discard()

    async def write_stdin(self, data: bytes) -> None:
        if self.tty and self.master_fd >= 0:
            view = memoryview(data)
            while view and self.master_fd >= 0:
                try:
                    view = view[os.write(self.master_fd, view):]
                except BlockingIOError:  # the terminal's input buffer is full: let it drain
                    await asyncio.sleep(0.01)
        elif self._stdin is not None:
            self._stdin.write(data)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await self._stdin.drain()

    def close_stdin(self) -> None:
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None

    def resize(self, height: int, width: int) -> None:
        if self.master_fd >= 0:
            fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def kill(self, sig: int) -> None:
        target = self.pid or (self.proc.pid if self.proc.returncode is None else 0)
        if target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)

    async def wait(self) -> int:
        assert self._finished is not None
        return await asyncio.shield(self._finished)

    async def _learn_pid(self, path: str) -> None:
        self.pid = await _read_pid(path, self.proc)
        if not self.pid and self.proc.returncode is not None and self.proc.returncode != 0:
            # no pid file and a failed runtime: the process never ran; the runtime says why
            self.start_error = _runtime_error(self._log)

    async def _started(self) -> bool:
        """Whether the process was started (waits until that is known). Until then stderr is held:
        a runtime that fails writes its message there too, where the process's output would go."""
        if self._pid_task is not None:
            await asyncio.shield(self._pid_task)
        return not self.start_error

    async def _finish(self) -> int:
        try:
            code = await self.proc.wait()
            if self._pid_task is not None:
                await self._pid_task  # one last look at the pid file, now that the runtime is done
            if self.tty and self._readers:
                # the terminal's output may still be buffered: read it until EIO, then stop the
                # reader (it unregisters the fd) before the fd is closed
                await asyncio.wait(self._readers, timeout=TTY_DRAIN)
                for r in self._readers:
                    r.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            return code if code >= 0 else 128 - code
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.master_fd >= 0:
            os.close(self.master_fd)
            self.master_fd = -1
        for p in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        self.queue.close()


async def run(runtime_cmd: list[str], bundle_dir: str, cid: str, exec_id: str, process: dict[str, Any], *,
              stdin: bool, attach: bool) -> OciExec:
    """Start ``process`` in container ``cid``; return once the runtime runs (``pid`` follows)."""
    tty = bool(process.get("terminal"))
    spec_path = os.path.join(bundle_dir, f"exec-{exec_id[:16]}.json")
    pid_file = spec_path[:-5] + ".pid"
    log_file = spec_path[:-5] + ".log"
    with open(spec_path, "w") as f:
        json.dump(process, f)
    # runc takes a console socket only with --detach, and then cannot report the exit status
    reaped = tty and os.path.basename(runtime_cmd[0]) == "runc"
    argv = [*runtime_cmd, f"--log={log_file}", "--log-format=json", "exec", *(["--detach"] if reaped else []),
            "--process", spec_path, "--pid-file", pid_file]
    if reaped:
        argv = [sys.executable, "-I", "-S", EXEC_REAPER, pid_file, *argv]
    listener = None
    sock_path = ""
    dir_fd = -1
    ex: OciExec | None = None
    proc: asyncio.subprocess.Process | None = None
    try:
        if tty:
            sock_path = os.path.join(bundle_dir, f"e{exec_id[:12]}.sock")
            addr = sock_path
            if len(sock_path.encode()) > 100:
                # AF_UNIX paths stop at 107 bytes: go through a directory fd that the runtime inherits
                dir_fd = os.open(bundle_dir, os.O_PATH | os.O_DIRECTORY)
                addr = f"/proc/self/fd/{dir_fd}/{os.path.basename(sock_path)}"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(addr)
            listener.listen(1)
            listener.setblocking(False)
            argv += ["--tty", "--console-socket", addr]
        argv.append(cid)
        piped = not tty and attach
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=pipe if piped and stdin else null, stdout=pipe if piped else null,
            stderr=pipe if piped else null, pass_fds=(dir_fd,) if dir_fd >= 0 else ())
        ex = OciExec(proc, tty, (spec_path, pid_file, log_file))
        ex._log = log_file
        ex._pid_task = asyncio.create_task(ex._learn_pid(pid_file))
        if listener is not None:
            try:
                conn = await asyncio.wait_for(_accept(listener, proc), 30)
            except TimeoutError as e:
                raise RuntimeFailure("exec: the runtime did not hand over a terminal in time") from e
            if conn is not None:
                with conn:
                    _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                if not fds:
                    raise RuntimeFailure("exec: the runtime did not hand over a terminal")
                ex.master_fd = fds[0]
                ex._readers.append(asyncio.create_task(_pump_fd(ex.master_fd, ex.queue, not attach,
                                                                   ex._started)))
        elif piped:
            assert proc.stdout is not None and proc.stderr is not None
            ex._stdin = proc.stdin
            ex._readers.append(asyncio.create_task(_pump_stream(proc.stdout, STDOUT, ex.queue)))
            ex._readers.append(asyncio.create_task(_pump_stream(proc.stderr, STDERR, ex.queue, ex._started)))
    except BaseException:
        # failed half-way: end the process, and leave no files or readers behind
        if ex is not None:
            for r in ex._readers:
                r.cancel()
            if ex._pid_task is not None:
                ex._pid_task.cancel()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if ex is not None:
            await asyncio.gather(*ex._readers, *([ex._pid_task] if ex._pid_task else []), return_exceptions=True)
            ex._cleanup()
        else:
            for p in (spec_path, pid_file, log_file):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
        raise
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
        if listener is not None:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock_path)
    ex._finished = asyncio.create_task(ex._finish())
    return ex


async def _read_pid(path: str, proc: asyncio.subprocess.Process) -> int:
    """The runtime writes the pid file once the process exists, some time after it was spawned:
    wait for it, until the runtime has exited (one last look then)."""
    deadline = time.monotonic() + PID_WAIT
    delay = 0.001
    while True:
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        if proc.returncode is not None or time.monotonic() > deadline:
            return 0
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _runtime_error(path: str) -> str:
    """The last error the runtime logged (crun and runc write JSON lines with ``--log-format=json``)."""
    msg = ""
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            lines = f.read(1 << 16).splitlines()
        for line in lines:
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal") and isinstance(entry.get("msg"), str):
                    msg = entry["msg"]
    return msg or "the runtime failed to start the process"


async def _accept(listener: socket.socket, proc: asyncio.subprocess.Process) -> socket.socket | None:
    loop = asyncio.get_running_loop()
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


async def _pump_stream(reader: asyncio.StreamReader, stream: int, queue: OutputQueue,
                       started: Callable[[], Awaitable[bool]] | None = None) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        if started is not None:
            if not await started():
                continue  # the runtime's own message, reported as the exec's error instead
            started = None
        await queue.put(stream, data)  # pauses while the consumer is behind: the pipe fills, the process waits


async def _pump_fd(fd: int, queue: OutputQueue, discard: bool, started: Callable[[], Awaitable[bool]]) -> None:
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
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            except OSError:  # EIO once the last slave closes
                return
            if not data:
                return
            if not discard:
                loop.remove_reader(fd)  # no wake-ups while the consumer is behind
                try:
                    if not await started():
                        continue  # the runtime's message on the terminal: reported as the exec's error
                    await queue.put(STDOUT, data)
                finally:
                    loop.add_reader(fd, readable.set)
    finally:
        loop.remove_reader(fd)
