"""``berthd --registry-addr``'s own options: ``--registry-auth`` puts the engine-backed registry behind
the standalone server's Basic (htpasswd) or token auth; ``--registry-gc-interval`` collects its garbage
in the background. Used through the real docker CLI and raw HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, cleanup_daemon, new_daemon
from tests.test_registry_server import Client, push_image, write_htpasswd


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(addr: str, path: str, user: str = "", pw: str = "") -> http.client.HTTPResponse:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r


@pytest.fixture
def authed(busybox_tar: str) -> Iterator[tuple[Daemon, str, str]]:
    """(berthd serving its registry behind Basic auth for alice, the registry's HOST:PORT, a docker
    CLI config dir of the test's own so `docker login` leaves the user's config alone)."""
    work = tempfile.mkdtemp(prefix="berth-test-regauth-", dir="/var/tmp")
    htp = os.path.join(work, "htpasswd")
    write_htpasswd(htp, {"alice": "s3cret"})
    addr = f"127.0.0.1:{_free_port()}"
    d = new_daemon(extra=["--registry-addr", addr, "--registry-auth", f"htpasswd:{htp}"])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        yield d, addr, os.path.join(work, "cli")
    finally:
        cleanup_daemon(d)
        subprocess.run(["rm", "-rf", work], check=False)


def test_engine_registry_needs_credentials(authed: tuple[Daemon, str, str]) -> None:
    d, addr, cfg = authed
    d.cli("tag", "busybox", f"{addr}/app:v1")
    # No credentials: the push is refused and nothing is stored under that name.
    r = d.cli("--config", cfg, "push", f"{addr}/app:v1", check=False, timeout=120)
    assert r.returncode != 0
    assert re.search(r"unauthorized|authentication required|no basic auth", r.stderr.decode(), re.I), r.stderr
    assert _get(addr, "/v2/app/manifests/v1", "alice", "s3cret").status == 404
    # The spec's challenge, and wrong credentials refused.
    r0 = _get(addr, "/v2/")
    assert r0.status == 401 and r0.getheader("WWW-Authenticate", "").startswith("Basic ")
    assert _get(addr, "/v2/", "alice", "wrong").status == 401
    bad = d.cli("--config", cfg, "login", addr, "-u", "alice", "--password-stdin", input=b"wrong\n", check=False)
    assert bad.returncode != 0
    # Logged in: the push works and still moves no layer bytes (berthd holds them all).
    d.cli("--config", cfg, "login", addr, "-u", "alice", "--password-stdin", input=b"s3cret\n")
    out = d.cli("--config", cfg, "push", f"{addr}/app:v1", timeout=120).stdout.decode()
    last = dict(re.findall(r"^([0-9a-f]{12}): (.+)$", out, re.M))
    assert last and set(last.values()) == {"Layer already exists"}, out
    assert _get(addr, "/v2/app/manifests/v1").status == 401
    assert _get(addr, "/v2/app/manifests/v1", "alice", "s3cret").status == 200
    # A pull with the login works; one without it is refused.
    d.cli("rmi", f"{addr}/app:v1")
    r = d.cli("--config", os.path.join(cfg, "none"), "pull", f"{addr}/app:v1", check=False, timeout=120)
    assert r.returncode != 0
    d.cli("--config", cfg, "pull", f"{addr}/app:v1", timeout=120)
    assert f"{addr}/app:v1" in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()


def test_engine_registry_token_auth(busybox_tar: str) -> None:
    work = tempfile.mkdtemp(prefix="berth-test-regauth-", dir="/var/tmp")
    users = os.path.join(work, "users")
    write_htpasswd(users, {"bob": "pw"})
    addr = f"127.0.0.1:{_free_port()}"
    d = new_daemon(extra=["--registry-addr", addr, "--registry-auth", f"token:{users}"])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        r = _get(addr, "/v2/")
        assert r.status == 401 and r.getheader("WWW-Authenticate", "").startswith("Bearer realm=")
        cfg = os.path.join(work, "cli")
        d.cli("tag", "busybox", f"{addr}/tok:v1")
        d.cli("--config", cfg, "login", addr, "-u", "bob", "--password-stdin", input=b"pw\n")
        d.cli("--config", cfg, "push", f"{addr}/tok:v1", timeout=120)
        key = os.path.join(d.data_root, "registry", "_auth", "token.key")
        assert os.stat(key).st_mode & 0o777 == 0o600  # persistent: tokens outlive a restart
    finally:
        cleanup_daemon(d)
        subprocess.run(["rm", "-rf", work], check=False)


@pytest.mark.parametrize("args, words", [
    (["--registry-auth", "htpasswd:/nonexistent/htpasswd"], "--registry-auth: "),
    (["--registry-auth", "ldap:/etc/x"], "unknown scheme 'ldap'"),
    (["--registry-auth-policy", "/etc/hostname"], "--registry-auth-policy needs --registry-auth"),
    (["--registry-gc-interval", "soon"], "--registry-gc-interval: bad duration 'soon'"),
])
def test_bad_registry_auth_is_refused_before_anything_is_created(args: list[str], words: str) -> None:
    d = new_daemon(extra=["--registry-addr", f"127.0.0.1:{_free_port()}", *args])
    try:
        r = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert words in r.stderr, r.stderr
        assert not os.path.exists(d.data_root)
    finally:
        cleanup_daemon(d)


def _request(addr: str, method: str, path: str) -> int:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request(method, path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def _files_named(root: str, name: str) -> list[str]:
    return [os.path.join(d, f) for d, _s, files in os.walk(root) for f in files if f == name]


def test_engine_registry_collects_garbage_in_the_background(busybox_tar: str) -> None:
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    d = new_daemon(extra=["--registry-addr", addr, "--registry-gc-interval", "1s", "--registry-gc-grace", "0s"])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        # An image uploaded by a plain client: its layer is in the engine's content store only for the
        # registry's sake.
        layer = os.urandom(64 * 1024)
        md, _, doc = push_image(Client(port), "gone", "v1", [layer])
        unique = doc["layers"][0]["digest"]
        assert _files_named(d.data_root, unique.split(":")[1])
        time.sleep(2.5)  # collections run meanwhile: the tag keeps the manifest, the manifest the layer
        assert _request(addr, "GET", f"/v2/gone/blobs/{unique}") == 200
        # busybox pushed by the engine: its layer is the engine's own (the push moves no bytes).
        d.cli("tag", "busybox", f"{addr}/base:v1")
        out = d.cli("push", f"{addr}/base:v1", timeout=120).stdout.decode()
        base_md = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        assert base_md, out
        base = json.loads(_get_body(addr, f"/v2/base/manifests/{base_md.group(1)}"))["layers"][0]["digest"]
        # Both manifests deleted: the next collection removes the layer only the registry held, from
        # the registry and from the content store; busybox's layer stays with the engine.
        assert _request(addr, "DELETE", f"/v2/gone/manifests/{md}") == 202
        assert _request(addr, "DELETE", f"/v2/base/manifests/{base_md.group(1)}") == 202
        deadline = time.monotonic() + 20
        while _request(addr, "GET", f"/v2/gone/blobs/{unique}") != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _request(addr, "GET", f"/v2/gone/blobs/{unique}") == 404
        assert not _files_named(d.data_root, unique.split(":")[1])
        with open(d.log_path, errors="replace") as f:
            assert "registry GC: " in f.read()
        d.cli("tag", "busybox", f"{addr}/again:v1")
        out = d.cli("push", f"{addr}/again:v1", timeout=120).stdout.decode()
        last = dict(re.findall(r"^([0-9a-f]{12}): (.+)$", out, re.M))
        assert set(last.values()) == {"Layer already exists"}, out
        assert _request(addr, "GET", f"/v2/again/blobs/{base}") == 200
        assert d.cli("run", "--rm", "busybox", "echo", "ok").stdout.decode().strip() == "ok"
    finally:
        cleanup_daemon(d)


def _get_body(addr: str, path: str) -> bytes:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("GET", path, headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json,"
                                              "application/vnd.oci.image.manifest.v1+json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, body
    return body
