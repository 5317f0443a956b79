"""docker-compose (Debian's 1.29, a Python client of the Engine API) against berthd: a two-service
project with a built image, a published port, a project network where services reach each other by
name, and a named volume; ``down -v`` removes everything it made."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import Daemon

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_compose_project_up_talks_logs_and_comes_down(daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    proj = tmp_path / "proj"
    (proj / "web").mkdir(parents=True)
    (proj / "web" / "index.html").write_text("hello from web\n")
    (proj / "web" / "Dockerfile").write_text(
        "FROM busybox\nCOPY index.html /www/index.html\nEXPOSE 80\n"
        'CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]\n')
    (proj / "docker-compose.yml").write_text(f"""version: "3.8"
services:
  web:
    build: ./web
    ports:
      - "127.0.0.1:{port}:80"
  client:
    image: busybox
    command: ["sh", "-c", "echo client-up; while true; do sleep 1; done"]
    volumes:
      - data:/data
    depends_on: [web]
volumes:
  data: {{}}
""")
    env = dict(os.environ, DOCKER_HOST=daemon.host, COMPOSE_PROJECT_NAME="bcompose")
    env.pop("DOCKER_CONTEXT", None)

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([COMPOSE, *args], cwd=proj, env=env, capture_output=True, timeout=180)
        if check:
            assert r.returncode == 0, f"docker-compose {' '.join(args)}: {r.stderr.decode()}"
        return r

    try:
        compose("up", "-d", "--build")
        # the published port answers from the host
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    assert resp.read() == b"hello from web\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # the client reaches web by its service name on the project network, and writes to the volume
        r = compose("exec", "-T", "client", "sh", "-c", "wget -qO- http://web/ | tee /data/copy")
        assert r.stdout == b"hello from web\n"
        ps = compose("ps").stdout.decode()
        assert "bcompose_web_1" in ps and "bcompose_client_1" in ps and ps.count("Up") >= 2
        logs = compose("logs", "--no-color", "client").stdout.decode()
        assert "client-up" in logs
        c = daemon.client()
        assert any(n.name == "bcompose_default" for n in c.networks.list())
        assert any(v.name == "bcompose_data" for v in c.volumes.list())
    finally:
        compose("down", "-v", "--rmi", "local", check=False)
    c = daemon.client()
    assert not [x for x in c.containers.list(all=True) if x.name.startswith("bcompose_")]
    assert not [n for n in c.networks.list() if n.name.startswith("bcompose_")]
    assert not [v for v in c.volumes.list() if v.name.startswith("bcompose_")]
