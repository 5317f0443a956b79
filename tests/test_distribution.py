"""docker push / pull / login through berthd, against Debian's docker-registry (the reference
implementation, distribution 2.8) on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon

REGISTRY = shutil.which("docker-registry")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference_registry() -> Iterator[str]:
    if REGISTRY is None:
        pytest.skip("docker-registry (Debian's reference registry) is not installed")
    root = tempfile.mkdtemp(prefix="berth-refreg-")
    port = _free_port()
    cfg = os.path.join(root, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n"
                f"    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def test_push_rmi_pull_keeps_the_image_id(daemon: Daemon, reference_registry: str, busybox_id: str) -> None:
    ref = f"{reference_registry}/team/bb:v1"
    daemon.cli("tag", "busybox", ref)
    out = daemon.cli("push", ref).stdout.decode()
    assert f"The push refers to repository [{reference_registry}/team/bb]" in out
    assert "Pushed" in out and "v1: digest: sha256:" in out
    digest = out.split("digest: ")[1].split()[0]
    # the gzip layer is kept in berthd's content store, named after the layer's diff ID
    diff_id = daemon.client().api.inspect_image(ref)["RootFS"]["Layers"][0]
    conn = sqlite3.connect(f"file:{os.path.join(daemon.data_root, 'berth.db')}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT digest FROM content_refs WHERE ref=?", (f"layer.gzip/{diff_id}",)).fetchone()
    finally:
        conn.close()
    assert row is not None
    gz = os.path.join(daemon.data_root, "content", "blobs", "sha256", row[0].split(":")[1])
    with open(gz, "rb") as f:
        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == row[0]
    again = daemon.cli("push", ref).stdout.decode()
    assert "Layer already exists" in again and digest in again  # same content, same digest
    daemon.cli("rmi", ref)
    out = daemon.cli("pull", ref).stdout.decode()
    assert f"Digest: {digest}" in out
    assert daemon.client().api.inspect_image(ref)["Id"] == busybox_id
    assert f"{reference_registry}/team/bb@{digest}" in daemon.client().api.inspect_image(ref)["RepoDigests"]
    assert daemon.cli("run", "--rm", ref, "echo", "pulled").stdout == b"pulled\n"
    daemon.cli("rmi", ref)


def test_fresh_pull_downloads_every_layer(fresh_daemon: Daemon, reference_registry: str, busybox_id: str) -> None:
    d = fresh_daemon
    ref = f"{reference_registry}/fresh/bb:1"
    d.cli("tag", "busybox", ref)
    digest = d.cli("push", ref).stdout.decode().split("digest: ")[1].split()[0]
    c = d.client()
    c.api.remove_image(ref)
    c.api.remove_image("busybox")  # now no layer is left locally
    assert c.api.images(all=True) == []
    out = d.cli("pull", ref).stdout.decode()
    for status in ("Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete",
                   f"Status: Downloaded newer image for {ref}"):
        assert status in out, out
    assert c.api.inspect_image(ref)["Id"] == busybox_id
    by_digest = d.cli("pull", f"{reference_registry}/fresh/bb@{digest}").stdout.decode()
    assert "Image is up to date" in by_digest
    # docker-py, with the progress stream
    events = list(c.api.pull(f"{reference_registry}/fresh/bb", tag="1", stream=True, decode=True))
    assert events[-1]["status"] == f"Status: Image is up to date for {ref}"


def test_pull_missing_tag_fails_like_docker(daemon: Daemon, reference_registry: str) -> None:
    r = daemon.cli("pull", f"{reference_registry}/team/nope:v9", check=False)
    assert r.returncode != 0
    assert f"manifest for {reference_registry}/team/nope:v9 not found".encode() in r.stderr
    with pytest.raises(docker.errors.NotFound):
        daemon.client().api.inspect_image(f"{reference_registry}/team/nope:v9")


def test_push_of_unknown_tag_fails(daemon: Daemon, reference_registry: str) -> None:
    r = daemon.cli("push", f"{reference_registry}/team/absent:v1", check=False)
    assert r.returncode != 0 and b"An image does not exist locally with the tag" in r.stderr


def test_distribution_inspect(daemon: Daemon, reference_registry: str) -> None:
    ref = f"{reference_registry}/team/insp:v1"
    daemon.cli("tag", "busybox", ref)
    daemon.cli("push", ref)
    info = daemon.client().api.inspect_distribution(ref)
    assert info["Descriptor"]["digest"].startswith("sha256:")
    assert info["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    daemon.cli("rmi", ref)
