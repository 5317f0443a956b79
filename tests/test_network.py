"""Networking with the docker CLI against a real berthd: published ports, user networks, the modes,
and nothing left behind. Traffic goes only to 127.0.0.1 and to the test's own containers."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from tests.conftest import Daemon
from tests.nettools import HTTPD, berth_rules, free_port, get, host_view, links, netns_files, pool_files, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _httpd(daemon: Daemon, *args: str, body: str = "hello") -> str:
    return daemon.cli("run", "-d", *args, "busybox", "sh", "-c", HTTPD.format(body=body)).stdout.decode().strip()


def _wget(daemon: Daemon, container: str, url: str, tries: int = 50) -> str:
    """``wget`` inside ``container`` until the server answers (busybox's wget dies on a refused connect;
    its -T crashes the Debian build, hence ``timeout``)."""
    for _ in range(tries):
        r = daemon.cli("exec", container, "timeout", "5", "wget", "-qO-", url, check=False)
        if r.returncode == 0:
            return str(r.stdout.decode())
        time.sleep(0.1)
    raise AssertionError(f"{url} from {container}: {r.returncode} {r.stderr.decode()}")


def test_published_port_answers_on_loopback(daemon: Daemon) -> None:
    port = free_port()
    cid = _httpd(daemon, "-p", f"127.0.0.1:{port}:80", body="published")
    try:
        assert get(f"http://127.0.0.1:{port}/") == "published\n"
        assert daemon.cli("port", cid).stdout.decode().strip() == f"80/tcp -> 127.0.0.1:{port}"
        info = json.loads(daemon.cli("inspect", cid).stdout)[0]
        assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        ns = info["NetworkSettings"]
        assert ns["IPAddress"] and ns["Gateway"] and ns["MacAddress"].startswith("02:42:")
        assert ns["Networks"]["bridge"]["IPAddress"] == ns["IPAddress"]
        assert os.path.exists(ns["SandboxKey"])
        ps = daemon.cli("ps", "--format", "{{.Ports}}", "--filter", f"id={cid}").stdout.decode().strip()
        assert ps == f"127.0.0.1:{port}->80/tcp"
        # another program cannot take the published port while the container runs
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
    finally:
        daemon.cli("rm", "-f", cid)
    # the binding goes with the container
    assert not any(str(port) in r for r in berth_rules(daemon.net_tag))
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_random_host_port_and_publish_all(daemon: Daemon) -> None:
    a = _httpd(daemon, "-p", "80", body="random")
    b = _httpd(daemon, "--expose", "80", "-P", body="all")
    try:
        for cid, body in ((a, "random"), (b, "all")):
            line = daemon.cli("port", cid, "80/tcp").stdout.decode().splitlines()[0]
            port = int(line.rsplit(":", 1)[1])
            lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
            assert lo <= port <= hi
            assert get(f"http://127.0.0.1:{port}/") == body + "\n"
    finally:
        daemon.cli("rm", "-f", a, b)


def test_taken_host_port_is_a_clear_error_with_nothing_left(daemon: Daemon) -> None:
    before = netns_files(daemon.exec_root)
    rules = berth_rules(daemon.net_tag)
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
        r = daemon.cli("run", "--rm", "-p", f"{port}:80", "busybox", "true", check=False)
    assert r.returncode != 0
    assert "port is already allocated" in r.stderr.decode()
    assert netns_files(daemon.exec_root) == before
    assert berth_rules(daemon.net_tag) == rules


def test_user_network_reach_by_ip_name_and_alias(daemon: Daemon) -> None:
    daemon.cli("network", "create", "app")
    try:
        a = _httpd(daemon, "--name", "web1", "--network", "app", "--network-alias", "site", body="from-a")
        # --dns 127.0.0.1: a name the network does not know is forwarded inside cli1's own namespace (where
        # nothing answers), never to the host's resolvers
        b = daemon.cli("run", "-d", "--name", "cli1", "--network", "app", "--dns", "127.0.0.1", "busybox", "sleep",
                       "300").stdout.decode()
        ip = daemon.cli("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", a).stdout.decode().strip()
        assert ip
        for host in (ip, "web1", "site", a[:12]):
            assert _wget(daemon, "cli1", f"http://{host}/") == "from-a\n", host
        ns = daemon.cli("exec", "cli1", "nslookup", "web1").stdout.decode()
        assert ip in ns
        r = daemon.cli("network", "rm", "app", check=False)
        assert r.returncode != 0 and "active endpoints" in r.stderr.decode()
        net = json.loads(daemon.cli("network", "inspect", "app").stdout)[0]
        assert {v["Name"] for v in net["Containers"].values()} == {"web1", "cli1"}
        # the default bridge does not resolve names, and is isolated from app
        c = daemon.cli("run", "-d", "--name", "plain1", "busybox", "sleep", "300").stdout.decode().strip()
        r = daemon.cli("exec", "plain1", "timeout", "2", "wget", "-qO-", f"http://{ip}/", check=False)
        assert r.returncode != 0
        # connect: reachable, and known by its alias to the others (its own resolv.conf names the host's
        # resolvers, as Docker's does for a container started on the default bridge); disconnect: gone
        daemon.cli("network", "connect", "--alias", "plainalias", "app", "plain1")
        assert _wget(daemon, "plain1", f"http://{ip}/") == "from-a\n"
        assert daemon.cli("exec", "cli1", "nslookup", "plainalias").returncode == 0
        daemon.cli("network", "disconnect", "app", "plain1")
        r = daemon.cli("exec", "plain1", "timeout", "2", "wget", "-qO-", f"http://{ip}/", check=False)
        assert r.returncode != 0
        assert "eth1" not in daemon.cli("exec", "plain1", "ip", "link").stdout.decode()
        r = daemon.cli("exec", "cli1", "nslookup", "plainalias", check=False)
        assert r.returncode != 0
        daemon.cli("rm", "-f", a, b.strip(), c)
    finally:
        daemon.cli("rm", "-f", "web1", "cli1", "plain1", check=False)
        daemon.cli("network", "rm", "app", check=False)


def test_network_modes(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout.decode()
    assert [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"]
    out = daemon.cli("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout.decode()
    assert {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()} >= {"lo", "eth0", "b" + daemon.net_tag}
    a = daemon.cli("run", "-d", "--name", "owner1", "busybox", "sleep", "300").stdout.decode().strip()
    try:
        ip = daemon.cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", a).stdout.decode().strip()
        out = daemon.cli("run", "--rm", "--network", "container:owner1", "busybox", "ip", "-o", "-4",
                         "addr").stdout.decode()
        assert f"inet {ip}/" in out
        out = daemon.cli("run", "--rm", "busybox", "ip", "-o", "-4", "addr").stdout.decode()
        assert "eth0" in out and f"inet {ip}/" not in out
    finally:
        daemon.cli("rm", "-f", a)


def test_removal_leaves_nothing(daemon: Daemon) -> None:
    # the baseline is taken once berthd's pool of idle sandboxes is full and settled: a sandbox being
    # made (its veth not yet in its idle state) is no leftover of this test
    assert wait_for(lambda: len(pool_files(daemon.exec_root)) == 2)
    before = host_view()
    for _ in range(30):
        time.sleep(0.3)
        now = host_view()
        if now == before:
            break
        before = now
    rules = berth_rules(daemon.net_tag)
    daemon.cli("network", "create", "--internal", "tmpnet")
    ids = [_httpd(daemon, "-p", "80", "--network", "tmpnet"),
           _httpd(daemon, "-p", f"127.0.0.1:{free_port()}:80"),
           daemon.cli("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()]
    daemon.cli("network", "connect", "bridge", ids[0])
    assert len(links() - before["links"]) >= 4  # a bridge and three veths at least
    assert berth_rules(daemon.net_tag) != rules
    daemon.cli("rm", "-f", *ids)
    daemon.cli("network", "rm", "tmpnet")
    assert wait_for(lambda: host_view() == before), {k: (v ^ before[k]) for k, v in host_view().items()}
    assert berth_rules(daemon.net_tag) == rules
    assert netns_files(daemon.exec_root) == set()
    # what berthd keeps ready for the next starts is bounded: its pool of idle sandboxes
    assert wait_for(lambda: len(pool_files(daemon.exec_root)) == 2)


def test_ip_forwarding_in_info_and_masquerade_rule(daemon: Daemon) -> None:
    info = daemon.client().info()
    assert info["IPv4Forwarding"] is True
    subnet = daemon.client().networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
    assert any(f"-s {subnet} ! -o b{daemon.net_tag} -j MASQUERADE" in r for r in berth_rules(daemon.net_tag))


def test_stats_have_network_counters(daemon: Daemon) -> None:
    port = free_port()
    cid = _httpd(daemon, "-p", f"127.0.0.1:{port}:80", body="x" * 1000)
    try:
        get(f"http://127.0.0.1:{port}/")
        stats = daemon.client().api.stats(cid, stream=False)
        assert stats["networks"]["eth0"]["tx_bytes"] > 1000
        assert stats["networks"]["eth0"]["rx_bytes"] > 0
    finally:
        daemon.cli("rm", "-f", cid)


def test_bridge_start_is_not_much_slower_than_none(daemon: Daemon) -> None:
    """A loose guard (the bench measures it properly): joining the bridge costs tens of ms at most."""
    def run(*args: str) -> float:
        t0 = time.perf_counter()
        daemon.cli("run", "--rm", *args, "busybox", "true")
        return time.perf_counter() - t0
    bridge, none = [], []
    for _ in range(5):
        bridge.append(run())
        none.append(run("--network", "none"))
    assert sorted(bridge)[2] - sorted(none)[2] < 0.1
