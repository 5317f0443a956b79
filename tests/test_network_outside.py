"""Traffic leaving the bridge, checked against a namespace the test makes (never the real outside):
an "outside" namespace joined to the host by a veth on a benchmarking-range /30 (198.18.0.0/15).

- a container's connection out is masqueraded: the outside sees the host's address, not the container's;
- a container on an --internal network cannot get out;
- a published port answers from that outside namespace (an address of the host other than loopback),
  from another container through the bridge's gateway, and from the container itself (hairpin).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.nettools import HTTPD, free_port, routes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((sys.argv[1], 8000), H).serve_forever()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def outside() -> Iterator[dict[str, str]]:
    taken = "\n".join(routes())
    third = next(i for i in range(10, 250) if f"198.18.{i}." not in taken)
    name, veth = f"berth-out-{secrets.token_hex(3)}", f"vo{secrets.token_hex(3)}"
    host_ip, ns_ip = f"198.18.{third}.1", f"198.18.{third}.2"
    server = None
    _ip("netns", "add", name)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER, ns_ip],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield {"ns": name, "host_ip": host_ip, "ns_ip": ns_ip}
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _wget(daemon: Daemon, container: str, url: str, tries: int = 40) -> tuple[int, str]:
    r = None
    for _ in range(tries):
        r = daemon.cli("exec", container, "timeout", "3", "wget", "-qO-", url, check=False)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert r is not None
    return r.returncode, r.stdout.decode()


def test_outbound_is_masqueraded_internal_is_not_let_out(daemon: Daemon, outside: dict[str, str]) -> None:
    daemon.cli("network", "create", "--internal", "sealed")
    try:
        a = daemon.cli("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
        b = daemon.cli("run", "-d", "--network", "sealed", "busybox", "sleep", "300").stdout.decode().strip()
        code, seen = _wget(daemon, a, f"http://{outside['ns_ip']}:8000/")
        assert code == 0 and seen == outside["host_ip"]  # the host's address: masqueraded
        code, _ = _wget(daemon, b, f"http://{outside['ns_ip']}:8000/", tries=3)
        assert code != 0
        daemon.cli("rm", "-f", a, b)
    finally:
        daemon.cli("network", "rm", "sealed", check=False)


def test_published_port_answers_from_other_addresses_and_containers(daemon: Daemon,
                                                                     outside: dict[str, str]) -> None:
    port = free_port()
    web = daemon.cli("run", "-d", "-p", f"{port}:80", "busybox", "sh", "-c",
                     HTTPD.format(body="via-dnat")).stdout.decode().strip()
    other = daemon.cli("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    try:
        url = f"http://{outside['host_ip']}:{port}/"
        out = b""
        for _ in range(40):
            r = subprocess.run(["ip", "netns", "exec", outside["ns"], "curl", "-s", "-m", "3", url],
                               capture_output=True)
            out = r.stdout
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert out == b"via-dnat\n"
        gateway = daemon.cli("inspect", "-f", "{{.NetworkSettings.Gateway}}", other).stdout.decode().strip()
        code, body = _wget(daemon, other, f"http://{gateway}:{port}/")
        assert code == 0 and body == "via-dnat\n"
        code, body = _wget(daemon, web, f"http://{gateway}:{port}/")  # its own port, back through the host
        assert code == 0 and body == "via-dnat\n"
    finally:
        daemon.cli("rm", "-f", web, other)
