"""The overlapped pull (download, decompression and extraction of a layer at once; layers of
one image at once): what it could get wrong. A registry on loopback that the test controls
serves the blobs, so it can hold a layer's last bytes back, serve bytes that do not match their
digest, or drop the connection half-way."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, cleanup_daemon, new_daemon, store_snapshot

FILES = 3000  # enough that extracting the layer takes a while


def _tar(prefix: str, n: int, size: int = 200) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(0, n, 100):
            ti = tarfile.TarInfo(f"{prefix}/d{d:05d}")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1
            tf.addfile(ti)
            for i in range(d, min(n, d + 100)):
                data = f"{prefix} file {i}\n".encode().ljust(size, b".")
                ti = tarfile.TarInfo(f"{prefix}/d{d:05d}/f{i:05d}")
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 1
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Blob:
    def __init__(self, data: bytes, mode: str = "ok", served: bytes | None = None) -> None:
        self.data = data  # what the digest names
        self.served = data if served is None else served  # what the registry sends
        self.mode = mode  # ok | hold (all but the last KB until released) | drop (half, then close) | slow
        #                   | both (not a byte until two requests for it are in flight)
        self.both = threading.Barrier(2, timeout=30)
        self.release = threading.Event()
        self.holding = threading.Event()


class FakeRegistry:
    """Registry API v2, enough for a pull: manifests by tag, blobs by digest."""

    def __init__(self) -> None:
        self.blobs: dict[str, Blob] = {}
        self.manifests: dict[str, bytes] = {}
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path
                if path == "/v2/":
                    return self._send(b"{}", "application/json")
                if "/manifests/" in path:
                    raw = reg.manifests.get(path.rsplit("/", 1)[1])
                    if raw is None:
                        return self._send(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}',
                                          "application/json", 404)
                    return self._send(raw, "application/vnd.docker.distribution.manifest.v2+json")
                blob = reg.blobs.get(path.rsplit("/", 1)[1])
                if blob is None:
                    return self._send(b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}',
                                      "application/json", 404)
                body = blob.served
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if blob.mode == "hold":
                    self.wfile.write(body[:-1024])
                    self.wfile.flush()
                    blob.holding.set()
                    blob.release.wait(60)
                    self.wfile.write(body[-1024:])
                elif blob.mode == "drop":
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif blob.mode == "both":
                    blob.both.wait()
                    self.wfile.write(body)
                elif blob.mode == "slow":
                    for i in range(0, len(body), 64 << 10):
                        self.wfile.write(body[i:i + (64 << 10)])
                        self.wfile.flush()
                        time.sleep(0.02)
                else:
                    self.wfile.write(body)

            def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if status == 200 and "manifest" in ctype:
                    self.send_header("Docker-Content-Digest", _digest(body))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def image(self, tag: str, layers: list[tuple[bytes, Blob]]) -> None:
        """``layers``: (uncompressed tar, its blob as served)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["x"]},
                             "rootfs": {"type": "layers", "diff_ids": [_digest(t) for t, _ in layers]}}).encode()
        self.blobs[_digest(config)] = Blob(config)
        for _tar_bytes, blob in layers:
            self.blobs[_digest(blob.data)] = blob
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "digest": _digest(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                "digest": _digest(b.data), "size": len(b.data)} for _t, b in layers]}
        self.manifests[tag] = json.dumps(manifest).encode()

    def close(self) -> None:
        for b in self.blobs.values():
            b.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    r = FakeRegistry()
    yield r
    r.close()


@pytest.fixture(params=["overlay", "vfs"])
def any_daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    d = new_daemon(request.param)
    try:
        d.start()
        yield d
    finally:
        cleanup_daemon(d)


def _layer_files(d: Daemon) -> list[str]:
    """Files of the test's big layer already on disk, in any layer directory."""
    found = []
    for sub in ("overlay", "vfs/dir"):
        base = os.path.join(d.data_root, sub)
        if not os.path.isdir(base):
            continue
        for name in os.listdir(base):
            for p in (os.path.join(base, name, "diff", "big"), os.path.join(base, name, "big")):
                if os.path.isdir(p):
                    found += [os.path.join(p, x) for x in os.listdir(p)]
    return found


def test_digest_mismatch_found_after_extraction_started_keeps_nothing(any_daemon: Daemon,
                                                                       registry: FakeRegistry) -> None:
    """The served blob decompresses to the very tar the config names (so extraction runs to the
    end), but its compressed bytes are not the ones the digest names (another gzip header): the
    mismatch is only known once the last byte arrived, well after files were extracted."""
    d = any_daemon
    tar = _tar("big", FILES)
    blob = Blob(gzip.compress(tar, mtime=0), "hold", served=gzip.compress(tar, mtime=12345))
    registry.image("bad", [(tar, blob)])
    before = store_snapshot(d)
    pull = subprocess.Popen(_cli(d, "pull", f"{registry.addr}/x/img:bad"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert blob.holding.wait(30), "the pull never asked for the layer"
        deadline = time.monotonic() + 30
        while not _layer_files(d):  # extraction is under way while the download is not finished
            assert time.monotonic() < deadline, "nothing was extracted while the layer downloaded"
            time.sleep(0.05)
    finally:
        blob.release.set()
    out, err = pull.communicate(timeout=60)
    assert pull.returncode != 0, out
    assert b"filesystem layer verification failed for digest " + _digest(blob.data).encode() in err, err
    assert store_snapshot(d) == before
    assert _layer_files(d) == []


def test_registry_dropping_the_connection_mid_layer(any_daemon: Daemon, registry: FakeRegistry) -> None:
    d = any_daemon
    tar = _tar("big", FILES)
    data = gzip.compress(tar, mtime=0)
    registry.image("drop", [(tar, Blob(data, "drop"))])
    before = store_snapshot(d)
    r = d.cli("pull", f"{registry.addr}/x/img:drop", check=False)
    assert r.returncode != 0, r.stdout
    assert b"Pulling fs layer" in r.stdout
    assert r.stderr.strip() and b"invalid byte in chunk length" not in r.stderr, r.stderr
    assert store_snapshot(d) == before
    assert _layer_files(d) == []
    # the daemon goes on working: the same image pulls once the registry behaves
    registry.blobs[_digest(data)].mode = "ok"
    d.cli("pull", f"{registry.addr}/x/img:drop")
    assert len(_layer_files(d)) == FILES // 100


def test_two_pulls_of_images_sharing_a_layer_at_once(any_daemon: Daemon, registry: FakeRegistry) -> None:
    """Both pulls download and extract the shared base layer at the same time; one layer is
    kept, both images are whole (every layer reassembles to its diff ID) and nothing is left over."""
    d = any_daemon
    base = _tar("big", FILES)
    top_a, top_b = _tar("a", 10), _tar("b", 20)
    base_blob = Blob(gzip.compress(base, mtime=0), "both")  # so both pulls download it at once
    registry.image("a", [(base, base_blob), (top_a, Blob(gzip.compress(top_a, mtime=0), "slow"))])
    registry.image("b", [(base, base_blob), (top_b, Blob(gzip.compress(top_b, mtime=0), "slow"))])
    pulls = [subprocess.Popen(_cli(d, "pull", f"{registry.addr}/x/img:{t}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for t in ("a", "b")]
    for p in pulls:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    c = d.client()
    for tag, top in (("a", top_a), ("b", top_b)):
        layers = c.api.inspect_image(f"{registry.addr}/x/img:{tag}")["RootFS"]["Layers"]
        assert layers == [_digest(base), _digest(top)]
    snap = store_snapshot(d)
    assert len(snap["layers"]) == 3, snap  # type: ignore[arg-type]
    assert snap["tmp"] == [], snap
    # every layer still reassembles byte for byte: docker save returns the tars the registry served
    r = d.cli("save", f"{registry.addr}/x/img:a", f"{registry.addr}/x/img:b")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as saved:
        digests = set()
        for m in saved.getmembers():
            f = saved.extractfile(m) if m.isfile() else None
            if f is not None:
                digests.add(_digest(f.read()))
    assert {_digest(base), _digest(top_a), _digest(top_b)} <= digests
    d.stop()  # berth check wants the data root to itself
    chk = subprocess.run([sys.executable, "-m", "berth.cli.main", "check", "--data-root", d.data_root,
                          "--verify-data"], capture_output=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr


def _cli(d: Daemon, *args: str) -> list[str]:
    return ["env", f"DOCKER_HOST={d.host}", "docker", *args]
