"""``berth run -it`` / ``exec -it`` / ``attach`` driven through a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from tests.cli_helpers import BERTH, berth, berth_env, ok
from tests.conftest import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Term:
    """A berth process whose controlling terminal is a pty we hold the master side of."""

    def __init__(self, host: str, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.master, slave = pty.openpty()
        self.set_size(rows, cols, fd=slave)

        def ctty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([*BERTH, *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                     env=berth_env(host, TERM="xterm"), preexec_fn=ctty)
        os.close(slave)
        self.buf = b""

    def set_size(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, needle: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.buf[-500:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {needle!r}; got {self.buf[-500:]!r}")
                self.buf += data
        i = self.buf.index(needle) + len(needle)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    pass
        return self.proc.wait(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def term(daemon: Daemon):  # type: ignore[no-untyped-def]
    made: list[Term] = []

    def make(*args: str, **kw: int) -> Term:
        t = Term(daemon.host, *args, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def test_run_it_shell(daemon: Daemon, term) -> None:  # type: ignore[no-untyped-def]
    t = term("run", "-it", "--rm", "busybox", "sh", rows=30, cols=90)
    t.expect(b"# ")
    t.send(b"echo tty-$((2+3))\r")
    t.expect(b"tty-5")
    t.send(b"stty size\r")
    t.expect(b"30 90")
    t.set_size(40, 100)  # the kernel sends SIGWINCH to berth, which resizes the container's tty
    time.sleep(0.3)
    t.send(b"stty size\r")
    t.expect(b"40 100")
    t.send(b"tty\r")
    t.expect(b"/dev/pts/")
    t.send(b"exit 5\r")
    assert t.wait() == 5


def test_ctrl_d_ends_the_shell(daemon: Daemon, term) -> None:  # type: ignore[no-untyped-def]
    t = term("run", "-it", "--rm", "busybox", "sh")
    t.expect(b"# ")
    t.send(b"\x04")
    assert t.wait() == 0


def test_detach_keys_and_attach_back(daemon: Daemon, term) -> None:  # type: ignore[no-untyped-def]
    t = term("run", "-it", "--name", "cli-tty-detach", "busybox", "sh")
    try:
        t.expect(b"# ")
        t.send(b"\x10\x11")  # ctrl-p ctrl-q
        assert t.wait() == 0
        assert b"read escape sequence" in t.buf
        assert daemon.client().api.inspect_container("cli-tty-detach")["State"]["Running"]
        a = term("attach", "--detach-keys", "ctrl-x", "cli-tty-detach")
        time.sleep(0.5)
        a.send(b"echo back-$((40+2))\r")
        a.expect(b"back-42")
        a.send(b"\x18")  # the custom detach key
        assert a.wait() == 0
        assert daemon.client().api.inspect_container("cli-tty-detach")["State"]["Running"]
        a2 = term("attach", "cli-tty-detach")
        time.sleep(0.5)
        a2.send(b"exit 7\r")
        assert a2.wait() == 7
    finally:
        berth(daemon.host, "rm", "-f", "cli-tty-detach")


def test_exec_it(daemon: Daemon, term) -> None:  # type: ignore[no-untyped-def]
    ok(berth(daemon.host, "run", "-d", "--name", "cli-tty-exec", "busybox", "sleep", "300"))
    try:
        t = term("exec", "-it", "cli-tty-exec", "sh", rows=33, cols=77)
        t.expect(b"# ")
        t.send(b"stty size; echo x-$((6*7))\r")
        t.expect(b"33 77")
        t.expect(b"x-42")
        t.send(b"exit 3\r")
        assert t.wait() == 3
    finally:
        berth(daemon.host, "rm", "-f", "cli-tty-exec")


def test_not_a_tty_is_refused(daemon: Daemon) -> None:
    r = berth(daemon.host, "run", "-it", "--rm", "busybox", "true", input=b"")
    assert r.returncode == 1 and b"the input device is not a TTY" in r.stderr


def test_sig_proxy_forwards_ctrl_c(daemon: Daemon) -> None:
    """Non-TTY run: SIGINT to berth reaches the container's process, which reports it and exits."""
    p = subprocess.Popen([*BERTH, "run", "--rm", "--init", "busybox", "sh", "-c",
                          "trap 'echo got-int; exit 9' INT; echo ready; while true; do sleep 0.1; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=berth_env(daemon.host))
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        assert b"got-int" in out, err
        assert p.returncode == 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_run_and_exec_start_with_the_terminal_size(daemon: Daemon, term) -> None:  # type: ignore[no-untyped-def]
    """berth sends its terminal's size with create and exec (ConsoleSize), as docker's CLI does: a
    command that reads the size at once sees it, not the 0x0 of a terminal not yet resized."""
    t = term("run", "-it", "--rm", "busybox", "stty", "size", rows=45, cols=123)
    t.expect(b"45 123\r\n")
    assert t.wait() == 0
    # runc: it sizes an exec's terminal before the command runs (crun does it just after)
    ok(berth(daemon.host, "run", "-d", "--runtime", "runc", "--name", "cli-tty-size", "busybox", "sleep", "300"))
    try:
        t = term("exec", "-it", "cli-tty-size", "stty", "size", rows=31, cols=97)
        t.expect(b"31 97\r\n")
        assert t.wait() == 0
    finally:
        berth(daemon.host, "rm", "-f", "cli-tty-size")
