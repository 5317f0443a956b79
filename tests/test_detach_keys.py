"""Detach keys: ctrl-p,ctrl-q (or ``detachKeys``) ends an attach to a TTY and leaves the container
or exec'd process running; the docker CLI in a real pseudo-terminal and the SDK's raw socket."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import time
from collections.abc import Iterator

import docker
import pytest

from berth import detachkeys
from tests.conftest import DOCKER_CLI, Daemon


def test_parse_docker_syntax() -> None:
    assert detachkeys.parse("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detachkeys.parse("CTRL-A,x,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == b"\x01x\x00\x1b\x1c\x1d\x1e\x1f"
    for bad in ("ctrl-1", "ab", "ctrl-", ",", "ctrl-p,", "é"):
        with pytest.raises(ValueError, match="Unknown character"):
            detachkeys.parse(bad)


def test_escape_across_chunks() -> None:
    esc = detachkeys.Escape(b"")  # the default
    assert esc.feed(b"ab\x10") == (b"ab", False)  # held: it may start the sequence
    assert esc.feed(b"c") == (b"\x10c", False)  # it did not: nothing typed is lost
    assert esc.feed(b"\x10") == (b"", False)
    assert esc.feed(b"\x11rest") == (b"", True)
    assert detachkeys.Escape(b"\x01x").feed(b"12\x01\x01x") == (b"12\x01", True)


@pytest.fixture
def tty_shell(client: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    ct = client.containers.run("busybox", ["sh"], tty=True, stdin_open=True, detach=True)
    yield ct
    ct.remove(force=True)


def _raw(sock: object) -> socket.socket:
    return getattr(sock, "_sock", sock)  # type: ignore[return-value]


def _read_until_closed(raw: socket.socket, timeout: float = 10) -> bytes:
    raw.settimeout(timeout)
    data = b""
    while chunk := raw.recv(65536):  # socket.timeout (a failure) if the connection stays open
        data += chunk
    return data


def _read_until(raw: socket.socket, want: bytes, timeout: float = 10) -> bytes:
    raw.settimeout(timeout)
    data = b""
    while want not in data:
        chunk = raw.recv(65536)
        assert chunk, f"connection closed before {want!r}: {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize(("params", "keys"), [({}, b"\x10\x11"), ({"detachKeys": "ctrl-a,x"}, b"\x01x")])
def test_sdk_attach_detaches(client: docker.DockerClient, tty_shell, params: dict[str, str], keys: bytes) -> None:  # type: ignore[no-untyped-def]
    sock = client.api.attach_socket(tty_shell.id, params={"stdin": 1, "stdout": 1, "stream": 1, **params})
    raw = _raw(sock)
    try:
        raw.sendall(b"echo typed-$((40+2))\n")
        _read_until(raw, b"typed-42")
        raw.sendall(keys)
        _read_until_closed(raw)  # the daemon ends the connection
    finally:
        sock.close()
    tty_shell.reload()
    assert tty_shell.status == "running"
    assert tty_shell.exec_run(["echo", "still"]).output == b"still\n"


def test_sdk_attach_without_tty_passes_the_keys_on(client: docker.DockerClient) -> None:
    """As Docker: detach keys apply to a TTY only; without one they are the program's input."""
    ct = client.containers.run("busybox", ["od", "-An", "-tx1"], stdin_open=True, detach=True)
    try:
        sock = client.api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = _raw(sock)
        raw.sendall(b"\x10\x11")
        raw.shutdown(socket.SHUT_WR)
        out = _read_until_closed(raw)
        sock.close()
        assert out[8:] == b" 10 11\n"  # one stdout frame
    finally:
        ct.remove(force=True)


def test_sdk_exec_detaches_and_the_process_runs_on(client: docker.DockerClient, tty_shell) -> None:  # type: ignore[no-untyped-def]
    for body_keys, keys in ((None, b"\x10\x11"), ("ctrl-a,x", b"\x01x")):
        eid = client.api.exec_create(tty_shell.id, ["sh"], stdin=True, tty=True, detach_keys=body_keys)["Id"]
        sock = client.api.exec_start(eid, tty=True, socket=True)
        raw = _raw(sock)
        try:
            raw.sendall(b"echo in-exec-$((1+1))\n")
            _read_until(raw, b"in-exec-2")
            raw.sendall(keys)
            _read_until_closed(raw)
        finally:
            sock.close()
        info = client.api.exec_inspect(eid)
        assert info["Running"] and info["ExitCode"] is None
        with open(f"/proc/{info['Pid']}/cmdline", "rb") as f:
            assert f.read() == b"sh\0"


def test_bad_detach_keys_are_refused(client: docker.DockerClient, tty_shell, daemon: Daemon) -> None:  # type: ignore[no-untyped-def]
    resp = client.api._post(client.api._url("/containers/{0}/attach", tty_shell.id),
                            params={"stream": 1, "stdout": 1, "detachKeys": "ctrl-1"})
    assert resp.status_code == 400 and resp.json() == {"message": "Invalid detach keys (ctrl-1) provided"}
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_create(tty_shell.id, ["true"], detach_keys="ctrl-p,")
    assert e.value.status_code == 400 and e.value.explanation == "Invalid escape keys (ctrl-p,) provided"
    r = daemon.cli("exec", "--detach-keys", "ctrl-1", tty_shell.id, "true", check=False)
    assert r.returncode == 1 and b"Error response from daemon: Invalid escape keys (ctrl-1) provided" in r.stderr
    r = daemon.cli("attach", "--no-stdin", "--detach-keys", "ctrl-1", tty_shell.id, check=False, timeout=20)
    assert r.returncode == 1 and b"received 400" in r.stderr  # the CLI's words for a refused upgrade
    tty_shell.reload()
    assert tty_shell.status == "running"


class Terminal:
    """The docker CLI on a real pseudo-terminal, as a user at a keyboard drives it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the CLI
            os.execve(argv[0], argv, env)
        self.out = b""
        self.code: int | None = None

    def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the CLI closed the terminal
                    return
                if not data:
                    return
                self.out += data

    def expect(self, want: bytes, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while want not in self.out and time.monotonic() < end:
            self.read(0.1)
        assert want in self.out, self.out

    def type(self, keys: bytes) -> None:
        for k in keys:  # one key at a time, as typed
            os.write(self.fd, bytes([k]))
            time.sleep(0.05)

    def wait(self, timeout: float = 15) -> int | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
        return None

    def close(self) -> None:
        if self.code is None:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.mark.skipif(DOCKER_CLI is None, reason="needs the docker CLI")
@pytest.mark.parametrize("how", ["default", "flag", "config"])
def test_cli_attach_and_exec_detach(daemon: Daemon, tty_shell, tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    assert DOCKER_CLI is not None
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(config), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    flag: list[str] = []
    keys = b"\x01x"
    if how == "config":
        (config / "config.json").write_text(json.dumps({"detachKeys": "ctrl-a,x"}))
    elif how == "flag":
        flag = ["--detach-keys", "ctrl-a,x"]
    else:
        keys = b"\x10\x11"
    for argv in ([DOCKER_CLI, "attach", *flag, tty_shell.id], [DOCKER_CLI, "exec", "-it", *flag, tty_shell.id, "sh"]):
        t = Terminal(argv, env)
        try:
            t.read(0.5)
            t.type(b"echo typed-$((40+2))\r")
            t.expect(b"typed-42")
            t.type(keys)
            assert t.wait() is not None, f"{argv[1]} did not detach: {t.out!r}"
            assert b"read escape sequence" in t.out  # the CLI's words on detaching
        finally:
            t.close()
        tty_shell.reload()
        assert tty_shell.status == "running"
    # the exec'd shell runs on, detached
    ps = tty_shell.exec_run(["ps", "-o", "pid,args"]).output.decode().splitlines()
    assert sum(1 for line in ps if line.split()[1:] == ["sh"]) == 2, ps
