"""Exec as Docker's clients read it: exec inspect's ProcessConfig, multiplexed frames for a
non-TTY exec and raw bytes for a TTY one (the first bytes intact), and 126/127 for a command
that cannot be run, through the Docker SDK and the docker CLI."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon

CMD = ["sh", "-c", "printf abcdefghij; printf XYZ >&2"]  # no newline: a TTY adds no \r


@pytest.fixture(scope="module", params=["crun", pytest.param("runc", marks=pytest.mark.skipif(
    not shutil.which("runc"), reason="no runc"))])
def sleeper(client: docker.DockerClient,
            request: pytest.FixtureRequest) -> Iterator[docker.models.containers.Container]:
    """A container under each runtime (runc's terminal exec is detached and reaped by berth)."""
    ct = client.containers.run("busybox", ["sleep", "600"], detach=True, runtime=request.param)
    yield ct
    ct.remove(force=True)


def _read_all(sock: object) -> bytes:
    raw = getattr(sock, "_sock", sock)
    data = b""
    while chunk := raw.recv(65536):  # type: ignore[attr-defined]
        data += chunk
    return data


def test_exec_inspect_process_config(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    eid = client.api.exec_create(sleeper.id, ["sh", "-c", "exit 2"], tty=True, user="65534", privileged=True,
                                 detach_keys="ctrl-a,x")["Id"]
    info = client.api.exec_inspect(eid)
    assert info["ProcessConfig"] == {"tty": True, "entrypoint": "sh", "arguments": ["-c", "exit 2"],
                                     "privileged": True, "user": "65534"}
    assert info["ID"] == eid and info["ContainerID"] == sleeper.id and info["Running"] is False
    assert info["ExitCode"] is None and info["CanRemove"] is False
    assert base64.b64decode(info["DetachKeys"]) == b"\x01x"  # Docker's []byte: base64 in JSON
    assert {k: info[k] for k in ("OpenStdin", "OpenStdout", "OpenStderr")} == \
        {"OpenStdin": False, "OpenStdout": True, "OpenStderr": True}
    client.api.exec_start(eid)
    assert client.api.exec_inspect(eid)["ExitCode"] == 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("demux", [False, True])
def test_sdk_exec_output_tty_and_multiplexed(sleeper, stream: bool, demux: bool) -> None:  # type: ignore[no-untyped-def]
    tty = sleeper.exec_run(CMD, tty=True, stream=stream, demux=demux)
    plain = sleeper.exec_run(CMD, tty=False, stream=stream, demux=demux)
    tty_out, plain_out = (list(tty.output), list(plain.output)) if stream else (tty.output, plain.output)
    if demux:  # a TTY has one stream; without one, stdout and stderr come apart
        got = [tty_out] if not stream else tty_out
        assert b"".join(o for o, _e in got) == b"abcdefghijXYZ"
        got = [plain_out] if not stream else plain_out
        assert b"".join(o or b"" for o, _e in got) == b"abcdefghij"
        assert b"".join(e or b"" for _o, e in got) == b"XYZ"
    else:
        assert (b"".join(tty_out) if stream else tty_out) == b"abcdefghijXYZ"
        assert sorted(plain_out) == [b"XYZ", b"abcdefghij"] if stream else plain_out == b"abcdefghijXYZ"


def test_sdk_exec_socket_frames(sleeper) -> None:  # type: ignore[no-untyped-def]
    """Over the upgraded connection: 8-byte headers (stream, size) without a TTY, raw bytes with one."""
    raw = _read_all(sleeper.exec_run(CMD, tty=False, socket=True).output)
    # stdout and stderr are separate pipes, read side by side: which frame comes first is not fixed
    assert raw in (b"\x01\0\0\0\0\0\0\x0aabcdefghij" + b"\x02\0\0\0\0\0\0\x03XYZ",
                   b"\x02\0\0\0\0\0\0\x03XYZ" + b"\x01\0\0\0\0\0\0\x0aabcdefghij")
    assert _read_all(sleeper.exec_run(CMD, tty=True, socket=True).output) == b"abcdefghijXYZ"


def test_cli_exec_tty_and_plain(daemon: Daemon, sleeper) -> None:  # type: ignore[no-untyped-def]
    assert daemon.cli("exec", "-t", sleeper.id, "echo", "hi").stdout == b"hi\r\n"
    r = daemon.cli("exec", sleeper.id, *CMD)
    assert (r.stdout, r.stderr) == (b"abcdefghij", b"XYZ")


CANNOT_RUN = [
    ("nosuch", 127, 'exec: "nosuch": executable file not found in $PATH: unknown'),
    ("/no/such", 127, 'exec: "/no/such": stat /no/such: no such file or directory: unknown'),
    ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied: unknown'),
]


@pytest.mark.parametrize(("cmd", "code", "words"), CANNOT_RUN)
def test_cli_exec_of_a_command_that_cannot_run(daemon: Daemon, sleeper, cmd: str, code: int,  # type: ignore[no-untyped-def]
                                               words: str) -> None:
    msg = f"OCI runtime exec failed: exec failed: unable to start container process: {words}\r\n".encode()
    r = daemon.cli("exec", sleeper.id, cmd, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (code, msg, b"")  # Docker writes it on stdout
    r = daemon.cli("exec", "-t", sleeper.id, cmd, check=False)
    assert (r.returncode, r.stdout) == (code, msg)  # nothing of the runtime's own message on the terminal


@pytest.mark.parametrize(("cmd", "code", "words"), CANNOT_RUN)
def test_sdk_exec_of_a_command_that_cannot_run(client: docker.DockerClient, sleeper, cmd: str, code: int,  # type: ignore[no-untyped-def]
                                               words: str) -> None:
    res = sleeper.exec_run([cmd], demux=True)
    assert res.exit_code == code
    assert res.output == (f"OCI runtime exec failed: exec failed: unable to start container process: {words}\r\n"
                          .encode(), None)
    eid = client.api.exec_create(sleeper.id, [cmd])["Id"]
    client.api.exec_start(eid, detach=True)
    for _ in range(100):
        info = client.api.exec_inspect(eid)
        if not info["Running"] and info["ExitCode"] is not None:
            break
        import time

        time.sleep(0.05)
    assert info["ExitCode"] == code and info["Pid"] == 0
    # a process that does run and exits 255 after writing to stderr is not a start failure
    res = sleeper.exec_run(["sh", "-c", "echo not found >&2; exit 255"], demux=True)
    assert (res.exit_code, res.output) == (255, (None, b"not found\n"))


def test_healthcheck_of_a_command_that_cannot_run(client: docker.DockerClient) -> None:
    """As Docker: the probe did not run, so the health log has exit code -1 and the error."""
    ct = client.containers.run("busybox", ["sleep", "120"], detach=True, healthcheck={
        "test": ["CMD", "nosuch"], "interval": 200_000_000, "retries": 1})
    try:
        import time

        deadline = time.monotonic() + 15
        health: dict = {}
        while time.monotonic() < deadline:
            health = client.api.inspect_container(ct.id)["State"].get("Health") or {}
            if health.get("Log"):
                break
            time.sleep(0.1)
        entry = health["Log"][0]
        assert entry["ExitCode"] == -1
        assert entry["Output"] == ("OCI runtime exec failed: exec failed: unable to start container process: "
                                   'exec: "nosuch": executable file not found in $PATH: unknown')
        assert health["Status"] == "unhealthy"
    finally:
        ct.remove(force=True)


def test_exec_console_size_is_checked(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    """A ConsoleSize that is not two non-negative integers is a 400 in Go's words, and the exec is
    left as it was: not started, still startable, then with the size it is given."""
    # (the wait: crun sizes an exec's terminal just after starting the process, see test_exec.py)
    eid = client.api.exec_create(sleeper.id, ["sh", "-c", "sleep 0.3; stty size"], tty=True)["Id"]
    for bad, words in (([-1, 5], "cannot unmarshal number -1 into Go struct field ExecStartCheck.ConsoleSize of "
                                 "type uint"),
                       ([1, "x"], "cannot unmarshal string into Go struct field ExecStartCheck.ConsoleSize of "
                                  "type uint")):
        r = client.api._post_json(client.api._url("/exec/{0}/start", eid),  # type: ignore[attr-defined]
                                  data={"Detach": True, "Tty": True, "ConsoleSize": bad})
        assert (r.status_code, r.json()["message"]) == (400, f"invalid JSON: json: {words}")
        info = client.api.exec_inspect(eid)
        assert (info["Running"], info["ExitCode"], info["Pid"]) == (False, None, 0)
    r = client.api._post_json(client.api._url("/containers/{0}/exec", sleeper.id),  # type: ignore[attr-defined]
                              data={"Cmd": ["true"], "Tty": True, "ConsoleSize": [-3, 1]})
    assert r.status_code == 400 and "ConsoleSize of type uint" in r.json()["message"]
    res = client.api._post_json(client.api._url("/exec/{0}/start", eid),  # type: ignore[attr-defined]
                                data={"Tty": True, "ConsoleSize": [9, 41]},
                                headers={"Connection": "Upgrade", "Upgrade": "tcp"}, stream=True)
    assert client.api._read_from_socket(res, stream=False, tty=True) == b"9 41\r\n"  # type: ignore[attr-defined]
    assert client.api.exec_inspect(eid)["ExitCode"] == 0
