"""Hijacked streams between the terminal and a container or exec: raw mode, window size and
SIGWINCH, detach keys, stdin half-close, and signal proxying for non-TTY runs."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from berth.cli import completion as complete

DEFAULT_DETACH = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's syntax: comma-separated ``ctrl-<x>`` or single characters (``ctrl-p,ctrl-q``)."""
    spec = spec or os.environ.get("BERTH_DETACH_KEYS") or DEFAULT_DETACH
    out = bytearray()
    for part in spec.split(","):
        p = part.strip()
        if p.lower().startswith("ctrl-") and len(p) == 6:
            c = p[5].lower()
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            if code is None:
                if not "a" <= c <= "z":
                    raise click.BadParameter(f"invalid detach keys ({spec})", param_hint="'--detach-keys'")
                code = ord(c) - ord("a") + 1
            out.append(code)
        elif len(p) == 1:
            out.append(ord(p))
        else:
            raise click.BadParameter(f"invalid detach keys ({spec})", param_hint="'--detach-keys'")
    return bytes(out)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def terminal_size() -> tuple[int, int] | None:
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        try:
            sz = os.get_terminal_size(stream.fileno())
            return sz.lines, sz.columns
        except (OSError, ValueError):
            continue
    return None


def resize_loop(resize: Callable[[int, int], None]) -> Callable[[], None]:
    """Send the window size now and on every SIGWINCH; returns the function that stops it."""
    def send(*_: Any) -> None:
        sz = terminal_size()
        if sz:
            try:
                resize(*sz)
            except Exception:  # the container may already be gone; resizing is best effort
                pass

    send()
    old = signal.signal(signal.SIGWINCH, send)

    def stop() -> None:
        signal.signal(signal.SIGWINCH, old)

    return stop


class Demux:
    """Incremental splitter for the multiplexed (non-TTY) stream."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self.buf += data
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                return
            yield self.buf[0], self.buf[8:8 + size]
            self.buf = self.buf[8 + size:]


def pump(sock: socket.socket, leftover: bytes, tty: bool, send_stdin: bool, detach_keys: bytes,
         stdout_on: bool = True, stderr_on: bool = True) -> bool:
    """Copy stdin to the container and its output to ours until the stream ends.
    Returns True when the user detached with the detach keys."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    dm = Demux()

    def deliver(data: bytes) -> None:
        if tty:
            out.write(data)
            out.flush()
            return
        for stream, payload in dm.feed(data):
            w = err if stream == 2 else out
            if (w is out and stdout_on) or (w is err and stderr_on):
                w.write(payload)
                w.flush()

    if leftover:
        deliver(leftover)
    stdin_fd = sys.stdin.fileno() if send_stdin else -1
    matched = 0
    pending = b""
    while True:
        fds = [sock] + ([stdin_fd] if stdin_fd >= 0 else [])
        try:
            ready, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if sock in ready:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return False
            deliver(data)
        if stdin_fd >= 0 and stdin_fd in ready:
            data = os.read(stdin_fd, 65536)
            if not data:
                stdin_fd = -1
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)  # the container's stdin sees EOF
                continue
            # detach keys: hold back a possible prefix; forward it if the sequence breaks
            send = bytearray()
            for b in data:
                if detach_keys and b == detach_keys[matched]:
                    matched += 1
                    pending += bytes([b])
                    if matched == len(detach_keys):
                        return True
                else:
                    send += pending
                    pending = b""
                    matched = 0
                    if detach_keys and b == detach_keys[0]:
                        matched, pending = 1, bytes([b])
                        if len(detach_keys) == 1:
                            return True
                    else:
                        send.append(b)
            if send:
                sock.sendall(bytes(send))


@contextlib.contextmanager
def signal_proxy(enabled: bool, kill: Callable[[str], None]) -> Iterator[None]:
    """--sig-proxy: signals the CLI receives go to the container (as docker run/attach do)."""
    if not enabled:
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2]
    old = {}

    def forward(signum: int, _frame: Any) -> None:
        try:
            kill(signal.Signals(signum).name)
        except Exception:  # the container may have exited meanwhile
            pass

    for s in sigs:
        old[s] = signal.signal(s, forward)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@click.command()
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching a container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              help="Proxy all received signals to the process (default true)")
@click.argument("container", shell_complete=complete.containers)
def attach(detach_keys: str | None, no_stdin: bool, sig_proxy: bool, container: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from berth.cli.client import q
    from berth.cli.common import api
    from berth.cli.errors import CLIError

    c = api()
    info = c.get(f"/containers/{q(container)}/json")
    if not (info.get("State") or {}).get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first", 1)
    if (info.get("State") or {}).get("Paused"):
        raise CLIError("You cannot attach to a paused container, unpause it first", 1)
    cfg = info.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    stdin = bool(cfg.get("OpenStdin")) and not no_stdin
    keys = parse_detach_keys(detach_keys)
    cid = info["Id"]
    sock, left = c.hijack("POST", f"/containers/{cid}/attach",
                          {"stream": 1, "stdin": stdin, "stdout": 1, "stderr": 1,
                           "detachKeys": detach_keys})
    stop_resize = resize_loop(lambda h, w: c.post(f"/containers/{cid}/resize", {"h": h, "w": w})) \
        if tty and sys.stdout.isatty() else None
    try:
        with raw_terminal(tty and stdin), \
                signal_proxy(sig_proxy and not tty, lambda s: c.post(f"/containers/{cid}/kill", {"signal": s})):
            detached = pump(sock, left, tty, stdin, keys)
    finally:
        sock.close()
        if stop_resize:
            stop_resize()
    if detached:
        sys.stderr.write("read escape sequence\n" if not tty else "\r\nread escape sequence\r\n")
        return
    r = c.get(f"/containers/{cid}/json")
    code = (r.get("State") or {}).get("ExitCode", 0)
    if code:
        raise CLIError("", code)
