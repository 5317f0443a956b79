"""berthd's `--registry-mirror HOST=URL` against a Berth pull-through cache, through the docker CLI:
pulls of a non-Hub registry go through the mirror, keep working with the upstream stopped, and see a
tag moved upstream once the cache's TTL has passed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon, cleanup_daemon, new_daemon
from tests.test_registry_e2e import cli
from tests.test_registry_proxy import Server, blob_files


@pytest.fixture
def mirrored(tmp_path: Any, busybox_tar: str) -> Iterator[tuple[Server, Server, Daemon]]:
    up = Server(str(tmp_path / "upstream"))
    proxy = Server(str(tmp_path / "proxy"), "--proxy-remote-url", up.url, "--proxy-ttl", "2s")
    upstream_addr = up.url.removeprefix("http://")
    d = new_daemon(extra=["--registry-mirror", f"{upstream_addr}={proxy.url}"])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        yield up, proxy, d
    finally:
        cleanup_daemon(d)
        proxy.close()
        up.close()


def test_mirror_for_any_registry(mirrored: tuple[Server, Server, Daemon], tmp_path: Any, busybox_id: str) -> None:
    up, proxy, d = mirrored
    config = str(tmp_path / "docker-config")
    os.makedirs(config)
    ref = f"{up.url.removeprefix('http://')}/team/app:1"
    assert cli(d, config, "tag", "busybox", ref).returncode == 0
    r = cli(d, config, "push", ref)  # pushes go to the registry itself, never to its mirror
    assert r.returncode == 0, r.stderr
    assert blob_files(proxy.root) == []
    assert cli(d, config, "rmi", ref).returncode == 0

    r = cli(d, config, "pull", ref)
    assert r.returncode == 0, r.stderr
    assert d.client().api.inspect_image(ref)["Id"] == busybox_id
    cached = blob_files(proxy.root)
    assert busybox_id.split(":")[1] in cached  # the config (and layers) came through the mirror

    # The tag moves upstream: a new image under the same name.
    r = cli(d, config, "run", "--name", "mk", "busybox", "sh", "-c", "echo moved > /moved")
    assert r.returncode == 0, r.stderr
    assert cli(d, config, "commit", "mk", ref).returncode == 0
    new_id = d.client().api.inspect_image(ref)["Id"]
    assert cli(d, config, "push", ref).returncode == 0
    cli(d, config, "rm", "mk")
    assert cli(d, config, "rmi", ref).returncode == 0
    time.sleep(2.2)  # the cache's TTL
    r = cli(d, config, "pull", ref)
    assert r.returncode == 0, r.stderr
    assert d.client().api.inspect_image(ref)["Id"] == new_id

    # Upstream stopped: the cached image still pulls.
    up.close()
    assert cli(d, config, "rmi", ref).returncode == 0
    r = cli(d, config, "pull", ref)
    assert r.returncode == 0, r.stderr
    assert d.client().api.inspect_image(ref)["Id"] == new_id
    # ...and what was never cached fails with a clear error, leaving nothing behind.
    r = cli(d, config, "pull", ref.replace(":1", ":2"))
    assert r.returncode != 0 and b"unavailable" in r.stderr, r.stderr
