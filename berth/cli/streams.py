"""Reading the daemon's answers for the lean CLI client: framing, bounds, and the stream formats.

berth/cli/client.py gets a request onto the wire; everything after that is here: a socket with a read
buffer (whatever is left in it after a 101 goes to the hijacker), the status line and headers, a body by
Content-Length, chunks, or until close, JSON progress and event streams, and Docker's multiplexed
stdout/stderr. It is apart because this is where a bad or hostile daemon is met, so every bound on what
the CLI will read lives in one place, separate from how it connects. Same import budget as the client:
``json`` and ``socket`` only, ``codecs`` on first use.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

MAX_HEADER_LINE = 65536
MAX_HEADERS = 200
CHUNK = 65536
MAX_BODY = 256 << 20     # an answer read whole (inspect, ps ...): a bad server must not fill memory
MAX_MESSAGE = 64 << 20   # one JSON message of a progress or event stream


class BufferedSocket:
    """A socket with a read buffer; what is left in the buffer after a 101 goes to the hijacker."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > MAX_HEADER_LINE:
                raise OSError("response line too long")
            if not self._fill():
                line, self.buf = self.buf, b""
                return line

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes: whatever is buffered, else one recv."""
        if not self.buf:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise OSError("connection closed mid-body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    def __init__(self, conn: BufferedSocket, status: int, headers: dict[str, str], method: str) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self._no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it arrives (Content-Length, chunked, or until the daemon closes)."""
        if self._no_body:
            return
        c = self.conn
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = c.readline()
                if not size_line:
                    raise OSError("connection closed mid-body")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise OSError(f"malformed chunk size from daemon: {size_line[:40]!r}") from None
                if size < 0:
                    raise OSError(f"malformed chunk size from daemon: {size_line[:40]!r}")
                if size == 0:
                    while c.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield from _sized(c, size)
                c.read_exact(2)
        elif "content-length" in self.headers:
            try:
                left = int(self.headers["content-length"])
            except ValueError:
                raw = self.headers["content-length"][:40]
                raise OSError(f"malformed Content-Length from daemon: {raw!r}") from None
            yield from _sized(c, left)
        else:
            while True:
                part = c.read(CHUNK)
                if not part:
                    return
                yield part

    def read(self, limit: int = MAX_BODY) -> bytes:
        parts: list[bytes] = []
        size = 0
        for part in self.iter_raw():
            size += len(part)
            if size > limit:
                raise OSError(f"the daemon's answer is larger than {limit} bytes")
            parts.append(part)
        return b"".join(parts)

    def json(self) -> Any:
        return json.loads(self.read() or b"null")

    def iter_json(self) -> Iterator[dict[str, Any]]:
        """Newline-delimited (or concatenated) JSON objects, as progress and event streams send them."""
        import codecs

        dec = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads
        buf = ""
        tried = 0  # buf's length at the last failed decode: wait for a new line before trying again
        for part in self.iter_raw():
            buf += text.decode(part)
            if len(buf) > MAX_MESSAGE:
                raise OSError(f"a message from the daemon is larger than {MAX_MESSAGE} bytes")
            if tried and len(buf) < 2 * tried and not (len(buf) < 1 << 20 and _may_end(buf, tried)):
                continue  # a long unfinished message: re-decoding it on every read would cost O(n^2)
            while True:
                buf = buf.lstrip()
                if not buf:
                    tried = 0
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except ValueError:
                    tried = len(buf)
                    break
                tried = 0
                buf = buf[end:]
                yield obj
        buf += text.decode(b"", final=True)
        if buf.strip():
            try:
                obj, end = dec.raw_decode(buf.lstrip())
            except ValueError:
                return
            yield obj

    def close(self) -> None:
        self.conn.close()


def _may_end(buf: str, since: int) -> bool:
    """Could the text added after ``since`` finish a JSON message?"""
    return buf.find("}", since) >= 0 or buf.find("\n", since) >= 0 or buf.find("]", since) >= 0


def error_message(status: int, body: bytes) -> str:
    try:
        msg = json.loads(body).get("message")
        if isinstance(msg, str) and msg:
            return msg
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return text or f"status {status}"


def read_head(conn: BufferedSocket, method: str) -> Response:
    """The status line and headers of an answer; the body is left on ``conn`` for the Response to read."""
    line = conn.readline()
    while line in (b"\r\n", b"\n"):
        line = conn.readline()
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"malformed response from daemon: {line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        h = conn.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    else:
        raise OSError("too many response headers")
    return Response(conn, status, headers, method)


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Split Docker's multiplexed stream (8-byte header: stream id, 3 zero bytes, big-endian size)
    into (stream, payload); stream 1 is stdout, 2 stderr."""
    buf = b""
    for part in chunks:
        buf += part
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            yield buf[0], buf[8:8 + size]
            buf = buf[8 + size:]
    if buf:
        yield 1, buf


def _sized(c: BufferedSocket, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of body (a chunk, or a Content-Length body), as they arrive."""
    left = size
    while left:
        part = c.read(min(left, CHUNK))
        if not part:
            raise OSError("connection closed mid-body")
        left -= len(part)
        yield part
