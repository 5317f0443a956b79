"""The API surface: ping, version, info, the /vX.Y prefix, Docker's error shapes."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.conftest import Daemon


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def request(d: Daemon, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(d.sock)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_ping_headers(daemon: Daemon) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = request(daemon, method, "/_ping")
        assert status == 200
        assert headers["API-Version"] == "1.45"
        assert headers["OSType"] == "linux"
        assert headers["Server"].startswith("Berth/")
        assert body == (b"OK" if method == "GET" else b"")


def test_version_and_info(daemon: Daemon) -> None:
    c = daemon.client()
    v = c.version()
    assert v["ApiVersion"] == "1.45" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    info = c.info()
    assert info["Driver"] == "overlay"
    assert info["Images"] >= 1
    assert info["DockerRootDir"] == daemon.data_root


@pytest.mark.parametrize("prefix", ["/v1.24", "/v1.41", "/v1.45", ""])
def test_version_prefix_accepted(daemon: Daemon, prefix: str) -> None:
    status, _, body = request(daemon, "GET", prefix + "/images/json")
    assert status == 200
    assert any("busybox:latest" in (i["RepoTags"] or []) for i in json.loads(body))


def test_version_prefix_out_of_range(daemon: Daemon) -> None:
    status, _, body = request(daemon, "GET", "/v1.99/version")
    assert status == 400
    assert json.loads(body)["message"] == "client version 1.99 is too new. Maximum supported API version is 1.45"
    status, _, body = request(daemon, "GET", "/v1.12/version")
    assert status == 400
    assert "client version 1.12 is too old. Minimum supported API version is 1.24" in json.loads(body)["message"]


def test_unknown_route_is_json_404(daemon: Daemon) -> None:
    status, headers, body = request(daemon, "GET", "/v1.45/no/such/thing")
    assert status == 404
    assert headers["Content-Type"] == "application/json"  # exact: the Go client compares it verbatim
    assert json.loads(body) == {"message": "page not found"}


def test_swarm_and_plugins_answer_like_docker(daemon: Daemon) -> None:
    status, _, body = request(daemon, "GET", "/v1.45/swarm")
    assert status == 503
    assert json.loads(body)["message"].startswith("This node is not a swarm manager.")
    status, _, body = request(daemon, "GET", "/v1.45/services")
    assert status == 503
    status, _, body = request(daemon, "GET", "/v1.45/plugins")
    assert status == 200 and json.loads(body) == []


def test_malformed_json_is_400(daemon: Daemon) -> None:
    before = daemon.client().api.containers(all=True)
    status, _, body = request(daemon, "POST", "/v1.45/containers/create", body=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert status == 400
    assert json.loads(body)["message"].startswith("invalid JSON")
    assert daemon.client().api.containers(all=True) == before


def test_unknown_image_is_404(daemon: Daemon) -> None:
    status, _, body = request(daemon, "GET", "/v1.45/images/nosuchimage:1/json")
    assert status == 404
    assert json.loads(body)["message"] == "No such image: nosuchimage:1"
    status, _, body = request(daemon, "POST", "/v1.45/containers/create",
                              body=json.dumps({"Image": "nosuchimage:1", "Cmd": ["true"]}).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 404
    assert json.loads(body)["message"] == "No such image: nosuchimage:1"


def test_unknown_container_is_404(daemon: Daemon) -> None:
    status, _, body = request(daemon, "GET", "/v1.45/containers/nope/json")
    assert status == 404
    assert json.loads(body)["message"] == "No such container: nope"


def test_docker_cli_version_negotiates(daemon: Daemon) -> None:
    out = daemon.cli("version", "--format", "{{.Server.APIVersion}}").stdout.decode().strip()
    assert out == "1.45"


def test_networks_list_the_predefined_ones(daemon: Daemon) -> None:
    out = daemon.cli("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.decode().split("\n")
    assert "none null" in out and "host host" in out
    status, _, body = request(daemon, "GET", "/v1.45/networks/nope")
    assert status == 404 and json.loads(body)["message"] == "network nope not found"
