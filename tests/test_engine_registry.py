"""``berthd --registry-addr``: the registry API served from berthd's own content store.

A push of an image berthd holds to its own registry finds every blob already there (no upload
request reaches the registry: its access log, in berthd's log, says so); another engine pulls from
it as from any registry; what was pushed survives a restart and an ``rmi`` in the serving engine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, cleanup_daemon, new_daemon

CHECK = [sys.executable, "-m", "berth.cli.main", "check", "--verify-data", "--data-root"]
UPLOADS = re.compile(r'"(?:POST|PATCH|PUT) /v2/[^ ]+/blobs/uploads')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _full_log(d: Daemon) -> str:
    with open(d.log_path, errors="replace") as f:
        return f.read()


def _start(busybox_tar: str, extra: list[str]) -> Daemon:
    d = new_daemon(extra=extra)
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
    except BaseException:
        cleanup_daemon(d)
        raise
    return d


@pytest.fixture(scope="module")
def engines(busybox_tar: str) -> Iterator[tuple[Daemon, Daemon, str]]:
    """(berthd serving a registry, a second berthd, the registry's HOST:PORT)."""
    addr = f"127.0.0.1:{_free_port()}"
    a = _start(busybox_tar, ["--registry-addr", addr])
    try:
        b = _start(busybox_tar, [])
        try:
            yield a, b, addr
        finally:
            cleanup_daemon(b)
    finally:
        cleanup_daemon(a)


def _push(d: Daemon, ref: str) -> tuple[str, float]:
    t = time.monotonic()
    out = d.cli("push", ref, timeout=120).stdout.decode()
    return out, time.monotonic() - t


def _commit_unique(d: Daemon, ref: str, text: str) -> None:
    """An image with a layer of its own (so its blobs are unknown anywhere else)."""
    name = f"mk-{os.urandom(4).hex()}"
    d.cli("run", "--name", name, "busybox", "sh", "-c", f"echo {text} > /unique")
    d.cli("commit", name, ref)
    d.cli("rm", name)


def test_push_of_held_image_moves_no_bytes(engines: tuple[Daemon, Daemon, str]) -> None:
    a, b, addr = engines
    a.cli("tag", "busybox", f"{addr}/app:v1")
    out, took = _push(a, f"{addr}/app:v1")
    last = dict(re.findall(r"^([0-9a-f]{12}): (.+)$", out, re.M))  # each layer's final status
    assert last and set(last.values()) == {"Layer already exists"}, out
    assert "digest: sha256:" in out
    log = _full_log(a)
    assert '"PUT /v2/app/manifests/v1' in log  # the access log is in berthd's log: the check below can fail
    assert not UPLOADS.search(log), "a blob was uploaded to the engine's own registry"
    assert took < 30

    # the control: a layer berthd does not hold is uploaded, into the same store
    _commit_unique(b, f"{addr}/other:v1", "from-b")
    out, _ = _push(b, f"{addr}/other:v1")
    assert "Pushed" in out and "Layer already exists" in out, out  # its new layer moved, busybox's did not
    assert UPLOADS.search(_full_log(a))


def test_second_engine_pulls_and_runs(engines: tuple[Daemon, Daemon, str]) -> None:
    a, b, addr = engines
    a.cli("tag", "busybox", f"{addr}/pulled:v1")
    _push(a, f"{addr}/pulled:v1")
    out = b.cli("pull", f"{addr}/pulled:v1", timeout=120).stdout.decode()
    assert "Downloaded newer image" in out or "Pull complete" in out, out
    r = b.cli("run", "--rm", f"{addr}/pulled:v1", "echo", "pulled-ok")
    assert r.stdout.decode().strip() == "pulled-ok"


def test_pushed_image_outlives_rmi_and_restart(engines: tuple[Daemon, Daemon, str]) -> None:
    a, b, addr = engines
    ref = f"{addr}/kept:v1"
    _commit_unique(a, ref, "kept-content")
    out, _ = _push(a, ref)
    assert "Layer already exists" in out and "Pushed" not in out, out
    a.cli("rmi", ref)  # the engine lets go of the image: the registry still links its blobs
    assert ref not in a.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()

    a.stop()
    r = subprocess.run([*CHECK, a.data_root], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    a.start()

    b.cli("pull", ref, timeout=120)
    r = b.cli("run", "--rm", ref, "cat", "/unique")
    assert r.stdout.decode().strip() == "kept-content"
    b.cli("rmi", ref)


def test_non_loopback_registry_without_tls_is_refused() -> None:
    d = new_daemon(extra=["--registry-addr", "0.0.0.0:5999"])
    try:
        r = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert "refusing to serve the registry on 0.0.0.0:5999 without TLS" in r.stderr
        assert not os.path.exists(d.data_root)  # refused before anything was created
    finally:
        cleanup_daemon(d)
