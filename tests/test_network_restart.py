"""Restart safety: berthd killed with SIGKILL while containers run keeps their networking (established
connections, published ports, DNS once back, IPAM), and ``berthd --network-cleanup`` takes away every
bridge, veth, namespace and rule."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.conftest import Daemon
from tests.nettools import HTTPD, berth_rules, free_port, get, links, netns_files, pool_files, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _ip(d: Daemon, name: str, net: str = "bridge") -> str:
    return d.cli("inspect", "-f", f"{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}", name).stdout.decode().strip()


def _echo(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = conn.recv(100)
        if not chunk:
            break
        got += chunk
    return got


def test_kill9_keeps_ports_connections_dns_and_ipam(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    web_port, echo_port = free_port(), free_port()
    d.cli("run", "-d", "--name", "web", "-p", f"127.0.0.1:{web_port}:80", "busybox", "sh", "-c",
          HTTPD.format(body="still-here"))
    d.cli("run", "-d", "--name", "echo", "-p", f"127.0.0.1:{echo_port}:9000", "busybox",
          "nc", "-l", "-p", "9000", "-e", "cat")
    d.cli("network", "create", "names")
    d.cli("run", "-d", "--name", "named1", "--network", "names", "busybox", "sleep", "600")
    d.cli("run", "-d", "--name", "asker", "--network", "names", "busybox", "sleep", "600")
    assert get(f"http://127.0.0.1:{web_port}/") == "still-here\n"
    conn = None
    for _ in range(50):  # nc needs a moment to listen
        try:
            conn = socket.create_connection(("127.0.0.1", echo_port), timeout=5)
            if _echo(conn, b"before\n") == b"before\n":
                break
        except OSError:
            pass
        conn = None
        time.sleep(0.1)
    assert conn is not None
    ips = {name: _ip(d, name) for name in ("web", "echo")}
    named_ip = _ip(d, "named1", "names")

    d.stop(signal.SIGKILL)
    try:
        assert get(f"http://127.0.0.1:{web_port}/") == "still-here\n"  # the rules live in the kernel
        assert _echo(conn, b"during\n") == b"during\n"
        d.start()
        assert _echo(conn, b"after\n") == b"after\n"
    finally:
        conn.close()
    assert get(f"http://127.0.0.1:{web_port}/") == "still-here\n"
    assert _ip(d, "web") == ips["web"]
    assert wait_for(lambda: _ip(d, "echo") == "")  # nc ends with its connection: its address is freed
    out = d.cli("exec", "asker", "nslookup", "named1").stdout.decode()
    assert named_ip in out
    # IPAM still knows every address in use, and frees one when its container stops
    new = d.cli("run", "-d", "busybox", "sleep", "600").stdout.decode().strip()
    assert _ip(d, new) != ips["web"]
    # the published port is still held: nobody else can take it
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("127.0.0.1", web_port))
    d.cli("stop", "-t", "0", "web")
    again = d.cli("run", "-d", "busybox", "sleep", "600").stdout.decode().strip()
    assert _ip(d, again) == ips["web"]
    d.cli("rm", "-f", new, again)


def test_network_cleanup_removes_everything(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    bridge = "b" + d.net_tag
    d.cli("network", "create", "--opt", f"com.docker.network.bridge.name=u{d.net_tag}", "extra")
    d.cli("run", "-d", "-p", "80", "--network", "extra", "busybox", "sleep", "600")
    d.cli("run", "-d", "-p", "80", "busybox", "sleep", "600")
    assert {bridge, "u" + d.net_tag} <= links()
    assert berth_rules(d.net_tag)
    assert netns_files(d.exec_root)
    d.stop()  # containers keep running, with their network
    r = subprocess.run([*d.argv(), "--network-cleanup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"bridge {bridge}" in r.stdout
    assert wait_for(lambda: not {bridge, "u" + d.net_tag} & links())
    assert berth_rules(d.net_tag) == set()
    assert netns_files(d.exec_root) == set() and pool_files(d.exec_root) == set()
    # the next berthd makes the networks again from its records
    d.start()
    assert wait_for(lambda: {bridge, "u" + d.net_tag} <= links())
    assert "extra" in d.cli("network", "ls").stdout.decode()
