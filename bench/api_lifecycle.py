"""Create and remove through the Engine API alone, without the docker CLI in the figure.

The CLI's own start and handshake (~15 ms here) is in every `docker create` / `docker rm -f`
figure and is the same for berthd and dockerd, so those ratios say little about the engines.
This times the two requests the CLI makes (``POST /containers/create``, ``DELETE
/containers/{id}?force=1``), each on a fresh unix-socket connection as the CLI's are, alternating
between the engines each round so that load drifts hit them alike.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

API = "/v1.41"  # dockerd 20.10's newest; berthd serves it too


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.path)
        self.sock = s


def _request(sock: str, method: str, url: str, body: dict[str, object] | None = None) -> tuple[int, bytes]:
    conn = _UnixConnection(sock)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, API + url, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _timed(sock: str, method: str, url: str, body: dict[str, object] | None = None) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    status, data = _request(sock, method, url, body)
    ms = (time.perf_counter() - t0) * 1000
    if status >= 300:
        raise RuntimeError(f"{method} {url}: {status} {data[:200]!r}")
    return ms, data


def measure(n: int, engines: dict[str, tuple[str, str]]) -> dict[str, list[float]]:
    """``engines``: label -> (unix socket path, image). ms samples of "<label> API create" and
    "<label> API rm -f", ``n`` rounds after two warm-up rounds."""
    out: dict[str, list[float]] = {}
    for label in engines:
        out[f"{label} API create"] = []
        out[f"{label} API rm -f"] = []
    labels = list(engines)
    for i in range(-2, n):
        for label in labels if i % 2 == 0 else labels[::-1]:
            sock, image = engines[label]
            t_create, data = _timed(sock, "POST", "/containers/create",
                                    {"Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
            cid = json.loads(data)["Id"]
            t_rm, _ = _timed(sock, "DELETE", f"/containers/{cid}?force=1")
            if i >= 0:
                out[f"{label} API create"].append(t_create)
                out[f"{label} API rm -f"].append(t_rm)
    return out
