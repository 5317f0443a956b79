"""DNS helpers for the embedded-DNS tests, written independently of berth.network.dnswire so the tests do not
grade the codec with itself: a query builder, a reply decoder, a fake upstream resolver on 127.0.0.1, and a
client script run inside a network namespace.

Traffic stays on loopback: the fake upstream listens on 127.0.0.1 in the host's namespace, the client talks to
127.0.0.11 inside a namespace the test made. Addresses in answers are data only (TEST-NET ranges).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

A, PTR, MX, TXT, AAAA = 1, 12, 15, 16, 28
QR, TC, RD, RA = 0x8000, 0x0200, 0x0100, 0x0080


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p) + b"\0"


def query(name: str, qtype: int = A, *, qid: int = 0x4242, flags: int = RD,
          counts: tuple[int, int, int, int] = (1, 0, 0, 0), edns: int | None = None) -> bytes:
    qd, an, ns, ar = counts
    extra = b""
    if edns is not None:
        ar += 1
        extra = b"\0" + struct.pack("!HHIH", 41, edns, 0, 0)
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar) + encode_name(name) + struct.pack("!HH", qtype, 1) + extra


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    for _ in range(128):
        n = data[off]
        if n >= 0xC0:
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            continue
        if n == 0:
            return ".".join(labels), (end if end >= 0 else off + 1)
        labels.append(data[off + 1:off + 1 + n].decode("latin-1"))
        off += 1 + n
    raise ValueError("name loop")


@dataclass
class Reply:
    id: int
    flags: int
    rcode: int
    qname: str
    counts: tuple[int, int, int, int]
    answers: list[tuple[str, int, int, str]] = field(default_factory=list)  # name, type, ttl, value
    size: int = 0

    @property
    def addresses(self) -> list[str]:
        return [v for _, t, _, v in self.answers if t == A]


def decode(data: bytes) -> Reply:
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    off = 12
    qname = ""
    for _ in range(qd):
        qname, off = _read_name(data, off)
        off += 4
    reply = Reply(qid, flags, flags & 0xF, qname, (qd, an, ns, ar), size=len(data))
    for _ in range(an):
        name, off = _read_name(data, off)
        rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        rdata = data[off:off + rdlen]
        if rtype == A:
            value = socket.inet_ntoa(rdata)
        elif rtype == PTR:
            value = _read_name(data, off)[0]
        else:
            value = rdata.hex()
        off += rdlen
        reply.answers.append((name, rtype, ttl, value))
    return reply


# -- a client inside the namespace -------------------------------------------------------------------------

CLIENT = r"""
import json, socket, struct, sys
proto, timeout = sys.argv[1], float(sys.argv[2])
out = []
for hexq in sys.argv[3:]:
    q = bytes.fromhex(hexq)
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.connect(("127.0.0.11", 53))  # connected, so a closed port reports ECONNREFUSED
            s.send(q)
            out.append(s.recv(65535).hex())
        else:
            s = socket.create_connection(("127.0.0.11", 53), timeout=timeout)
            s.sendall(struct.pack("!H", len(q)) + q)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            out.append(buf[2:].hex())
        s.close()
    except (OSError, socket.timeout) as e:
        out.append(type(e).__name__)
print(json.dumps(out))
"""


async def run_in_ns(ns: str, *argv: str, timeout: float = 30) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", ns, *argv, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def ask(ns: str, *queries: bytes, proto: str = "udp", timeout: float = 3.0) -> list[Reply | str]:
    """Send each query from inside ``ns`` to 127.0.0.11:53; a Reply each, or the error's name (e.g. 'timeout')."""
    code, out = await run_in_ns(ns, sys.executable, "-c", CLIENT, proto, str(timeout), *(q.hex() for q in queries))
    assert code == 0, out
    return [decode(bytes.fromhex(r)) if all(c in "0123456789abcdef" for c in r) and r else r
            for r in json.loads(out)]


async def ask1(ns: str, q: bytes, proto: str = "udp", timeout: float = 3.0) -> Reply:
    r = (await ask(ns, q, proto=proto, timeout=timeout))[0]
    assert isinstance(r, Reply), r
    return r


@contextmanager
def netns(tag: str = "") -> Iterator[str]:
    """A fresh network namespace (its lo left down, as a new one is), removed afterwards."""
    name = f"berth-test-{os.getpid()}{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# -- a fake upstream resolver on 127.0.0.1 ------------------------------------------------------------------

Handler = Callable[[bytes, str], "bytes | None"]  # (query, "udp"|"tcp") -> reply or None (stay silent)


def reply_a(q: bytes, address: str, *, rcode: int = 0, flags: int = 0, aa: bool = False) -> bytes:
    """An upstream-style answer to ``q`` (same ID and question)."""
    qid, qflags = struct.unpack_from("!HH", q)
    _, end = _read_name(q, 12)
    question = q[12:end + 4]
    hdr_flags = QR | RA | (qflags & RD) | (0x0400 if aa else 0) | flags | rcode
    answers = b""
    if rcode == 0 and address:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 30, 4) + socket.inet_aton(address)
    return struct.pack("!HHHHHH", qid, hdr_flags, 1, 1 if answers else 0, 0, 0) + question + answers


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP, same port) run by threads; records what it was asked."""

    def __init__(self, handler: Handler, *, netns_path: str | None = None, port: int = 0) -> None:
        """On 127.0.0.1 of berthd's (the test's) namespace, or of the namespace at ``netns_path``."""
        self.handler = handler
        self.seen: list[tuple[str, str, int]] = []  # (proto, qname, id)

        def make() -> tuple[socket.socket, socket.socket]:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", port))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            tcp.listen(16)
            return udp, tcp

        if netns_path is None:
            self.udp, self.tcp = make()
        else:
            from berth.network import netns

            self.udp, self.tcp = netns.run_in(netns_path, make)
        self.port = self.udp.getsockname()[1]
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.stopping = False
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _record(self, q: bytes, proto: str) -> None:
        try:
            self.seen.append((proto, _read_name(q, 12)[0].lower(), struct.unpack_from("!H", q)[0]))
        except (IndexError, ValueError, struct.error):
            self.seen.append((proto, "?", -1))

    def _udp_loop(self) -> None:
        while not self.stopping:
            try:
                q, addr = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._record(q, "udp")
            r = self.handler(q, "udp")
            if r is not None:
                self.udp.sendto(r, addr)

    def _tcp_loop(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    n = struct.unpack("!H", conn.recv(2))[0]
                    q = b""
                    while len(q) < n:
                        q += conn.recv(n - len(q))
                    self._record(q, "tcp")
                    r = self.handler(q, "tcp")
                    if r is not None:
                        conn.sendall(struct.pack("!H", len(r)) + r)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self.stopping = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@contextmanager
def fake_upstream(handler: Handler, *, netns_path: str | None = None, port: int = 0) -> Iterator[FakeUpstream]:
    up = FakeUpstream(handler, netns_path=netns_path, port=port)
    try:
        yield up
    finally:
        up.close()


def dead_port() -> str:
    """A 127.0.0.1 UDP port nothing listens on (bound then closed): queries there are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"
