"""A pull or push that fails after its progress stream started: the error arrives as Docker's
in-stream ``errorDetail`` message (the CLI prints it and exits non-zero), the chunked stream ends
cleanly, and the local image store is left as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, store_snapshot
from tests.test_registry_e2e import Reg

REGISTRY = shutil.which("docker-registry")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RefRegistry:
    """Debian's docker-registry (the reference implementation) on loopback, storing on disk."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="berth-pullerr-")
        self.addr = f"127.0.0.1:{_free_port()}"
        cfg = os.path.join(self.root, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {self.root}/data\n"
                    f"http:\n  addr: {self.addr}\nlog:\n  level: error\n")
        assert REGISTRY is not None
        self.proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host, port = self.addr.split(":")
        for _ in range(200):
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("docker-registry did not start")

    def blob_file(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.root, "data", "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ref_registry() -> Iterator[RefRegistry]:
    if REGISTRY is None:
        pytest.skip("docker-registry (Debian's reference registry) is not installed")
    r = RefRegistry()
    yield r
    r.close()


@pytest.fixture
def berth_registry() -> Iterator[Reg]:
    r = Reg(None)
    yield r
    r.close()


def _push_then_forget(d: Daemon, ref: str) -> None:
    """Push busybox as ``ref``, then remove every local image so the pull must download the layer."""
    d.cli("tag", "busybox", ref)
    d.cli("push", ref)
    c = d.client()
    c.api.remove_image(c.api.inspect_image(ref)["Id"], force=True)
    assert c.api.images(all=True) == []


def _assert_clean_error(d: Daemon, ref: str, before: dict[str, object], needle: bytes) -> None:
    r = d.cli("pull", ref, check=False)
    assert r.returncode != 0, r.stdout
    assert b"invalid byte in chunk length" not in r.stderr and b"unexpected EOF" not in r.stderr, r.stderr
    assert needle in r.stderr, r.stderr
    assert b"Pulling fs layer" in r.stdout, r.stdout  # the failure came after the stream had started
    assert d.cli("images", "-q").stdout == b""
    assert store_snapshot(d) == before
    # the SDK sees the same message as the last line of the stream
    events = list(d.client().api.pull(ref.rsplit(":", 1)[0], tag=ref.rsplit(":", 1)[1], stream=True, decode=True))
    last = events[-1]
    assert needle.decode() in last["error"] and last["errorDetail"]["message"] == last["error"], events
    assert store_snapshot(d) == before


def test_layer_blob_removed_after_push(fresh_daemon: Daemon, ref_registry: RefRegistry) -> None:
    d = fresh_daemon
    ref = f"{ref_registry.addr}/gone/bb:1"
    _push_then_forget(d, ref)
    blobs = []
    for root, _dirs, files in os.walk(os.path.join(ref_registry.root, "data", "docker", "registry", "v2", "blobs")):
        blobs += [os.path.join(root, f) for f in files if os.path.getsize(os.path.join(root, f)) > 100_000]
    assert len(blobs) == 1  # the gzip layer; the manifest and config still answer
    os.unlink(blobs[0])
    before = store_snapshot(d)
    _assert_clean_error(d, ref, before, b"blob unknown")


def test_layer_blob_corrupted_after_push(fresh_daemon: Daemon, berth_registry: Reg) -> None:
    d = fresh_daemon
    ref = f"{berth_registry.addr}/bad/bb:1"
    _push_then_forget(d, ref)
    blobs = []
    for root, _dirs, files in os.walk(os.path.join(berth_registry.root, "data", "blobs")):
        blobs += [os.path.join(root, f) for f in files if os.path.getsize(os.path.join(root, f)) > 100_000]
    assert len(blobs) == 1
    with open(blobs[0], "r+b") as f:
        f.truncate(os.path.getsize(blobs[0]) // 2)  # short: the registry's Content-Length no longer holds
    before = store_snapshot(d)
    r = d.cli("pull", ref, check=False)
    assert r.returncode != 0
    assert b"invalid byte in chunk length" not in r.stderr, r.stderr
    assert r.stderr.strip(), r.stderr
    assert d.cli("images", "-q").stdout == b""
    assert store_snapshot(d) == before


def _put(base: str, method: str, path: str, data: bytes, ctype: str) -> None:
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": ctype})
    assert urllib.request.urlopen(req).status == 201


def _push_raw(addr: str, repo: str, tag: str, config: bytes, layer: bytes) -> None:
    """An image put together by hand: each blob matches its digest, but the content may be bad."""
    base = f"http://{addr}/v2/{repo}"
    digests = []
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        _put(base, "POST", f"/blobs/uploads/?digest={digest}", blob, "application/octet-stream")
        digests.append(digest)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0],
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digests[1],
                            "size": len(layer)}]}
    _put(base, "PUT", f"/manifests/{tag}", json.dumps(manifest).encode(), manifest["mediaType"])


@pytest.mark.parametrize("case", ["layer-not-gzip", "layer-not-tar", "config-not-json"])
def test_bad_content_behind_good_digests(daemon: Daemon, berth_registry: Reg, case: str) -> None:
    garbage = b"this is not an archive\n" * 10
    good_layer = gzip.compress(b"\0" * 1024)  # an empty tar (two zero blocks), gzipped
    layer = {"layer-not-gzip": garbage, "layer-not-tar": gzip.compress(garbage)}.get(case, good_layer)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer) if case != "layer-not-gzip" else garbage).hexdigest()
    config = b"{not json" if case == "config-not-json" else json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    _push_raw(berth_registry.addr, "raw/bad", case, config, layer)
    before = store_snapshot(daemon)
    ref = f"{berth_registry.addr}/raw/bad:{case}"
    r = daemon.cli("pull", ref, check=False)
    assert r.returncode != 0
    assert b"invalid byte in chunk length" not in r.stderr and b"unexpected EOF" not in r.stderr, r.stderr
    want = b"invalid image config" if case == "config-not-json" else b"invalid tar archive"
    assert want in r.stderr, r.stderr
    assert store_snapshot(daemon) == before
    events = list(daemon.client().api.pull(f"{berth_registry.addr}/raw/bad", tag=case, stream=True, decode=True))
    assert events[-1]["error"] == events[-1]["errorDetail"]["message"], events


def test_push_to_a_registry_that_is_gone(daemon: Daemon) -> None:
    """The push stream has started ("The push refers to ...") when the connection is refused."""
    ref = f"127.0.0.1:{_free_port()}/nobody/bb:1"
    daemon.cli("tag", "busybox", ref)
    try:
        r = daemon.cli("push", ref, check=False)
        assert r.returncode != 0
        assert b"The push refers to repository" in r.stdout, r.stdout
        assert b"invalid byte in chunk length" not in r.stderr and b"onnect" in r.stderr, r.stderr
        events = list(daemon.client().api.push(ref.rsplit(":", 1)[0], tag="1", stream=True, decode=True))
        assert events[-1]["error"] == events[-1]["errorDetail"]["message"], events
    finally:
        daemon.cli("rmi", ref)
