"""Loopback addresses stay loopback: ``route_localnet`` on Berth's bridges (needed so a port published
on 127.0.0.1 answers the host) must not let anyone else use 127.0.0.0/8 (the CVE-2020-8558 pattern).

- a neighbour (a namespace the test makes, joined to the host by a veth) that sends a packet for
  127.0.0.1 to the host's MAC must not reach a port published with ``-p 127.0.0.1:PORT:80``
  (the DNAT would otherwise forward it before routing ever sees the loopback address);
- a hostile container (NET_RAW is a default capability) that sends a packet for 127.0.0.1 to its
  gateway must not reach the host's loopback-only services. The test plays that container with a
  namespace of its own plugged into the daemon's bridge.

Frames are made and read with AF_PACKET inside the test's namespaces; nothing leaves the host.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.nettools import HTTPD, free_port, get, routes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

# argv: ifname dst_mac src_ip dst_ip proto(tcp|udp) dst_port listen_seconds
# sends one TCP SYN or UDP datagram to dst_ip:dst_port, then prints "answered" when a TCP SYN-ACK
# from dst_ip:dst_port comes back on the interface within listen_seconds
CRAFT = r"""
import socket, struct, sys, time
ifname, dst_mac, src_ip, dst_ip, proto, dport, wait = sys.argv[1:8]
dport, wait = int(dport), float(wait)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
sport = 40000 + int(time.time()) % 20000
if proto == "tcp":
    l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pn = 6
else:
    l4 = struct.pack("!HHHH", sport, dport, 8 + 5, 0) + b"hello"
    pn = 17
if pn == 6:
    c = csum(src + dst + struct.pack("!BBH", 0, pn, len(l4)) + l4)
    l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, pn, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0x0800))
mine = s.getsockname()[4]
s.send(bytes.fromhex(dst_mac.replace(":", "")) + mine + b"\x08\x00" + ip + l4)
s.settimeout(0.2)
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    p = f[14:]
    if len(p) < 40 or p[9] != 6 or p[12:16] != dst:
        continue
    t = p[(p[0] & 15) * 4:]
    sp, dp = struct.unpack("!HH", t[:4])
    if sp == dport and dp == sport and t[13] & 0x12 == 0x12:
        print("answered"); break
"""


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _mac(name: str, ns: str | None = None) -> str:
    out = json.loads(_ip(*(["-n", ns] if ns else []), "-j", "link", "show", name))
    return str(out[0]["address"])


def _send(ns: str, dst_mac: str, src_ip: str, dst_ip: str, proto: str, port: int, wait: float) -> bool:
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CRAFT, "eth0", dst_mac, src_ip,
                        dst_ip, proto, str(port), str(wait)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return "answered" in r.stdout


@pytest.fixture
def neighbour() -> Iterator[dict[str, str]]:
    """A namespace with eth0, its host end ``veth`` on the host (addressed or bridged by the test)."""
    name, veth = f"berth-nb-{secrets.token_hex(3)}", f"vn{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", name, "link", "set", "lo", "up")
        yield {"ns": name, "veth": veth}
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_port_published_on_loopback_is_not_reachable_by_a_neighbour(daemon: Daemon,
                                                                    neighbour: dict[str, str]) -> None:
    taken = "\n".join(routes())
    third = next(i for i in range(10, 250) if f"198.18.{i}." not in taken)
    host_ip, ns_ip = f"198.18.{third}.1", f"198.18.{third}.2"
    _ip("addr", "add", f"{host_ip}/30", "dev", neighbour["veth"])
    _ip("link", "set", neighbour["veth"], "up")
    _ip("-n", neighbour["ns"], "addr", "add", f"{ns_ip}/30", "dev", "eth0")
    _ip("-n", neighbour["ns"], "link", "set", "eth0", "up")
    port = free_port()
    web = daemon.cli("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                     HTTPD.format(body="local-only")).stdout.decode().strip()
    try:
        # the server is up and answers on loopback (the control: the published port works)
        assert get(f"http://127.0.0.1:{port}/") == "local-only\n"
        # the same SYN to the host's other address gets no answer either way (the rule names 127.0.0.1)
        host_mac = _mac(neighbour["veth"])
        assert not _send(neighbour["ns"], host_mac, ns_ip, host_ip, "tcp", port, 1.0)
        assert not _send(neighbour["ns"], host_mac, ns_ip, "127.0.0.1", "tcp", port, 2.0)
    finally:
        daemon.cli("rm", "-f", web)


def test_bridge_neighbour_cannot_reach_host_loopback(daemon: Daemon, neighbour: dict[str, str]) -> None:
    bridge = "b" + daemon.net_tag
    net = json.loads(daemon.cli("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]
    subnet = net["Subnet"]
    prefix = subnet.rsplit(".", 1)[0]
    ns_ip = f"{prefix}.250"  # far from what IPAM hands out first; no container runs here
    _ip("link", "set", neighbour["veth"], "master", bridge, "up")
    _ip("-n", neighbour["ns"], "addr", "add", f"{ns_ip}/{subnet.split('/')[1]}", "dev", "eth0")
    _ip("-n", neighbour["ns"], "link", "set", "eth0", "up")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(2.0)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        bridge_mac = _mac(bridge)
        _send(neighbour["ns"], bridge_mac, ns_ip, "127.0.0.1", "udp", udp.getsockname()[1], 0.1)
        with pytest.raises(TimeoutError):
            udp.recvfrom(100)
        assert not _send(neighbour["ns"], bridge_mac, ns_ip, "127.0.0.1", "tcp", tcp.getsockname()[1], 2.0)
        # the gateway's own address still answers the neighbour: only loopback is closed
        gw = net["Gateway"]
        udp2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp2:
            udp2.bind((gw, 0))
            udp2.settimeout(5.0)
            _send(neighbour["ns"], bridge_mac, ns_ip, gw, "udp", udp2.getsockname()[1], 0.1)
            assert udp2.recvfrom(100)[0] == b"hello"
