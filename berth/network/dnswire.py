"""DNS wire format (RFC 1035) for the embedded resolver: parse a query, build the few replies it sends.

The bytes come from a container, so every step is bounded: names by RFC limits (63-byte labels, 255-byte
names), compression pointers must point strictly backwards (no loops) with a hop limit, record counts are
capped before anything is read. Anything malformed raises FormatError; nothing else escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD, RA, Z = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040
OPCODE_MASK, OPCODE_QUERY, OPCODE_NOTIFY = 0x7800, 0, 4 << 11

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_PTR, TYPE_MX, TYPE_AAAA, TYPE_SRV, TYPE_OPT = 1, 12, 15, 28, 33, 41
CLASS_IN = 1

MIN_UDP_SIZE = 512  # RFC 1035 limit without EDNS
MAX_MSG_SIZE = 65535
MAX_NAME = 255
MAX_LABEL = 63
MAX_POINTER_HOPS = 32
# Counts accepted in a query, as the Go DNS library Docker's resolver is built on: one question, at most one
# record in answer/authority (NOTIFY/IXFR), two additional (OPT and a TSIG/cookie).
MAX_AN, MAX_NS, MAX_AR = 1, 1, 2


class FormatError(ValueError):
    """The message cannot be parsed; the server answers FORMERR (if the header was readable) or drops it."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    qname: str  # lower-case, no trailing dot, "" for the root; labels with odd bytes kept escaped
    plain: bool  # every label is a plain hostname label (letters, digits, '-', '_'): safe to look up
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (original case), echoed in replies
    udp_size: int  # the client's UDP payload limit (512 unless it sent EDNS OPT)
    end: int  # bytes of the message that were parsed (header through additional section)


def read_name(data: bytes, off: int) -> tuple[list[bytes], int]:
    """Labels of the name at ``off`` and the offset after it in the original stream (pointers followed)."""
    labels: list[bytes] = []
    total = 1
    hops = 0
    end = -1
    pos = off
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            # strictly backwards from where this pointer sits: a loop is impossible, and hops bound the walk
            if target >= pos or hops >= MAX_POINTER_HOPS:
                raise FormatError("bad compression pointer")
            hops += 1
            pos = target
            continue
        if kind:
            raise FormatError("unsupported label type")
        if length == 0:
            return labels, (end if end >= 0 else pos + 1)
        if pos + 1 + length > len(data):
            raise FormatError("label runs past the message")
        total += length + 1
        if total > MAX_NAME:
            raise FormatError("name too long")
        labels.append(data[pos + 1:pos + 1 + length])
        pos += 1 + length


_HOSTNAME_BYTES = b"-_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _label_text(label: bytes) -> tuple[str, bool]:
    if not label.translate(None, _HOSTNAME_BYTES):  # only hostname characters
        return label.decode("ascii").lower(), True
    out = []
    for c in label:
        if c in (0x2E, 0x5C) or c <= 0x20 or c >= 0x7F:
            out.append(f"\\{c:03d}")
        else:
            out.append(chr(c).lower())
    return "".join(out), False


def parse_query(data: bytes) -> Query:
    """Parse a query; raises FormatError. The header must already be known to be 12+ bytes of a request."""
    if len(data) < HEADER.size:
        raise FormatError("short header")
    msg_id, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & Z or qd != 1 or an > MAX_AN or ns > MAX_NS or ar > MAX_AR:
        raise FormatError("unexpected header")
    labels, off = read_name(data, HEADER.size)
    # As the Go DNS library: a message that ends right after the name (or the type) leaves the rest zero.
    qtype = qclass = 0
    if off < len(data):
        if off + 2 > len(data):
            raise FormatError("truncated question")
        qtype = struct.unpack_from("!H", data, off)[0]
        off += 2
        if off < len(data):
            if off + 2 > len(data):
                raise FormatError("truncated question")
            qclass = struct.unpack_from("!H", data, off)[0]
            off += 2
    # Echoed uncompressed: a pointer in the query could aim at header bytes that differ in the reply.
    question = b"".join(bytes([len(label)]) + label for label in labels) + b"\0" + struct.pack("!HH", qtype, qclass)
    udp_size = MIN_UDP_SIZE
    for _ in range(an + ns + ar):
        rr_labels, off = read_name(data, off)
        if off + 10 > len(data):
            raise FormatError("truncated record")
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10 + rdlen
        if off > len(data):
            raise FormatError("record data runs past the message")
        if rtype == TYPE_OPT:
            if rr_labels:
                raise FormatError("OPT record not at the root")
            udp_size = max(MIN_UDP_SIZE, rclass)
    texts = [_label_text(label) for label in labels]
    return Query(id=msg_id, flags=flags, qname=".".join(t for t, _ in texts), plain=all(p for _, p in texts),
                 qtype=qtype, qclass=qclass, question=question, udp_size=udp_size, end=off)


def header_reply(msg_id: int, flags: int, rcode: int, question: bytes = b"") -> bytes:
    """An error reply with no records: QR, the request's opcode, RD and CD kept (no RA: Docker's resolver sets it
    only on answers of its own)."""
    out_flags = QR | (flags & (OPCODE_MASK | RD | 0x0010)) | (rcode & 0xF)
    return HEADER.pack(msg_id, out_flags, 1 if question else 0, 0, 0, 0) + question


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("ascii")
        if not raw or len(raw) > MAX_LABEL:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


_QNAME_POINTER = b"\xc0\x0c"  # the question's name, always at offset 12


def answer_reply(q: Query, records: list[tuple[int, int, bytes]], max_size: int, *, tcp: bool) -> bytes:
    """NOERROR reply with ``records`` (type, ttl, rdata) owned by the question's name, trimmed to ``max_size``
    (TC set over UDP when records had to be dropped, as Docker's resolver does)."""
    flags = QR | (q.flags & (OPCODE_MASK | RD | 0x0010)) | RA
    body = bytearray(q.question)
    size = HEADER.size + len(body)
    count = 0
    for rtype, ttl, rdata in records:
        rr = _QNAME_POINTER + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata
        if size + len(rr) > max_size:
            if not tcp:
                flags |= TC
            break
        body += rr
        size += len(rr)
        count += 1
    return HEADER.pack(q.id, flags, 1, count, 0, 0) + bytes(body)


def ptr_address(qname: str) -> str | None:
    """The IPv4 address a PTR query asks about ("4.3.2.1.in-addr.arpa" -> "1.2.3.4"), or None."""
    parts = qname.split(".")
    if len(parts) != 6 or parts[4:] != ["in-addr", "arpa"]:
        return None
    octets = parts[3::-1]
    if not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or not p.startswith("0"))
               for p in octets):
        return None
    return ".".join(octets)


def rewrite_id(message: bytes, msg_id: int) -> bytes:
    return struct.pack("!H", msg_id) + message[2:]
