"""Pull-through cache mode over real HTTP on 127.0.0.1: a `berth registry serve --proxy-remote-url`
in front of a second `berth registry serve` (the upstream), both real processes."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_registry_server import Client, digest_of, push_blob, push_image


class Server:
    """`python -m berth.registry serve` on 127.0.0.1:<free port>, stopped (by PID) on close."""

    def __init__(self, root: str, *args: str, addr: str = "127.0.0.1:0") -> None:
        self.root = root
        self.argv = [sys.executable, "-m", "berth.registry", "serve", "--addr", addr, "--root", root, *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"registry did not start: {line!r} {err}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.client = Client(self.port)

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[tuple[Server, Server]]:
    up = Server(str(tmp_path / "upstream"))
    proxy = None
    try:
        proxy = Server(str(tmp_path / "proxy"), "--proxy-remote-url", up.url, "--proxy-ttl", "1s")
        yield up, proxy
    finally:
        if proxy is not None:
            proxy.close()
        up.close()


def blob_files(root: str) -> list[str]:
    return sorted(f for _d, _s, files in os.walk(os.path.join(root, "blobs")) for f in files)


def test_pull_through_caches_and_serves_offline(pair: tuple[Server, Server]) -> None:
    up, proxy = pair
    layer = os.urandom(3 * 1024 * 1024 + 17)  # several fetch chunks
    md, _body, doc = push_image(up.client, "team/app", "v1", [layer])
    ld = doc["layers"][0]["digest"]
    c = proxy.client
    r = c.request("GET", "/v2/team/app/manifests/v1")
    assert r.status == 200 and r.headers["Docker-Content-Digest"] == md
    assert "Warning" not in r.headers
    r = c.request("GET", f"/v2/team/app/blobs/{ld}")
    assert r.status == 200 and r.body == layer
    # Kept locally: the fsync and rename that keep it follow the response, so allow them a moment.
    deadline = time.monotonic() + 10
    while digest_of(layer).split(":")[1] not in blob_files(proxy.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert digest_of(layer).split(":")[1] in blob_files(proxy.root)
    # Pushing to a proxy is refused with the spec's error, and stores nothing.
    r = c.request("POST", "/v2/team/app/blobs/uploads/")
    assert r.status == 405 and r.codes() == ["UNSUPPORTED"]
    assert c.request("DELETE", f"/v2/team/app/manifests/{md}").status == 405
    # Upstream gone: digests are served as before; the tag (its TTL of 1 s has run out) with a warning.
    up.close()
    time.sleep(1.2)
    r = c.request("GET", f"/v2/team/app/manifests/{md}")
    assert r.status == 200 and "Warning" not in r.headers
    r = c.request("GET", "/v2/team/app/manifests/v1")
    assert r.status == 200 and r.headers["Docker-Content-Digest"] == md
    assert r.headers["Warning"].startswith("110 ")
    assert c.request("GET", f"/v2/team/app/blobs/{ld}").body == layer
    # Something never cached: a clear 503 naming the upstream, not a 404.
    r = c.request("GET", "/v2/team/app/manifests/v2")
    assert r.status == 503 and up.url in r.json()["errors"][0]["message"]
    r = c.request("GET", f"/v2/team/app/blobs/{digest_of(b'never')}")
    assert r.status == 503


def test_tag_moved_upstream_is_seen_after_the_ttl(pair: tuple[Server, Server]) -> None:
    up, proxy = pair
    old, _, _ = push_image(up.client, "app", "latest", [b"one"])
    assert proxy.client.request("GET", "/v2/app/manifests/latest").headers["Docker-Content-Digest"] == old
    new, _, _ = push_image(up.client, "app", "latest", [b"two"])
    # Within the TTL the cached tag is served without asking the upstream.
    assert proxy.client.request("GET", "/v2/app/manifests/latest").headers["Docker-Content-Digest"] == old
    time.sleep(1.2)
    assert proxy.client.request("GET", "/v2/app/manifests/latest").headers["Docker-Content-Digest"] == new
    # An unknown tag upstream is the spec's 404.
    r = proxy.client.request("GET", "/v2/app/manifests/nope")
    assert r.status == 404 and r.codes() == ["MANIFEST_UNKNOWN"]


def test_corrupted_upstream_blob_is_refused_and_not_cached(pair: tuple[Server, Server]) -> None:
    up, proxy = pair
    layer = os.urandom(2 * 1024 * 1024)
    d = push_blob(up.client, "app", layer)
    # Damage the upstream's copy in place (same size): the upstream serves it without noticing.
    path = os.path.join(up.root, "blobs", "sha256", d.split(":")[1])
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"X" * 16)
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        conn.request("GET", f"/v2/app/blobs/{d}")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as got:
            resp.read()
        assert len(got.value.partial) < len(layer)  # never the whole (wrong) blob
        conn.close()
        assert d.split(":")[1] not in blob_files(proxy.root)
    # the ingest is gone too (the server removes it after cutting the client off: allow it a moment)
    deadline = time.monotonic() + 10
    while os.listdir(os.path.join(proxy.root, "_proxy")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(os.path.join(proxy.root, "_proxy")) == []


def test_concurrent_misses_fetch_once(tmp_path: Any) -> None:
    up = Server(str(tmp_path / "upstream"), "--log-format", "json")
    proxy = Server(str(tmp_path / "proxy"), "--proxy-remote-url", up.url)
    try:
        layer = os.urandom(8 * 1024 * 1024)
        d = push_blob(up.client, "app", layer)
        results: list[bytes] = []

        def get() -> None:
            results.append(Client(proxy.port).request("GET", f"/v2/app/blobs/{d}").body)

        threads = [threading.Thread(target=get) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [layer] * 6
    finally:
        proxy.close()
        log = up.close()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    gets = [e for e in lines if e["method"] == "GET" and e["path"] == f"/v2/app/blobs/{d}"]
    assert len(gets) == 1, gets  # one upstream fetch for six clients
    assert all({"status", "bytes", "duration_ms", "remote"} <= set(e) for e in lines)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "127.0.0.1:5000", "http://"])
def test_proxy_url_must_be_http(tmp_path: Any, url: str) -> None:
    root = tmp_path / "proxy"
    r = subprocess.run([sys.executable, "-m", "berth.registry", "serve", "--addr", "127.0.0.1:0", "--root",
                        str(root), "--proxy-remote-url", url], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--proxy-remote-url" in r.stderr and "http" in r.stderr
    assert not root.exists() or os.listdir(root) == []


def test_client_leaving_mid_blob_does_not_stop_the_fetch(pair: tuple[Server, Server]) -> None:
    """A client that hangs up halfway through a cold blob (sent by sendfile while it is fetched) costs
    nothing: the fetch finishes and is kept, and the next client gets the whole blob from the cache,
    also with the upstream gone; the same for a client leaving a cached blob."""
    up, proxy = pair
    layer = os.urandom(24 * 1024 * 1024)
    d = push_blob(up.client, "app", layer)
    for _ in range(2):  # cold (followed while fetched), then cached
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        conn.request("GET", f"/v2/app/blobs/{d}")
        r = conn.getresponse()
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(layer)
        assert len(r.read(1024 * 1024)) == 1024 * 1024
        conn.close()  # hang up with most of the body unsent
    deadline = time.monotonic() + 10
    while d.split(":")[1] not in blob_files(proxy.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    up.close()
    r = proxy.client.request("GET", f"/v2/app/blobs/{d}")
    assert r.status == 200 and r.body == layer
    r = proxy.client.request("GET", f"/v2/app/blobs/{d}", headers={"Range": "bytes=1000-1999"})
    assert r.status == 206 and r.body == layer[1000:2000]
    assert "Error handling request" not in proxy.close()
