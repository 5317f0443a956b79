"""The whole loop through the official docker CLI: berthd pushes to and pulls from Berth's own
registry (`berth registry serve`), open, with htpasswd Basic auth, and with Bearer tokens."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import bcrypt
import pytest

from berth.layers.drivers import SHARED_INIT
from tests.conftest import DOCKER_CLI, Daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reg:
    def __init__(self, auth: str | None) -> None:
        self.root = tempfile.mkdtemp(prefix="berth-reg-e2e-")
        self.port = _free_port()
        self.addr = f"127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "berth.cli.main", "registry", "serve", "--addr", self.addr,
                "--root", os.path.join(self.root, "data")]
        if auth:
            htpasswd = os.path.join(self.root, "htpasswd")
            with open(htpasswd, "w") as f:
                f.write("alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode() + "\n")
            argv += ["--auth", f"{auth}:{htpasswd}"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def docker_config(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A private ~/.docker for the CLI, so logins never touch the user's own credentials."""
    d = tmp_path / "docker-config"
    d.mkdir()
    return str(d)


def cli(d: Daemon, config: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    if DOCKER_CLI is None:
        pytest.skip("the docker CLI is not installed")
    env = dict(os.environ, DOCKER_HOST=d.host, DOCKER_CONFIG=config)
    return subprocess.run([DOCKER_CLI, *args], input=input, capture_output=True, env=env, timeout=120)


@pytest.fixture
def open_registry() -> Iterator[Reg]:
    r = Reg(None)
    yield r
    r.close()


def test_push_pull_through_berth_registry(daemon: Daemon, open_registry: Reg, busybox_id: str,
                                          docker_config: str) -> None:
    ref = f"{open_registry.addr}/team/bb:v1"
    assert cli(daemon, docker_config, "tag", "busybox", ref).returncode == 0
    r = cli(daemon, docker_config, "push", ref)
    assert r.returncode == 0, r.stderr
    assert b"Pushed" in r.stdout and b"v1: digest: sha256:" in r.stdout
    assert cli(daemon, docker_config, "rmi", ref).returncode == 0
    r = cli(daemon, docker_config, "pull", ref)
    assert r.returncode == 0, r.stderr
    assert daemon.client().api.inspect_image(ref)["Id"] == busybox_id
    r = cli(daemon, docker_config, "pull", f"{open_registry.addr}/team/bb:missing")
    assert r.returncode != 0 and b"not found" in r.stderr
    # a second repository in the same registry shares the blobs (stored once)
    assert cli(daemon, docker_config, "tag", "busybox", f"{open_registry.addr}/other/bb:1").returncode == 0
    r = cli(daemon, docker_config, "push", f"{open_registry.addr}/other/bb:1")
    assert r.returncode == 0 and b"Mounted from team/bb" in r.stdout, r.stdout
    blobs = []
    for _root, _d, files in os.walk(os.path.join(open_registry.root, "data", "blobs")):
        blobs += files
    assert len(blobs) == len(set(blobs))
    cli(daemon, docker_config, "rmi", ref, f"{open_registry.addr}/other/bb:1")


def test_login_with_htpasswd(daemon: Daemon, docker_config: str) -> None:
    reg = Reg("htpasswd")
    try:
        bad = cli(daemon, docker_config, "login", reg.addr, "-u", "alice", "--password-stdin", input=b"wrong\n")
        assert bad.returncode != 0 and b"401" in bad.stderr
        r = cli(daemon, docker_config, "push", f"{reg.addr}/team/x:1")  # not tagged: a local error
        ref = f"{reg.addr}/team/locked:1"
        cli(daemon, docker_config, "tag", "busybox", ref)
        r = cli(daemon, docker_config, "push", ref)
        assert r.returncode != 0  # no credentials yet
        good = cli(daemon, docker_config, "login", reg.addr, "-u", "alice", "--password-stdin", input=b"s3cret\n")
        assert good.returncode == 0 and b"Login Succeeded" in good.stdout
        r = cli(daemon, docker_config, "push", ref)
        assert r.returncode == 0, r.stderr
        cli(daemon, docker_config, "rmi", ref)
        r = cli(daemon, docker_config, "pull", ref)
        assert r.returncode == 0, r.stderr
        cli(daemon, docker_config, "rmi", ref)
    finally:
        reg.close()


def test_token_auth_registry(daemon: Daemon, docker_config: str) -> None:
    reg = Reg("token")
    try:
        ref = f"{reg.addr}/team/tok:1"
        cli(daemon, docker_config, "tag", "busybox", ref)
        assert cli(daemon, docker_config, "push", ref).returncode != 0
        good = cli(daemon, docker_config, "login", reg.addr, "-u", "alice", "--password-stdin", input=b"s3cret\n")
        assert good.returncode == 0, good.stderr
        r = cli(daemon, docker_config, "push", ref)
        assert r.returncode == 0, r.stderr
        cli(daemon, docker_config, "rmi", ref)
        r = cli(daemon, docker_config, "pull", ref)
        assert r.returncode == 0, r.stderr
        cli(daemon, docker_config, "rmi", ref)
    finally:
        reg.close()


def test_registry_gc_keeps_referenced_blobs(daemon: Daemon, open_registry: Reg, docker_config: str) -> None:
    ref = f"{open_registry.addr}/gc/bb:keep"
    cli(daemon, docker_config, "tag", "busybox", ref)
    assert cli(daemon, docker_config, "push", ref).returncode == 0
    out = subprocess.run([sys.executable, "-m", "berth.cli.main", "registry", "gc", "--root",
                          os.path.join(open_registry.root, "data")], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cli(daemon, docker_config, "rmi", ref)
    r = cli(daemon, docker_config, "pull", ref)  # everything the manifest needs survived GC
    assert r.returncode == 0, r.stderr
    cli(daemon, docker_config, "rmi", ref)


def test_pull_zstd_layers_and_an_index(daemon: Daemon, open_registry: Reg, busybox_tar: str) -> None:
    """An OCI index whose linux/amd64 manifest has a zstd layer, pushed with raw HTTP."""
    import hashlib
    import json
    import tarfile
    import urllib.request

    import zstandard

    with tarfile.open(busybox_tar) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tf.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
        config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    zlayer = zstandard.ZstdCompressor().compress(layer)
    base = f"http://{open_registry.addr}/v2/zstd/bb"

    def put_blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(f"{base}/blobs/uploads/?digest={digest}", data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        assert urllib.request.urlopen(req).status == 201
        return digest

    def put_manifest(ref: str, m: dict) -> tuple[str, int]:  # type: ignore[type-arg]
        raw = json.dumps(m).encode()
        req = urllib.request.Request(f"{base}/manifests/{ref}", data=raw, method="PUT",
                                     headers={"Content-Type": m["mediaType"]})
        assert urllib.request.urlopen(req).status == 201
        return "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw)

    ldig, cdig = put_blob(zlayer), put_blob(config)
    mdig, msize = put_manifest("amd64", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": ldig,
                    "size": len(zlayer)}]})
    put_manifest("multi", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
             "platform": {"architecture": "amd64", "os": "linux"}}]})
    c = daemon.client()
    iid = c.api.inspect_image("busybox")["Id"]
    c.api.remove_image(iid, force=True)  # every local layer gone: the pull must download and unpack zstd
    try:
        events = list(c.api.pull(f"{open_registry.addr}/zstd/bb", tag="multi", stream=True, decode=True))
        assert not [e for e in events if "error" in e], events
        assert any(e.get("status") == "Pull complete" for e in events)
        assert c.api.inspect_image(f"{open_registry.addr}/zstd/bb:multi")["Id"] == iid
        assert c.containers.run(f"{open_registry.addr}/zstd/bb:multi", ["echo", "zstd"], remove=True) == b"zstd\n"
    finally:
        with open(busybox_tar, "rb") as f:
            list(c.api.load_image(f.read()))


def test_corrupt_blob_fails_the_pull_and_leaves_nothing(fresh_daemon: Daemon, open_registry: Reg,
                                                        docker_config: str) -> None:
    """A registry serving bytes that do not match the digest: the pull fails, nothing is stored,
    and once the registry is mended the same pull succeeds."""
    d = fresh_daemon
    ref = f"{open_registry.addr}/corrupt/bb:1"
    cli(d, docker_config, "tag", "busybox", ref)
    assert cli(d, docker_config, "push", ref).returncode == 0
    c = d.client()
    iid = c.api.inspect_image(ref)["Id"]
    c.api.remove_image(iid, force=True)
    blobs = []
    for root, _d, files in os.walk(os.path.join(open_registry.root, "data", "blobs")):
        blobs += [os.path.join(root, f) for f in files if os.path.getsize(os.path.join(root, f)) > 100_000]
    assert len(blobs) == 1  # the gzip layer
    original = open(blobs[0], "rb").read()
    with open(blobs[0], "r+b") as f:
        f.seek(5000)
        f.write(b"\0" * 64)
    try:
        r = cli(d, docker_config, "pull", ref)
        assert r.returncode != 0 and b"verification failed" in r.stderr
        assert c.api.images(all=True) == []
        overlay = os.path.join(d.data_root, "overlay")
        # the driver's own directories stay (its one init layer, shared by every container)
        assert [x for x in os.listdir(overlay) if x not in ("l", ".trash", "empty", SHARED_INIT)] == []
        assert os.listdir(os.path.join(d.data_root, "tmp")) == []
    finally:
        with open(blobs[0], "wb") as f:
            f.write(original)
    r = cli(d, docker_config, "pull", ref)  # a retry after the fault works
    assert r.returncode == 0, r.stderr
    assert c.api.inspect_image(ref)["Id"] == iid
