"""Docker's embedded DNS server for user-defined networks, served by berthd's own event loop.

Each attached container gets a UDP and a TCP socket bound to 127.0.0.11:53 inside its network namespace
(created there by a short-lived thread that setns()es in and out; a socket stays in the namespace it was
made in). Names the network knows are answered from ``resolve`` (A, TTL 600); everything else is forwarded
by berth/network/dnsforward.py: to the host's resolvers from berthd's namespace, or to the container's own
--dns servers from inside its namespace, as Docker's resolver does.

Docker's rules followed here: AAAA or MX for a known name is NOERROR with no answers; a PTR for a known
address is answered, other PTRs forwarded; with an ``ndots`` the user set, an unknown single-label A/AAAA
name gets an empty NOERROR (the client then tries its search domains) instead of being forwarded; each of
at most three upstreams is tried in turn, moving on after a timeout, SERVFAIL or REFUSED; SERVFAIL when
none answers; REFUSED when the container already has too many queries in flight. Requests with odd
headers get FORMERR, other opcodes NOTIMP, responses and runts are dropped (the Go DNS library's rules).
Beyond Docker: each container gets at most QUERY_RATE queries/s answered, so that a flood from one cannot
hold berthd's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import socket
import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from berth.network import dnswire as w
from berth.network import netns
from berth.network.dnsforward import FORWARD_TIMEOUT, ask_upstreams

log = logging.getLogger(__name__)

LISTEN_ADDR = "127.0.0.11"
RESP_TTL = 600
MAX_FORWARDS = 128  # queries one container may have in flight upstream
MAX_TCP_CONNS = 32  # TCP connections one container may hold open
TCP_IDLE = 8.0  # seconds a TCP client may keep a connection silent
MAX_TCP_QUERIES = 100  # queries on one TCP connection before it is closed
UDP_BATCH = 64  # datagrams read per wake-up before the loop gets a turn
QUERY_RATE = 2000.0  # queries/s one container gets answered (a token bucket); beyond it UDP queries are dropped
QUERY_BURST = 1000.0

Resolve = Callable[[str], list[str]]
Reverse = Callable[[str], "str | None"]


@dataclass
class _Attachment:
    key: str
    resolve: Resolve
    reverse: Reverse | None
    ndots_set: bool
    netns_path: str
    dns_servers: list[str]
    udp: socket.socket | None = None
    tcp: asyncio.Server | None = None
    forwards: int = 0
    rotation: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    tcp_writers: set[asyncio.StreamWriter] = field(default_factory=set)
    closed: bool = False
    tokens: float = QUERY_BURST
    refilled: float = 0.0


class EmbeddedDNS:
    def __init__(self, upstreams: Callable[[], list[str]], *, forward_timeout: float = FORWARD_TIMEOUT,
                 max_forwards: int = MAX_FORWARDS, query_rate: float | None = QUERY_RATE,
                 query_burst: float = QUERY_BURST) -> None:
        """``query_rate``: queries/s per container (None: no limit). Every query costs a ``resolve`` call on
        berthd's loop, so one container's flood must not take the loop from the rest of the daemon."""
        self._upstreams = upstreams
        self._timeout = forward_timeout
        self._max_forwards = max_forwards
        self._rate = query_rate
        self._burst = query_burst
        self._attached: dict[str, _Attachment] = {}

    def _admit(self, att: _Attachment) -> float:
        """Take a token for one query: 0 when admitted, else the seconds until one is there."""
        if self._rate is None:
            return 0.0
        now = asyncio.get_running_loop().time()
        att.tokens = min(self._burst, att.tokens + (now - att.refilled) * self._rate)
        att.refilled = now
        if att.tokens >= 1:
            att.tokens -= 1
            return 0.0
        return (1 - att.tokens) / self._rate

    async def attach(self, key: str, netns_path: str, resolve: Resolve, *, reverse: Reverse | None = None,
                     ndots_set: bool = False, dns_servers: list[str] | None = None) -> None:
        """Serve 127.0.0.11:53 in the namespace at ``netns_path`` for container ``key`` (re-attaching replaces
        the old sockets). ``reverse(ip)`` names a known address for PTR; ``ndots_set``: the user gave an ndots
        option; ``dns_servers``: the container's --dns servers, asked instead of the host's resolvers."""
        if key in self._attached:
            await self.detach(key)
        udp_sock, tcp_sock = await _sockets_in_netns(netns_path)
        att = _Attachment(key, resolve, reverse, ndots_set, netns_path, list(dns_servers or []))
        loop = asyncio.get_running_loop()
        att.tokens, att.refilled = self._burst, loop.time()
        try:
            att.tcp = await asyncio.start_server(lambda r, wr: self._serve_tcp(att, r, wr), sock=tcp_sock)
            loop.add_reader(udp_sock.fileno(), self._udp_readable, att)
            att.udp = udp_sock
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        self._attached[key] = att

    async def detach(self, key: str) -> None:
        att = self._attached.pop(key, None)
        if att is None:
            return
        att.closed = True
        if att.udp is not None:
            asyncio.get_running_loop().remove_reader(att.udp.fileno())
            att.udp.close()
        if att.tcp is not None:
            att.tcp.close()
        for writer in list(att.tcp_writers):
            writer.close()
        for task in list(att.tasks):
            task.cancel()
        if att.tasks:
            await asyncio.gather(*att.tasks, return_exceptions=True)
        if att.tcp is not None:
            await att.tcp.wait_closed()

    async def close(self) -> None:
        for key in list(self._attached):
            await self.detach(key)

    def attached(self) -> list[str]:
        return list(self._attached)

    # -- answering --------------------------------------------------------------------------------------

    def answer_locally(self, att: _Attachment, q: w.Query, max_size: int, tcp: bool) -> bytes | None:
        """The reply from the network's own names, or None when the query must go upstream."""
        if q.qtype == w.TYPE_PTR:
            ip = w.ptr_address(q.qname) if q.plain else None
            name = None
            if ip is not None and att.reverse is not None:
                name = att.reverse(ip)
            if not name:
                return None
            return w.answer_reply(q, [(w.TYPE_PTR, RESP_TTL, w.encode_name(name))], max_size, tcp=tcp)
        if q.qtype not in (w.TYPE_A, w.TYPE_AAAA, w.TYPE_MX):
            return None
        addresses = _packed_ipv4(att.resolve(q.qname)) if q.plain and q.qname else []
        if not addresses:
            if att.ndots_set and q.qtype != w.TYPE_MX and q.qname and "." not in q.qname:
                return w.answer_reply(q, [], max_size, tcp=tcp)
            return None
        if q.qtype != w.TYPE_A:  # AAAA: the name is ours but has no IPv6 address; MX: "implicit MX"
            return w.answer_reply(q, [], max_size, tcp=tcp)
        att.rotation = (att.rotation + 1) % 1_000_000
        start = att.rotation % len(addresses)
        ordered = addresses[start:] + addresses[:start]
        return w.answer_reply(q, [(w.TYPE_A, RESP_TTL, a) for a in ordered], max_size, tcp=tcp)

    def handle(self, att: _Attachment, data: bytes, *, tcp: bool) -> tuple[bytes | None, w.Query | None]:
        """(reply now, or query to forward); (None, None) means drop. Never raises."""
        try:
            if len(data) < w.HEADER.size:
                return None, None
            msg_id, flags = struct.unpack_from("!HH", data)
            if flags & w.QR:
                return None, None  # a response: answering it would start DNS ping-pong
            if flags & w.OPCODE_MASK not in (w.OPCODE_QUERY, w.OPCODE_NOTIFY):
                return w.header_reply(msg_id, flags, w.NOTIMP), None
            try:
                q = w.parse_query(data)
            except w.FormatError:
                return w.header_reply(msg_id, flags, w.FORMERR), None
            max_size = w.MAX_MSG_SIZE if tcp else q.udp_size
            try:
                reply = self.answer_locally(att, q, max_size, tcp)
            except Exception:
                log.exception("embedded DNS: lookup of %r for %s failed", q.qname, att.key)
                return w.header_reply(q.id, q.flags, w.SERVFAIL, q.question), None
            if reply is not None:
                return reply, None
            return None, q
        except Exception:  # a bug here must not take the server down with it
            log.exception("embedded DNS: unexpected error handling a query for %s", att.key)
            return None, None

    async def forward(self, att: _Attachment, q: w.Query, data: bytes, *, tcp: bool) -> bytes:
        """The upstream reply for a query the network's names cannot answer. The container's own --dns servers
        are asked from inside its namespace (as Docker: 127.0.0.1 there is its own loopback), the host's
        resolvers from berthd's."""
        if att.dns_servers:
            return await ask_upstreams(att.dns_servers, att.netns_path, q, data, tcp=tcp, timeout=self._timeout)
        return await ask_upstreams(self._upstreams(), None, q, data, tcp=tcp, timeout=self._timeout)

    def start_forward(self, att: _Attachment, q: w.Query, data: bytes, send: Callable[[bytes], None],
                      *, tcp: bool) -> None:
        if att.forwards >= self._max_forwards:
            send(w.header_reply(q.id, q.flags, w.REFUSED, q.question))
            return
        att.forwards += 1

        async def run() -> None:
            try:
                reply = await self.forward(att, q, data, tcp=tcp)
                if not att.closed:
                    send(reply)
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("embedded DNS: forwarding for %s failed", att.key)
            finally:
                att.forwards -= 1

        task = asyncio.get_running_loop().create_task(run())
        att.tasks.add(task)
        task.add_done_callback(att.tasks.discard)

    def _udp_readable(self, att: _Attachment) -> None:
        """Drain up to a batch of datagrams per wake-up (asyncio's datagram transport reads one per loop turn,
        which halves throughput under load); replies go straight back, and are dropped if the socket is full."""
        sock = att.udp
        if sock is None:
            return
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(w.MAX_MSG_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. ECONNREFUSED left by an earlier reply to a closed client port
                log.debug("embedded DNS: UDP receive for %s: %r", att.key, e)
                continue
            if self._admit(att):
                continue  # over the container's rate: dropped, as a busy resolver would
            reply, q = self.handle(att, data, tcp=False)
            if reply is not None:
                _send_udp(att, addr, reply)
            elif q is not None:
                self.start_forward(att, q, data, functools.partial(_send_udp, att, addr), tcp=False)

    async def _serve_tcp(self, att: _Attachment, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if len(att.tcp_writers) >= MAX_TCP_CONNS or att.closed:
            writer.close()
            return
        att.tcp_writers.add(writer)
        try:
            for _ in range(MAX_TCP_QUERIES):
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE)
                while wait := self._admit(att):  # over the rate: this connection waits its turn
                    await asyncio.sleep(wait)
                reply, q = self.handle(att, data, tcp=True)
                if q is not None:
                    if att.forwards >= self._max_forwards:
                        reply = w.header_reply(q.id, q.flags, w.REFUSED, q.question)
                    else:
                        att.forwards += 1
                        try:
                            reply = await self.forward(att, q, data, tcp=True)
                        finally:
                            att.forwards -= 1
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), TCP_IDLE)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("embedded DNS: TCP connection for %s failed", att.key)
        finally:
            att.tcp_writers.discard(writer)
            writer.close()


def _send_udp(att: _Attachment, addr: typing.Any, reply: bytes) -> None:
    if att.udp is not None and not att.closed:
        with contextlib.suppress(OSError):  # a full buffer or a vanished client: UDP may drop
            att.udp.sendto(reply, addr)


# -- sockets inside a network namespace ---------------------------------------------------------------------

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _bring_lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _make_listeners() -> tuple[socket.socket, socket.socket]:
    _bring_lo_up()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((LISTEN_ADDR, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((LISTEN_ADDR, 53))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


async def _sockets_in_netns(netns_path: str) -> tuple[socket.socket, socket.socket]:
    """The listening sockets, made inside the namespace (a socket stays in the namespace it was made in)."""
    return await asyncio.to_thread(netns.run_in, netns_path, _make_listeners)


def _packed_ipv4(addresses: list[str]) -> list[bytes]:
    """The 4-byte forms of the valid dotted-quad IPv4 addresses (others skipped); inet_pton is strict."""
    out = []
    for a in addresses:
        try:
            out.append(socket.inet_pton(socket.AF_INET, a))
        except (OSError, TypeError, ValueError):
            continue
    return out
