"""``GET /containers/{id}/attach/ws`` with aiohttp's WebSocket client over berthd's unix socket:
raw (never multiplexed) binary messages, stdin from the client's messages, ``logs``/``stream``,
the stream choice of API 1.42+, detach keys, and Docker's errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import docker
import pytest

from tests.conftest import Daemon

Messages = list[tuple[str, bytes]]


async def _ws_session(daemon: Daemon, path: str, send: list[bytes], until: bytes | None = None,
                      then: list[bytes] | None = None, timeout: float = 15) -> tuple[Messages, int | None]:
    """Connect, send each message of ``send``, and those of ``then`` once ``until`` was received;
    collect what arrives until the server closes; (messages, close code)."""
    conn = aiohttp.UnixConnector(path=daemon.sock)
    async with aiohttp.ClientSession(connector=conn) as s:
        async with s.ws_connect("http://localhost" + path) as ws:
            got: list[tuple[str, bytes]] = []
            seen = b""
            for m in send:
                await ws.send_bytes(m)
            pending = list(then or [])
            async with asyncio.timeout(timeout):
                async for msg in ws:
                    data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                    got.append((msg.type.name, data))
                    seen += data
                    if pending and until is not None and until in seen:
                        for m in pending:
                            await ws.send_bytes(m)
                        pending = []
            return got, ws.close_code


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture
def talker(client: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    ct = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; read x; echo got-$x; echo e2 >&2"],
                               stdin_open=True, detach=True)
    deadline = time.monotonic() + 10
    while b"err" not in ct.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ct
    ct.remove(force=True)


def test_ws_logs_stream_stdin_raw_binary(daemon: Daemon, talker) -> None:  # type: ignore[no-untyped-def]
    got, code = _run(_ws_session(daemon, f"/v1.45/containers/{talker.id}/attach/ws"
                                         "?logs=1&stream=1&stdin=1&stdout=1&stderr=0", [b"abc\n"]))
    assert {t for t, _ in got} == {"BINARY"}  # binary messages of raw bytes: no 8-byte headers
    assert b"".join(d for _, d in got) == b"out\ngot-abc\n"  # stderr not chosen: neither logged nor live
    assert code == 1000  # the container ended: the socket closes normally
    talker.reload()
    assert talker.status == "exited"


def test_ws_before_1_42_has_every_stream(daemon: Daemon, talker) -> None:  # type: ignore[no-untyped-def]
    got, _code = _run(_ws_session(daemon, f"/v1.41/containers/{talker.id}/attach/ws?logs=1&stream=1",
                                  [b"v141\n"]))
    out = b"".join(d for _, d in got)
    assert out.startswith(b"out\nerr\n") or out.startswith(b"err\nout\n")
    assert b"got-v141\n" in out and b"e2\n" in out


def test_ws_text_messages_before_1_28(daemon: Daemon, talker) -> None:  # type: ignore[no-untyped-def]
    got, code = _run(_ws_session(daemon, f"/v1.27/containers/{talker.id}/attach/ws?logs=1", []))
    assert sorted(got) == [("TEXT", b"err\n"), ("TEXT", b"out\n")] and code == 1000


def test_ws_logs_without_stream(daemon: Daemon, talker) -> None:  # type: ignore[no-untyped-def]
    got, code = _run(_ws_session(daemon, f"/containers/{talker.id}/attach/ws?logs=1&stdout=1&stderr=1", []))
    assert sorted(d for _, d in got) == [b"err\n", b"out\n"] and code == 1000
    talker.reload()
    assert talker.status == "running"  # still waiting for its input


def test_ws_tty_detach_keys(daemon: Daemon, client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh"], tty=True, stdin_open=True, detach=True)
    try:
        for query, keys in (("", b"\x10\x11"), ("&detachKeys=ctrl-a,x", b"\x01x")):
            got, _code = _run(_ws_session(daemon, f"/containers/{ct.id}/attach/ws?stream=1&stdin=1&stdout=1{query}",
                                          [b"echo ws-$((40+2))\n"], until=b"ws-42", then=[keys]))
            assert b"ws-42" in b"".join(d for _, d in got)  # the socket closed after the keys (no timeout)
            ct.reload()
            assert ct.status == "running"
    finally:
        ct.remove(force=True)


def test_ws_errors(daemon: Daemon, client: docker.DockerClient, talker) -> None:  # type: ignore[no-untyped-def]
    api = client.api
    r = api._get(api._url("/containers/{0}/attach/ws", "nope"), params={"stream": 1})
    assert r.status_code == 404 and r.json() == {"message": "No such container: nope"}
    r = api._get(api._url("/containers/{0}/attach/ws", talker.id), params={"detachKeys": "ctrl-1"})
    assert r.status_code == 400 and r.json() == {"message": "Invalid detach keys (ctrl-1) provided"}
    r = api._get(api._url("/containers/{0}/attach/ws", talker.id))  # no Upgrade: websocket
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
