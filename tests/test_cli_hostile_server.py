"""The lean CLI client against a hostile or broken daemon on loopback: answers it cannot trust
must end the command with one error line, bounded in memory and time, never a hang or a trace."""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.cli_helpers import BERTH, berth, berth_env

Answer = Callable[[socket.socket], None]


def _serve(answer: Answer) -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)  # accept() wakes to see ``stop``
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(30)
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                try:
                    answer(conn)
                except OSError:
                    pass  # the client hung up: what a bounded client does

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        srv.close()
        t.join(10)


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _serve(request.param)


def _endless_length(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21474836480\r\n\r\n")
    block = b" " * (1 << 20)
    for _ in range(20 * 1024):
        conn.sendall(block)


def _endless_message(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.sendall(b'9\r\n{"status"\r\n')
    part = b"[" + b"1," * 32767 + b"\n"
    for _ in range(16 * 1024):  # 1 GiB of one unfinished JSON message
        conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))


def _bad_chunk(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def _split_character(conn: socket.socket) -> None:
    body = '{"status":"café","id":"x","Type":"t","Action":"a","time":1}\n'.encode()
    cut = body.index(b"\xa9")  # between the two bytes of the é
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (body[:cut], body[cut:]):
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.sendall(b"0\r\n\r\n")


def _limited(host: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with 1 GiB of address space: a client that buffers an endless answer dies of it."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([*BERTH, *args], capture_output=True, timeout=60, env=berth_env(host), preexec_fn=limit)


@pytest.mark.parametrize("hostile", [_endless_length], indirect=True)
def test_endless_answer_is_refused_not_buffered(hostile: str) -> None:
    # A 20 GiB Content-Length was read into memory whole before json.loads saw it.
    r = _limited(hostile, "ps")
    assert r.returncode == 1
    assert b"larger than" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


@pytest.mark.parametrize("hostile", [_endless_message], indirect=True)
def test_endless_stream_message_is_refused(hostile: str) -> None:
    # One JSON message that never ends was kept growing (and re-parsed from its start on every read).
    r = _limited(hostile, "events")
    assert r.returncode == 1
    assert b"larger than" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


@pytest.mark.parametrize("hostile", [_bad_chunk], indirect=True)
def test_garbled_chunk_size_is_one_error_line(hostile: str) -> None:
    r = berth(hostile, "ps", timeout=30)
    assert r.returncode == 1
    assert b"malformed chunk size" in r.stderr, r.stderr


@pytest.mark.parametrize("hostile", [_split_character], indirect=True)
def test_character_split_across_reads_is_kept(hostile: str) -> None:
    # Each read was decoded on its own, so an é cut between two chunks came out as two U+FFFD.
    r = berth(hostile, "events", "--format", "{{.status}}", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "café\n"
