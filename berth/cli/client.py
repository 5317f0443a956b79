"""A lean Engine API client for the CLI: HTTP/1.1 over a unix socket, TCP or TLS, written on ``socket``.

Why not the Docker SDK or ``http.client``: importing the SDK (requests, urllib3) costs ~150 ms and
``http.client`` alone ~20 ms (it pulls in the ``email`` package to parse headers), against a budget of
~70 ms for a whole ``berth ps``. ``socket`` and ``json`` cost ~3 ms together; ``ssl`` is imported only for
TLS hosts. The SDK stays the reference client in the tests. This module is the transport (hosts, TLS,
connecting, writing a request); reading what comes back is in berth/cli/streams.py.

Requests go to unversioned paths, so the daemon answers with its own API version (berthd and
dockerd both accept that); ``DOCKER_API_VERSION`` / ``BERTH_API_VERSION`` pin one.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable
from urllib.parse import quote, urlencode

from berth.cli.streams import BufferedSocket, Response, error_message, read_head

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

DEFAULT_HOST = "unix:///var/run/berth.sock"


class ConnectError(Exception):
    """The daemon cannot be reached at all (docker exits 1 with its ``Cannot connect`` line)."""

    def __init__(self, host: str, denied: bool = False) -> None:
        super().__init__(f"permission denied while trying to connect to the Berth daemon socket at {host}" if denied
                         else f"Cannot connect to the Berth daemon at {host}. Is berthd running?")
        self.host = host


class APIError(Exception):
    """The daemon answered with an error status; ``str()`` is Docker's wording for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Error response from daemon: {message}")
        self.status = status
        self.message = message


class StreamError(Exception):
    """An error reported inside a JSON progress stream (``{"error": ...}``)."""


class TLSOptions:
    """How to reach a TCP daemon over TLS (a plain class: ``dataclasses`` costs ~10 ms to import)."""

    def __init__(self, verify: bool = False, cacert: str = "", cert: str = "", key: str = "") -> None:
        self.verify, self.cacert, self.cert, self.key = verify, cacert, cert, key


def tls_from_env(tls: bool, tlsverify: bool, cacert: str | None, cert: str | None,
                 key: str | None) -> TLSOptions | None:
    """Docker's rules: ``--tlsverify`` or a non-empty ``DOCKER_TLS_VERIFY`` verifies the daemon's
    certificate; ``--tls`` encrypts only; certificates default to ``$DOCKER_CERT_PATH`` or ~/.docker."""
    verify = tlsverify or bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not (tls or verify):
        return None
    cert_dir = os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")

    def pick(given: str | None, name: str) -> str:
        if given:
            return given
        p = os.path.join(cert_dir, name)
        return p if os.path.exists(p) else ""

    return TLSOptions(verify=verify, cacert=pick(cacert, "ca.pem"), cert=pick(cert, "cert.pem"),
                      key=pick(key, "key.pem"))


def parse_host(host: str, tls: bool) -> tuple[str, str | tuple[str, int]]:
    """``unix:///path`` -> ("unix", path); ``tcp://h:p`` -> ("tcp", (h, p)). Raises ValueError."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path:
            raise ValueError(f"invalid host {host!r}: no socket path")
        return "unix", path
    if host.startswith(("tcp://", "http://", "https://")):
        hp = host.split("://", 1)[1].split("/", 1)[0]
        if hp.startswith("["):
            h, _, rest = hp[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif hp.count(":") == 1:
            h, port = hp.split(":")
        else:
            h, port = hp, ""
        if port and not port.isdigit():
            raise ValueError(f"invalid host {host!r}: bad port {port!r}")
        return "tcp", (h or "127.0.0.1", int(port) if port else (2376 if tls else 2375))
    if host.startswith("/"):
        return "unix", host
    raise ValueError(f"invalid host {host!r}: use unix:///path or tcp://host:port")


class Client:
    def __init__(self, host: str = DEFAULT_HOST, tls: TLSOptions | None = None) -> None:
        self.host = host
        self.tls = tls
        self.kind, self.addr = parse_host(host, tls is not None)
        v = os.environ.get("BERTH_API_VERSION") or os.environ.get("DOCKER_API_VERSION")
        self.prefix = f"/v{v}" if v else ""

    def _connect(self) -> socket.socket:
        try:
            if self.kind == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self.addr))
                except OSError:
                    s.close()
                    raise
            else:
                assert isinstance(self.addr, tuple)
                h, p = self.addr
                s = socket.create_connection((h, p), timeout=30)
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except PermissionError as e:
            raise ConnectError(self.host, denied=True) from e
        except OSError as e:
            raise ConnectError(self.host) from e
        if self.tls is not None and self.kind == "tcp":
            s = self._wrap_tls(s)
        return s

    def _wrap_tls(self, s: socket.socket) -> socket.socket:
        import ssl

        assert self.tls is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.tls.verify:
            if self.tls.cacert:
                ctx.load_verify_locations(self.tls.cacert)
            else:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.tls.cert:
            ctx.load_cert_chain(self.tls.cert, self.tls.key or None)
        h = str(self.addr[0])
        try:
            return ctx.wrap_socket(s, server_hostname=h)
        except (ssl.SSLError, OSError) as e:
            s.close()
            raise APIError(0, f"TLS handshake with {self.host} failed: {e}") from e

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        q = ""
        if params:
            clean: list[tuple[str, str]] = []
            for k, v in params.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "1" if v else "0"
                elif isinstance(v, dict):
                    v = json.dumps(v)
                if isinstance(v, (list, tuple)):  # a repeated key: names=a&names=b
                    clean += [(k, str(x)) for x in v]
                else:
                    clean.append((k, str(v)))
            if clean:
                q = "?" + urlencode(clean)
        return self.prefix + path + q

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                data: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None,
                upgrade: bool = False, sent: Callable[[], None] | None = None) -> Response:
        """Send one request on a fresh connection; raise APIError for a status >= 400. ``sent`` is
        called once the whole request is on the wire (before the answer is awaited)."""
        hdrs = {"Host": "api" if self.kind == "unix" else str(self.addr[0]), "User-Agent": "berth-cli"}
        if headers:
            hdrs.update(headers)
        payload: bytes | Iterable[bytes] | None = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if upgrade:
            hdrs["Connection"] = "Upgrade"
            hdrs["Upgrade"] = "tcp"
        chunked = payload is not None and not isinstance(payload, bytes)
        if isinstance(payload, bytes):
            hdrs["Content-Length"] = str(len(payload))
        elif chunked:
            hdrs["Transfer-Encoding"] = "chunked"
        elif method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        head = f"{method} {self.url(path, params)} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock = self._connect()
        conn = BufferedSocket(sock)
        try:
            if isinstance(payload, bytes):
                sock.sendall(head.encode() + payload)
            else:
                sock.sendall(head.encode())
                if chunked:
                    assert payload is not None
                    for part in payload:
                        if part:
                            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    sock.sendall(b"0\r\n\r\n")
            if sent is not None:
                sent()
            resp = read_head(conn, method)
        except BrokenPipeError:
            # the daemon answered (an error) and closed before the whole body was sent
            try:
                resp = read_head(conn, method)
            except OSError as e:
                conn.close()
                raise ConnectError(self.host) from e
        except OSError as e:
            conn.close()
            raise APIError(0, f"connection to {self.host} failed: {e}") from e
        if resp.status >= 400:
            try:
                raise APIError(resp.status, error_message(resp.status, resp.read()))
            finally:
                conn.close()
        return resp

    # conveniences
    def get(self, path: str, **params: Any) -> Any:
        r = self.request("GET", path, params)
        try:
            return r.json()
        finally:
            r.close()

    def post(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        r = self.request("POST", path, params, body=body)
        try:
            raw = r.read()
            return json.loads(raw) if raw.strip() else None
        finally:
            r.close()

    def delete(self, path: str, **params: Any) -> Any:
        r = self.request("DELETE", path, params)
        try:
            raw = r.read()
            return json.loads(raw) if raw.strip() else None
        finally:
            r.close()

    def ping(self) -> bool:
        r = self.request("GET", "/_ping")
        try:
            return r.read() == b"OK"
        finally:
            r.close()

    def hijack(self, method: str, path: str, params: dict[str, Any] | None = None,
               body: Any = None) -> tuple[socket.socket, bytes]:
        """Attach/exec-start: the connection becomes a raw stream after 101 (or a 200 from old daemons).
        Returns the socket and any bytes of the stream already read with the head."""
        r = self.request(method, path, params, body=body, upgrade=True)
        return r.conn.sock, r.conn.buf


def q(name: str) -> str:
    """A path segment (container/image names may hold ``/`` and ``:``)."""
    return quote(name, safe="")
