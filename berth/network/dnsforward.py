"""Forwarding a DNS query the embedded server cannot answer to upstream resolvers.

The embedded server (berth/network/dns.py) answers the network's own names from berthd's loop; a query for
any other name is handed to ``ask_upstreams`` here, which asks at most MAX_UPSTREAMS servers in turn over a
fresh socket (made in berthd's namespace, or in the container's for its --dns servers), matches the reply
to the question, and falls back to SERVFAIL. It is apart because it is the client side of DNS: it shares no
state with the serving side beyond the parsed query, and its sockets, timeouts and failover rules can be
read and changed without the listener and rate-limit machinery in view.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct

from berth.network import dnswire as w
from berth.network import netns

log = logging.getLogger(__name__)

MAX_UPSTREAMS = 3
FORWARD_TIMEOUT = 4.0  # per upstream, as Docker


async def ask_upstreams(entries: list[str], netns_path: str | None, q: w.Query, data: bytes, *, tcp: bool,
                        timeout: float) -> bytes:
    """Ask each upstream in ``entries`` in turn (from inside ``netns_path``, or berthd's namespace when None);
    the first real answer goes back with the client's ID, SERVFAIL when none gives one."""
    message = data[:q.end]
    max_size = w.MAX_MSG_SIZE if tcp else q.udp_size
    servers = _parse_upstreams(entries)
    for server in servers[:MAX_UPSTREAMS]:
        upstream_id = random.getrandbits(16)
        try:
            sock = await _client_socket(netns_path, socket.AF_INET6 if ":" in server[0] else socket.AF_INET,
                                        socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
            reply = await asyncio.wait_for(
                (_exchange_tcp if tcp else _exchange_udp)(sock, server, w.rewrite_id(message, upstream_id),
                                                          upstream_id, q.question),
                timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            log.debug("embedded DNS: upstream %s failed: %r", server, e)
            continue
        if reply is None:
            continue
        rcode = struct.unpack_from("!H", reply, 2)[0] & 0xF
        if rcode in (w.SERVFAIL, w.REFUSED):
            continue
        if len(reply) > max_size:  # the client could not take it whole: let it retry over TCP
            flags = struct.unpack_from("!H", reply, 2)[0] | w.TC
            return w.HEADER.pack(q.id, flags, 1, 0, 0, 0) + q.question
        return w.rewrite_id(reply, q.id)
    return w.header_reply(q.id, q.flags, w.SERVFAIL, q.question)


def _parse_upstreams(entries: list[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for entry in entries:
        host, port = entry.strip(), 53
        if host.startswith("["):
            inner, _, rest = host[1:].partition("]")
            host = inner
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif host.count(":") == 1:
            h, _, p = host.partition(":")
            if not p.isdigit():
                continue
            host, port = h, int(p)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        if 0 < port < 65536:
            out.append((host, port))
    return out


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, want_id: int, question: bytes) -> None:
        self.want_id = want_id
        self.question = question.lower()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        # The socket is connected, so only the upstream can answer; still match ID and question.
        if self.done.done() or len(data) < w.HEADER.size:
            return
        msg_id, flags, qd = struct.unpack_from("!HHH", data)
        if msg_id != self.want_id or not flags & w.QR:
            return
        if qd == 1 and data[w.HEADER.size:w.HEADER.size + len(self.question)].lower() != self.question:
            return
        self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _exchange_udp(sock: socket.socket, server: tuple[str, int], message: bytes, want_id: int,
                        question: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    try:
        sock.connect(server)  # connected: only the upstream's datagrams reach us
        transport, proto = await loop.create_datagram_endpoint(lambda: _UpstreamProtocol(want_id, question),
                                                               sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.sendto(message)
        return await proto.done
    finally:
        transport.close()


async def _exchange_tcp(sock: socket.socket, server: tuple[str, int], message: bytes, want_id: int,
                        question: bytes) -> bytes | None:
    try:
        await asyncio.get_running_loop().sock_connect(sock, server)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(struct.pack("!H", len(message)) + message)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        reply = await reader.readexactly(size)
        if len(reply) < w.HEADER.size or struct.unpack_from("!H", reply)[0] != want_id:
            return None
        return reply
    finally:
        writer.close()


async def _client_socket(netns_path: str | None, family: int, kind: int) -> socket.socket:
    """A non-blocking socket for talking upstream: in berthd's namespace, or in the container's."""
    def make() -> socket.socket:
        s = socket.socket(family, kind)
        s.setblocking(False)
        return s

    if netns_path is None:
        return make()
    return await asyncio.to_thread(netns.run_in, netns_path, make)
